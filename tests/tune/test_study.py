"""mdistiller-tune end to end on tiny digits runs: a study killed mid-trial resumes with no trial lost or repeated and
asks what an uninterrupted study asks; the SLURM path (submitit's local executor) runs trials and retrains as jobs."""
import importlib
import json
import os
import time

import pytest

from mdistiller.benchmark.collect import run_state
from mdistiller.benchmark.execute import RUN_CFG, TRAIN_MODULE, run_config
from mdistiller.engine.records import read_csv
from mdistiller.engine.trainer import Trainer
from mdistiller.tune import cli as tune_cli
from mdistiller.tune.study import JOURNAL, TRIAL_FILE, journal_storage, tune
from tests.helpers.benchutil import read_rows, write_config
from tests.helpers.runutil import random_teacher_ckpt, tiny_opts

optuna = pytest.importorskip("optuna")
TRIALS = 3


class InProcessLauncher:
    """Runs each planned run in this process, as the local launcher's subprocess would: the same config file, the
    same module, ``--resume`` when the folder has a ``latest``."""

    name = "in-process"
    waits = True
    jobs = 1

    def describe(self):
        return "in this process"

    def launch(self, runs, sweep_dir, on_done=None, echo=None):
        for run in runs:
            state = run_state(run.run_dir, run.epochs)
            if state != "done":
                os.makedirs(run.run_dir, exist_ok=True)
                cfg_path = os.path.join(run.run_dir, RUN_CFG)
                with open(cfg_path, "w") as f:
                    f.write(run_config(run, sweep_dir))
                module = importlib.import_module(run.module or TRAIN_MODULE)
                module.main(["--cfg", cfg_path] + (["--resume"] if state == "resume" else []))
            if on_done is not None:
                on_done(run, state, time.time())


def configs_and_opts(root, epochs):
    ckpt = random_teacher_ckpt(root / "teacher.pth", name="resnet8", num_classes=10)
    configs = [write_config(root, "vanilla", "NONE", teacher="resnet20"), write_config(root, "kd", "KD")]
    opts = tiny_opts(root / "unused", epochs=epochs, batch=32, size=8, per_class=4) + [
        "DISTILLER.TEACHER_CKPT", ckpt, "DATASET.VAL_SPLIT", "3", "DATASET.TEST.BATCH_SIZE", "450",
        "LOG.DIAGNOSTICS", "False"]
    return configs, opts


def study_trials(sweep_dir, name="kd"):
    study = optuna.load_study(study_name=name, storage=journal_storage(os.path.join(sweep_dir, JOURNAL)))
    return sorted(study.trials, key=lambda t: t.number)


def test_a_study_killed_mid_trial_resumes_with_no_trial_lost_or_repeated(tmp_path, monkeypatch):
    configs, opts = configs_and_opts(tmp_path, epochs=2)
    settings = {"trials": TRIALS, "startup_trials": 1, "seed": 3}
    reference = tune(configs, [0], out=str(tmp_path), name="uninterrupted", opts=opts, settings=settings,
                     launcher=InProcessLauncher(), plots=False, echo=None)

    train_epoch = Trainer.train_epoch
    killed = []

    def killed_in_trial_1(trainer, epoch, *args, **kwargs):
        if trainer.log_path.endswith("trial1") and epoch == 2 and not killed:
            killed.append(epoch)
            raise KeyboardInterrupt  # as if the process died between the trial's epochs
        return train_epoch(trainer, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_epoch", killed_in_trial_1)
    with pytest.raises(KeyboardInterrupt):
        tune(configs, [0], out=str(tmp_path), name="killed", opts=opts, settings=settings,
             launcher=InProcessLauncher(), plots=False, echo=None)
    sweep_dir = str(tmp_path / "killed")
    states = [t.state.name for t in study_trials(sweep_dir)]
    assert states == ["COMPLETE", "RUNNING"] and killed == [2]
    assert len(read_csv(os.path.join(sweep_dir, "trials", "kd", "trial1", "metrics.csv"))) == 1

    result = tune(configs, [0], out=str(tmp_path), name="killed", opts=opts, settings=settings,
                  launcher=InProcessLauncher(), plots=False, echo=None)
    trials, expected = study_trials(sweep_dir), study_trials(reference["sweep_dir"])
    assert [t.number for t in trials] == list(range(TRIALS)) and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(os.listdir(os.path.join(sweep_dir, "trials", "kd"))) == ["trial{}".format(i) for i in range(TRIALS)]
    # the same trials as the uninterrupted study: the same values asked, the same runs (trial 1 resumed exactly)
    assert [t.params for t in trials] == [t.params for t in expected]
    assert [t.value for t in trials] == [t.value for t in expected]
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == TRIALS
    for i, t in enumerate(trials):
        folder = os.path.join(sweep_dir, "trials", "kd", "trial{}".format(i))
        assert [int(r["epoch"]) for r in read_csv(os.path.join(folder, "metrics.csv"))] == [1, 2]
        with open(os.path.join(folder, TRIAL_FILE)) as f:
            assert json.load(f)["params"] == t.params
        assert t.value == max(float(r["val_acc"]) for r in read_csv(os.path.join(folder, "metrics.csv")))
    # the best trial's values are retrained and tabulated like the uninterrupted study's
    best = max(trials, key=lambda t: (t.value, -t.number))
    with open(os.path.join(sweep_dir, "tuned", "kd.yaml")) as f:
        text = f.read()
    assert "TEMPERATURE: {}".format(best.params["KD.TEMPERATURE"]) in text
    rows = {r["name"]: r for r in read_rows(os.path.join(sweep_dir, "results.csv"))}
    expected_rows = {r["name"]: r for r in read_rows(os.path.join(reference["sweep_dir"], "results.csv"))}
    for name in ("vanilla", "kd"):
        assert rows[name]["at_val_best_mean"] == expected_rows[name]["at_val_best_mean"]
        assert rows[name]["status"] == "ok"
    assert "| KD | kd | 3 (3 / 0 / 0) | {:.2f} ({}) |".format(best.value, best.number) in result["markdown"]
    # run again: nothing is rerun; the figures are drawn
    again = tune(configs, [0], out=str(tmp_path), name="killed", opts=opts, settings=settings,
                 launcher=InProcessLauncher(), plots=True, echo=None)
    assert [t.number for t in study_trials(sweep_dir)] == list(range(TRIALS))
    assert all(run.action == "skip" for run in again["runs"])
    assert os.path.getsize(os.path.join(sweep_dir, "tune_kd.png")) > 1000 and "| tune_kd.png |" in again["markdown"]


@pytest.mark.slow
def test_the_slurm_path_runs_trials_and_retrains_as_jobs(tmp_path):
    pytest.importorskip("submitit")
    configs, opts = configs_and_opts(tmp_path, epochs=1)
    suite = tmp_path / "suite.yaml"
    with open(suite, "w") as f:  # one study of one trial: a job for the trial, then one for the retraining
        json.dump({"configs": configs[1:], "seeds": [0], "opts": opts, "tune": {"trials": 1, "pruner": "median"}}, f)
    code = tune_cli.main(["--suite", str(suite), "--out", str(tmp_path / "out"), "--launcher", "slurm",
                          "--slurm-cluster", "local", "--threads", "1", "--poll", "0.3", "--no-plots"])
    sweep_dir = str(tmp_path / "out" / "suite")
    assert code == 0
    (trial,) = study_trials(sweep_dir)
    assert trial.state.name == "COMPLETE"
    folder = os.path.join(sweep_dir, "trials", "kd", "trial0")
    with open(os.path.join(folder, "benchmark.json")) as f:
        (attempt,) = json.load(f)["attempts"]
    assert attempt["launcher"] == "submitit-local" and attempt["returncode"] == 0 and attempt["job_id"]
    with open(os.path.join(folder, "stdout.txt")) as f:
        assert f.readline().split()[2:4] == ["-m", "mdistiller.tune.trial"]
    assert trial.intermediate_values == {1: trial.value}  # reported by the trial's process, through the journal
    (run,) = read_rows(os.path.join(sweep_dir, "runs.csv"))
    assert run["name"] == "kd" and run["status"] == "ok" and run["test_at_val_best"] and run["val_split_sha256"]
    with open(os.path.join(sweep_dir, "results.md")) as f:
        markdown = f.read()
    assert "Test top-1 at val-best epoch" in markdown and "## Tuning on the validation split" in markdown
    assert "run as batch jobs (submitit-local)" in markdown
