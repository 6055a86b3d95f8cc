"""Equal-budget tuning: one Optuna study per config of a suite, every trial a training run on the validation split.

The protocol (:func:`tune`):

1. Every config is checked first (its file, the suite's overrides, a validation split, its search space): a mistake
   stops the command before any run starts.
2. ``tune.teacher`` (optional): a teacher config trained once, with the suite's validation split, whose
   ``student_val_best`` (selected on the validation split, never on the test set) is ``DISTILLER.TEACHER_CKPT`` of
   every config that distils.
3. Studies, in rounds: each round asks every unfinished study for its next trials (trials interrupted before are
   resumed first), runs them all through the benchmark's launcher (local ``--jobs N``, or a SLURM job array) and
   tells each study its trials' outcomes. A trial is ``python -m mdistiller.tune.trial``: the training run of
   ``mdistiller.train`` (same trainer, same run folder) with ``DATASET.TEST_AT_END_ONLY``, which reports each
   epoch's validation top-1 to the study (the pruner's input) and stops when the pruner says so. Its value is its
   best validation top-1 over the epochs. Every study gets the same number of trials (complete, pruned, or
   diverged: a non-finite loss); a trial that failed for another reason stops the command and is retried when the
   command is run again.
4. The best configuration of each study, and the configs without a search space (the student alone) as they are,
   are retrained with the suite's seeds by the benchmark runner (same launcher) with the split and
   ``DATASET.TEST_AT_END_ONLY``: the test set is evaluated once per run, after its last epoch, and the table leads
   with test top-1 at the validation-best epoch. The tuning section (trials, best validation top-1, chosen values,
   search spaces) and one figure per study (``tune_<name>.png``: history and importances) go with it.

Everything lives in the sweep folder::

    <sweep>/optuna_journal.log          the studies (Optuna's JournalStorage; a file lock, no database server)
    <sweep>/teacher/<name>/seed<s>/     the teacher's run (tune.teacher)
    <sweep>/trials/<name>/trial<k>/     trial k of a study: a training run folder + optuna_trial.json (+ pruned.json)
    <sweep>/tuned/<name>.yaml           the retrained config: the suite's, with the chosen values
    <sweep>/<name>/seed<s>/             the retrained runs; results.md / results.csv / runs.csv, tune_<name>.png

An interrupted command resumes where it stopped: finished trials are never rerun, a trial that was running resumes
from its run folder (same trial number, same values), finished retrains are skipped. Trials are sampled by TPE
seeded from ``(tune.seed, study name, trial number)``, so a resumed study asks what an uninterrupted one would
have asked, and no two studies share their draws.
"""
import hashlib
import json
import math
import os
import time
from collections import OrderedDict

import numpy as np
import yaml

from ..benchmark.collect import ERROR_FILE, read_json, run_state
from ..benchmark.execute import LocalLauncher, retire_run_folder
from ..benchmark.plan import Run, plan_runs
from ..benchmark.sweep import run_sweep
from .space import apply_point, describe, distributions, search_space

JOURNAL = "optuna_journal.log"
TRIALS_DIR = "trials"
TEACHER_DIR = "teacher"
TUNED_DIR = "tuned"
TRIAL_FILE = "optuna_trial.json"
PRUNED_FILE = "pruned.json"
TRIAL_MODULE = "mdistiller.tune.trial"
TEACHER_CHECKPOINT = "student_val_best"
DIVERGED = "Non-finite loss"  # the trainer's message for a loss that left the floats: a trial outcome, not a fault

# tune block of a suite: key -> (default, help)
SETTINGS = OrderedDict(
    trials=(20, "trials per study (the same for every method)"),
    seed=(0, "seed of the TPE sampler (each trial's draw is seeded from it and the trial number)"),
    startup_trials=(10, "random trials before TPE models the results (Optuna's n_startup_trials)"),
    pruner=("none", "none, or median: stop a trial whose validation top-1 falls below the median of earlier trials "
                    "at the same epoch (Optuna's MedianPruner)"),
    pruner_options=({}, "MedianPruner's arguments, e.g. {n_startup_trials: 5, n_warmup_steps: 10}"),
    trial_seed=(None, "EXPERIMENT.SEED of every trial (default: one more than the largest retrain seed, so no "
                      "retrain reuses the seed its configuration was selected with)"),
    trials_per_round=(None, "trials of each study launched together (default: the smallest number that keeps "
                            "--jobs busy; 1 on SLURM)"),
    teacher=(None, "a teacher config trained first with the validation split; its student_val_best becomes "
                   "DISTILLER.TEACHER_CKPT of every config that distils"),
    search_space=({}, "overrides of the declared search spaces: {method label or run name: {KEY: spec or null}}"),
)
PRUNERS = ("none", "median")


def tune_settings(block):
    """The tune block of a suite with its defaults, checked (an unknown key or a bad value is a ValueError)."""
    block = dict(block or {})
    unknown = set(block) - set(SETTINGS)
    if unknown:
        raise ValueError("unknown tune setting(s) {}; valid: {}".format(", ".join(sorted(unknown)),
                                                                       ", ".join(SETTINGS)))
    settings = OrderedDict((k, block.get(k, d) if block.get(k) is not None else d) for k, (d, _) in SETTINGS.items())
    for key in ("trials", "seed", "startup_trials"):
        settings[key] = int(settings[key])
    if settings["trials"] < 1:
        raise ValueError("tune trials must be at least 1, got {}".format(settings["trials"]))
    if settings["startup_trials"] < 0:
        raise ValueError("tune startup_trials must be >= 0")
    settings["pruner"] = str(settings["pruner"]).lower()
    if settings["pruner"] not in PRUNERS:
        raise ValueError("tune pruner must be one of {}, got {!r}".format(", ".join(PRUNERS), settings["pruner"]))
    if not isinstance(settings["pruner_options"], dict) or not isinstance(settings["search_space"], dict):
        raise ValueError("tune pruner_options and search_space must be mappings")
    if settings["pruner"] == "none" and settings["pruner_options"]:
        raise ValueError("tune pruner_options are given but the pruner is none")
    if settings["trials_per_round"] is not None and int(settings["trials_per_round"]) < 1:
        raise ValueError("tune trials_per_round must be at least 1")
    make_pruner(settings)  # unknown MedianPruner arguments fail here, before anything runs
    return settings


def make_pruner(settings):
    """The Optuna pruner of the settings (``NopPruner`` for none); a bad argument is a ValueError."""
    import optuna

    if settings["pruner"] == "none":
        return optuna.pruners.NopPruner()
    try:
        return optuna.pruners.MedianPruner(**settings["pruner_options"])
    except TypeError as e:
        raise ValueError("tune pruner_options: {}".format(e)) from None


def journal_storage(path):
    """Optuna's JournalStorage on the file ``path`` (created when missing)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(path))


def draw_seed(seed, study, number):
    """The TPE seed of trial ``number`` of study ``study`` (its name) under ``tune.seed`` ``seed``: independent of how
    many processes asked before, and of the other studies' draws."""
    name = int.from_bytes(hashlib.sha256(study.encode("utf-8")).digest()[:8], "little")
    return int(np.random.SeedSequence([int(seed), name, int(number)]).generate_state(1)[0])


def protocol_digest(cfg, space):
    """SHA-256 of what a study compares: the base config (without the run's folder and seed) and the search space."""
    tree = yaml.safe_load(cfg.dump())
    tree.get("LOG", {}).pop("PREFIX", None)
    tree.pop("EXPERIMENT", None)
    text = json.dumps(tree, sort_keys=True, default=str) + "\n" + describe(space)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class MethodStudy:
    """One config of the suite: its base config, its search space and (with knobs) its Optuna study."""

    def __init__(self, run, space, settings, sweep_dir, trial_seed):
        self.name = run.name
        self.label = run.label
        self.config = run.config
        self.cfg = run.cfg
        self.space = space
        self.settings = settings
        self.sweep_dir = sweep_dir
        self.trial_seed = trial_seed
        self.study = None
        self.storage = None

    @property
    def tuned(self):
        return bool(self.space)

    def open(self, storage):
        """Create or load the study; a study started with another config or search space is an error."""
        import optuna

        digest = protocol_digest(self.cfg, self.space)
        self.storage = storage
        self.study = optuna.create_study(study_name=self.name, storage=storage, direction="maximize",
                                         load_if_exists=True, pruner=make_pruner(self.settings))
        recorded = self.study.user_attrs.get("protocol")
        if recorded is None:
            self.study.set_user_attr("protocol", digest)
            self.study.set_user_attr("config", self.config)
        elif recorded != digest:
            raise ValueError("study {} in {} was started with another config or search space than {} now has; give "
                             "another --name to start a new sweep".format(self.name, self.sweep_dir, self.config))

    def trials(self, *states):
        from optuna.trial import TrialState

        states = states or tuple(TrialState)
        return self.study.get_trials(deepcopy=False, states=states)

    def finished(self):
        """Trials that count towards the budget: complete, pruned, or failed (diverged)."""
        from optuna.trial import TrialState

        return self.trials(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

    def remaining(self):
        return self.settings["trials"] - len(self.finished()) if self.tuned else 0

    def next_trials(self, count):
        """Up to ``count`` trials to run now: those left running by an earlier attempt first, then new ones."""
        import optuna
        from optuna.trial import TrialState

        running = sorted(self.trials(TrialState.RUNNING), key=lambda t: t.number)
        todo = [(t.number, dict(t.params)) for t in running[:count]]
        budget = self.settings["trials"]
        while len(todo) < count and len(self.finished()) + len(self.trials(TrialState.RUNNING)) < budget:
            number = len(self.trials())
            self.study.sampler = optuna.samplers.TPESampler(
                seed=draw_seed(self.settings["seed"], self.name, number),
                n_startup_trials=self.settings["startup_trials"])
            trial = self.study.ask(distributions(self.space))
            todo.append((trial.number, dict(trial.params)))
        return todo

    def trial_run(self, number, params):
        """The :class:`Run` of trial ``number`` (its folder, its config with ``params``), launched as a trial."""
        cfg = apply_point(self.cfg, params)
        return Run(self.config, self.trial_seed, self.name, os.path.join(self.sweep_dir, TRIALS_DIR), cfg,
                   folder="trial{}".format(number), module=TRIAL_MODULE)

    def prepare(self, run, number, echo=None):
        """Write the trial's ``optuna_trial.json`` (how its process finds its study) before it is launched. A folder
        left by another trial of that number (a study started anew beside old folders) is renamed
        ``<folder>.replaced-<k>`` first, so no trial reads another's run."""
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(
            self.storage.get_study_id_from_name(self.name), number)
        info = {"journal": os.path.abspath(os.path.join(self.sweep_dir, JOURNAL)), "study": self.name,
                "trial_id": trial_id, "number": number, "pruner": self.settings["pruner"],
                "pruner_options": self.settings["pruner_options"], "params": run_params(run, self.space)}
        path = os.path.join(run.run_dir, TRIAL_FILE)
        if os.path.isdir(run.run_dir):
            found = read_json(path) or {}
            if json.loads(json.dumps(info)) != found:
                moved = retire_run_folder(run)
                if echo:
                    echo("{}: left by another trial; moved to {}".format(run.run_dir, moved))
        os.makedirs(run.run_dir, exist_ok=True)
        with open(path, "w") as f:
            json.dump(info, f, indent=2)

    def tell(self, run, number):
        """Record the outcome of a trial's run in the study; returns ``(state name, value or None, error)``; the
        state is None (the trial stays running, to be resumed) when the run failed for another reason than its
        values (a missing file, a killed process)."""
        from optuna.trial import TrialState

        pruned = read_json(os.path.join(run.run_dir, PRUNED_FILE))
        if pruned is not None:
            self.study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
            return "pruned", pruned.get("val_acc"), "pruned at epoch {}".format(pruned.get("epoch"))
        summary = read_json(os.path.join(run.run_dir, "summary.json"))
        if run_state(run.run_dir, run.epochs) == "done" and summary and summary.get("val_best_acc") is not None:
            value = float(summary["val_best_acc"])
            self.study.tell(number, value, skip_if_finished=True)
            return "complete", value, ""
        error = ""
        if os.path.exists(os.path.join(run.run_dir, ERROR_FILE)):
            with open(os.path.join(run.run_dir, ERROR_FILE)) as f:
                error = f.read().strip()
        if DIVERGED in error:
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            return "diverged", None, error
        return None, None, error or "the run did not finish"

    def best(self):
        """``(value, number, params)`` of the best complete trial, or None."""
        from optuna.trial import TrialState

        complete = self.trials(TrialState.COMPLETE)
        if not complete:
            return None
        trial = max(complete, key=lambda t: (t.value, -t.number))  # the first trial reaching the best value
        return trial.value, trial.number, dict(trial.params)


def run_params(run, space):
    """The trial's values as the config holds them (``{key: value}``)."""
    from .space import config_value

    return OrderedDict((key, config_value(run.cfg, key)) for key in space)


def trials_per_round(settings, launcher, studies):
    """Trials of each study launched together: ``tune.trials_per_round``, else the smallest number for which the
    round's runs fill the local launcher's ``jobs`` slots evenly (1 for a launcher without slots, such as SLURM)."""
    if settings["trials_per_round"]:
        return int(settings["trials_per_round"])
    jobs = getattr(launcher, "jobs", 1)
    tuned = max(1, sum(s.tuned for s in studies))
    return max(1, jobs // math.gcd(jobs, tuned))


def split_of(cfg):
    """``(DATASET.TYPE, VAL_SPLIT, SPLIT_SEED)``: which validation split a config holds out."""
    return str(cfg.DATASET.TYPE), float(cfg.DATASET.VAL_SPLIT), int(cfg.DATASET.SPLIT_SEED)


def plan_studies(configs, seeds, sweep_dir, opts, settings):
    """Check every config and search space; returns ``(studies, teacher run or None)``. Raises ValueError (one line)
    on the first mistake, before anything runs."""
    from ..engine.cfg import get_cfg
    from ..engine.keys import check_values

    teacher = None
    extra = ["DATASET.TEST_AT_END_ONLY", "True"]
    if settings["teacher"]:
        first = get_cfg(configs[0], list(opts))
        split = ["DATASET.VAL_SPLIT", repr(float(first.DATASET.VAL_SPLIT)), "DATASET.SPLIT_SEED",
                 str(first.DATASET.SPLIT_SEED)]
        (teacher,) = plan_runs([settings["teacher"]], [get_cfg(settings["teacher"]).EXPERIMENT.SEED],
                               os.path.join(sweep_dir, TEACHER_DIR), split + extra)
        if teacher.load_error:
            raise ValueError("tune teacher {}: {}".format(settings["teacher"], teacher.load_error))
        extra += ["DISTILLER.TEACHER_CKPT", os.path.abspath(os.path.join(teacher.run_dir, TEACHER_CHECKPOINT))]
    trial_seed = settings["trial_seed"]
    trial_seed = int(trial_seed) if trial_seed is not None else max(seeds) + 1
    runs = plan_runs(configs, [trial_seed], sweep_dir, list(opts) + extra)
    studies = []
    overrides = dict(settings["search_space"])
    for run in runs:
        if run.load_error:
            raise ValueError("{}: {}".format(run.config, run.load_error))
        check_values(run.cfg)
        if not run.cfg.DATASET.VAL_SPLIT:
            raise ValueError("{}: tuning selects on a validation split: set DATASET.VAL_SPLIT (images per class, or a "
                             "fraction) in the suite's opts".format(run.config))
        data = split_of(run.cfg)
        if data != split_of(runs[0].cfg):
            raise ValueError("{} holds out DATASET.TYPE/VAL_SPLIT/SPLIT_SEED {} but {} holds out {}: the methods of a "
                             "suite are compared on one validation split".format(run.config, data, runs[0].config,
                                                                                  split_of(runs[0].cfg)))
        override = overrides.pop(run.label, None) if run.label in overrides else overrides.pop(run.name, None)
        space = search_space(run.cfg, override, where="{} ({})".format(run.config, run.label))
        studies.append(MethodStudy(run, space, settings, sweep_dir, trial_seed))
    if overrides:
        raise ValueError("tune search_space names {}, which is no method label or run name of the suite ({})".format(
            ", ".join(sorted(overrides)), ", ".join("{} / {}".format(s.label, s.name) for s in studies)))
    return studies, teacher


def prepare_teacher(teacher, sweep_dir, launcher, echo):
    """Train the teacher run when it is not finished; its ``student_val_best`` must exist afterwards."""
    ckpt = os.path.join(teacher.run_dir, TEACHER_CHECKPOINT)
    if run_state(teacher.run_dir, teacher.epochs) != "done":
        echo("Teacher {}: training it once ({})".format(teacher.config, teacher.run_dir))
        launcher.launch([teacher], os.path.join(sweep_dir, TEACHER_DIR), echo=echo)
    if run_state(teacher.run_dir, teacher.epochs) != "done" or not os.path.isfile(ckpt):
        error = ""
        if os.path.exists(os.path.join(teacher.run_dir, ERROR_FILE)):
            with open(os.path.join(teacher.run_dir, ERROR_FILE)) as f:
                error = ": " + f.read().strip()
        raise RuntimeError("the teacher run {} did not finish{}".format(teacher.run_dir, error))
    return ckpt


def run_studies(studies, launcher, settings, echo, poll_s=1.0):
    """Rounds of trials until every study has its budget."""
    per_round = trials_per_round(settings, launcher, studies)
    while any(s.remaining() > 0 for s in studies):
        batch = []
        for study in studies:
            if study.remaining() > 0:
                for number, params in study.next_trials(min(per_round, study.remaining())):
                    run = study.trial_run(number, params)
                    study.prepare(run, number, echo)
                    batch.append((study, number, run))
        by_run = {id(run): (study, number) for study, number, run in batch}
        remaining_before = {study: study.remaining() for study in studies}
        faults = []

        def told(run, action, started):
            study, number = by_run[id(run)]
            state, value, error = study.tell(run, number)
            best = study.best()
            if state is None:
                faults.append("{} trial {}: {}".format(study.name, number, error))
                echo("[{} trial {}] FAILED: {}".format(study.name, number, error))
                return
            text = {"complete": "val top-1 {:.2f}".format(value or 0.0), "pruned": error,
                    "diverged": "diverged ({})".format(error)}[state]
            echo("[{} trial {}] {}; best so far {} ({:.0f} s)".format(
                study.name, number, text, "{:.2f} (trial {})".format(best[0], best[1]) if best else "—",
                time.time() - started))

        launcher.launch([run for _, _, run in batch], os.path.join(studies[0].sweep_dir, TRIALS_DIR), on_done=told,
                        echo=echo)
        if faults:
            raise RuntimeError("{} trial(s) failed for another reason than their values ({}); fix the cause and run "
                               "the same command again: finished trials are kept, these are resumed".format(
                                   len(faults), "; ".join(faults)))
        if not any(s.remaining() < before for s, before in remaining_before.items()):
            time.sleep(poll_s)  # every trial's job was still queued or running (SLURM): wait before asking again


def write_tuned_config(study, sweep_dir):
    """``<sweep>/tuned/<name>.yaml``: the study's config with its best values (as it is, without knobs)."""
    cfg = study.cfg
    if study.tuned:
        best = study.best()
        if best is None:
            raise RuntimeError("study {} has no complete trial (all {} were pruned or diverged); widen its search "
                               "space or raise tune trials".format(study.name, len(study.finished())))
        cfg = apply_point(cfg, best[2])
    folder = os.path.join(sweep_dir, TUNED_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, study.name + ".yaml")
    with open(path, "w") as f:
        f.write(cfg.dump())
    return path


def tune(configs, seeds, out="tune_runs", name=None, opts=(), settings=None, launcher=None, jobs=1, threads=None,
         plots=True, echo=print, title=None):
    """Tune every config of a suite on its validation split, retrain the chosen configurations over ``seeds`` and
    tabulate them (module docstring). Returns the benchmark's result dict of the retrained sweep, plus ``studies``."""
    from ..benchmark.sweep import sweep_folder
    from .report import study_plots, tuning_markdown

    echo = echo or (lambda *a, **k: None)
    settings = tune_settings(settings)
    sweep_dir = sweep_folder(out, name)
    studies, teacher = plan_studies(list(configs), list(seeds), sweep_dir, opts, settings)
    launcher = launcher or LocalLauncher(jobs, threads)
    if not launcher.waits:
        raise ValueError("the tuner needs a launcher that waits for its runs (SlurmLauncher(..., wait=True))")
    os.makedirs(sweep_dir, exist_ok=True)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = journal_storage(os.path.join(sweep_dir, JOURNAL))
    for study in studies:
        if study.tuned:
            study.open(storage)
    tuned = [s for s in studies if s.tuned]
    echo("Tuning {}: {} studies x {} trials on the validation split (DATASET.VAL_SPLIT {:g}, SPLIT_SEED {}), trials at "
         "EXPERIMENT.SEED {}; {} without knobs ({}); then {} retrained over seeds {}; {}".format(
             sweep_dir, len(tuned), settings["trials"], studies[0].cfg.DATASET.VAL_SPLIT,
             studies[0].cfg.DATASET.SPLIT_SEED, studies[0].trial_seed, len(studies) - len(tuned),
             ", ".join(s.name for s in studies if not s.tuned) or "none", len(studies),
             " ".join(map(str, seeds)), launcher.describe()))
    if teacher is not None:
        prepare_teacher(teacher, sweep_dir, launcher, echo)
    run_studies(studies, launcher, settings, echo)
    tuned_configs = [write_tuned_config(s, sweep_dir) for s in studies]
    figures = study_plots(tuned, sweep_dir, echo) if plots else {}
    result = run_sweep(tuned_configs, seeds=seeds, out=sweep_dir, opts=(), launcher=launcher, plots=plots, echo=echo,
                       title=title or "Tuned comparison: {}".format(sweep_dir),
                       extra_markdown=tuning_markdown(studies, settings, figures))
    result["studies"] = studies
    return result
