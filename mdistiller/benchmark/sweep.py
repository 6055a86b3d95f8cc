"""A sweep: plan the runs, launch the unfinished ones, collect every record, write the tables and figures.

One code path whatever the launcher: planning (:func:`plan_runs`), skipping finished runs
(:func:`pending_runs`) and collection (:func:`collect_sweep`, from the run folders alone) are
shared; the launcher only decides how a planned run is executed (:class:`.execute.LocalLauncher`
on this machine, :class:`.slurm.SlurmLauncher` as a SLURM job array).
"""
import os
import time
from collections import OrderedDict

from .collect import collect_run, run_state
from .execute import LocalLauncher, config_changed, retire_run_folder
from .plan import plan_runs
from .tables import (CSV_FIELDS, RUN_FIELDS, SPLIT_CSV_FIELDS, SPLIT_RUN_FIELDS, aggregate, format_markdown,
                     selected_on_validation, table_metric, write_csv)


def sweep_folder(out="benchmark_runs", name=None):
    return os.path.join(out, name) if name else out


def pending_runs(runs, echo=None):
    """The runs to launch: every run but the finished ones (a config that fails to load is kept to record its error).

    A run folder left by another config (the yaml or the overrides changed since; see
    :func:`.execute.config_changed`) is renamed to ``<folder>.replaced-<k>`` and the run starts afresh,
    so a table never mixes results of an old config into a new one.
    """
    todo = []
    for run in runs:
        if config_changed(run):
            moved = retire_run_folder(run)
            if echo:
                echo("{}/seed{}: the config changed since this run; its old folder is now {}".format(
                    run.name, run.seed, moved))
        if run.load_error is None and run_state(run.run_dir, run.epochs) == "done":
            run.action = "skip"
        else:
            todo.append(run)
    return todo


def accuracy_text(record):
    """``last 71.20 best 72.00``, and ``at val-best 71.50`` first for a run with a validation split."""
    parts = []
    if record.get("test_at_val_best") is not None:
        parts.append("at val-best {:.2f} (val {:.2f})".format(record["test_at_val_best"], record["val_best_acc"]))
    parts.append("last {:.2f}".format(record["last_acc"]))
    if record["best_acc"] is not None:
        parts.append("best {:.2f}".format(record["best_acc"]))
    return " ".join(parts)


def run_sweep(configs, seeds=(0,), out="benchmark_runs", name=None, opts=(), jobs=1, threads=None, python=None,
              plots=True, echo=print, title=None, launcher=None, collect_only=False, extra_markdown=""):
    """Run every (config, seed) not finished yet, then write and return the tables.

    ``launcher``: how the unfinished runs are executed; default ``LocalLauncher(jobs, threads,
    python)`` (subprocesses on this machine, ``jobs`` at once). A launcher that does not wait
    (:class:`.slurm.SlurmLauncher` without ``wait``) only submits: no table is written and the
    result's ``records``/``rows``/``markdown`` are None. ``collect_only``: launch nothing and
    build the tables from the run folders as they are (unfinished runs show as pending).

    Returns a dict: ``sweep_dir``, ``runs`` (the planned runs), ``submission`` (what the launcher
    returned: None locally, the submitted jobs for SLURM), ``records`` (one per run), ``rows``
    (one per config), ``markdown``, ``paths`` (results.md, results.csv, runs.csv, plots). ``extra_markdown`` is
    appended to results.md.
    """
    echo = echo or (lambda *a, **k: None)
    sweep_dir = sweep_folder(out, name)
    os.makedirs(sweep_dir, exist_ok=True)
    runs = plan_runs(configs, seeds, sweep_dir, opts)
    todo = pending_runs(runs, echo=echo)
    skipped = len(runs) - len(todo)
    head = "Sweep {}: {} runs ({} configs x {} seeds), {} finished already".format(
        sweep_dir, len(runs), len(set(r.name for r in runs)), len(seeds), skipped)
    submission = None
    if collect_only:
        echo(head + ", {} not finished; collecting only".format(len(todo)))
    else:
        launcher = launcher or LocalLauncher(jobs, threads, python)
        echo(head + ", {} to run; {}".format(len(todo), launcher.describe()))
        done_count = [0]

        def report(run, action, started):
            record = collect_run(run)
            done_count[0] += 1
            what = "resumed" if action == "resume" else "ran"
            if record["status"] == "ok":
                msg = "{} {}/seed{}: {} ({:.0f} s)".format(what, run.name, run.seed, accuracy_text(record),
                                                         time.time() - started)
            elif getattr(run, "outcome", None) == "interrupted":
                msg = "interrupted {}/seed{} by a signal: not finished; running this command again resumes it".format(
                    run.name, run.seed)
            else:
                msg = "FAILED {}/seed{}: {}".format(run.name, run.seed, record["error"])
            echo("[{}/{}] {}".format(done_count[0], len(todo), msg))

        submission = launcher.launch(todo, sweep_dir, on_done=report, echo=echo)
        if not launcher.waits:
            return dict(sweep_dir=sweep_dir, runs=runs, submission=submission, records=None, rows=None,
                        markdown=None, paths=OrderedDict())
    result = collect_sweep(runs, sweep_dir, plots=plots, echo=echo, title=title, extra_markdown=extra_markdown)
    result["submission"] = submission
    return result


# A table's score by the records' metric (the evaluator's LABEL).
METRIC_TEXT = {"top-1": "Top-1 (%)",
               "AP": "AP = COCO box mAP@[.5:.95] (%, pycocotools; AP50 / AP75 at IoU 0.5 / 0.75)"}


def table_notes(records):
    """The notes under the table, from the records alone (so any launcher, or none, writes the same table)."""
    threads = sorted({t for r in records for t in r.get("threads") or []})
    launchers = {name for r in records for name in r.get("launchers") or []}
    parallel = sorted({j for r in records for j in r.get("parallel") or []})
    how = []
    if "local" in launchers:
        how.append("run locally" + (", {} at once".format("/".join(map(str, parallel))) if parallel else ""))
    if launchers - {"local"}:
        how.append("run as batch jobs ({})".format(", ".join(sorted(launchers - {"local"}))))
    detail = "; ".join((["{} thread(s) per run".format("/".join(map(str, threads)))] if threads else []) + how)
    metrics = sorted({r.get("metric", "top-1") for r in records})
    what = " and ".join(METRIC_TEXT.get(m, m) for m in metrics)
    short = table_metric(records)
    wall = ("Wall = mean wall-clock seconds of a run's mdistiller.train process(es), summed over its attempts{}; every "
            "run's benchmark.json records its attempts.".format(" ({})".format(detail) if detail else ""))
    if selected_on_validation(records):
        splits = sorted({r["val_split_sha256"][:12] for r in records if r.get("val_split_sha256")})
        head = ("{what} on the test set, mean ± sample std over seeds (— for one seed). Test {m} at val-best epoch "
                "= the test {m} of the epoch with the best {m} on the validation split held out of the "
                "training set (DATASET.VAL_SPLIT; split sha256 {splits}): the number selected without the test set. "
                "Best val {m} = that validation {m}; Last-epoch test {m} = final epoch; Best test {m} = the best epoch "
                "chosen on the test set itself (optimistic, as papers report; not measured with "
                "DATASET.TEST_AT_END_ONLY). ".format(what=what, m=short, splits=", ".join(splits)))
    else:
        head = ("{} on the test set, mean ± sample std over seeds (— for one seed); Last = final epoch, "
                "Best = best epoch. ".format(what))
    return [
        head + wall,
        "Published = the paper's number for the same dataset/pair/method under its full protocol "
        "(mdistiller/reference/published_results.csv).",
    ]


def collect_sweep(runs, sweep_dir, plots=True, echo=print, title=None, extra_markdown=""):
    """Collect every planned run from its folder and write results.md, results.csv, runs.csv (and the figures).
    ``extra_markdown`` is appended to results.md (e.g. a tuning section)."""
    echo = echo or (lambda *a, **k: None)
    records = [collect_run(run) for run in runs]
    rows = aggregate(records)
    markdown = format_markdown(rows, title=title or "Results: {}".format(sweep_dir), notes=table_notes(records))
    if extra_markdown:
        markdown += "\n" + extra_markdown
    paths = OrderedDict(
        markdown=os.path.join(sweep_dir, "results.md"),
        csv=os.path.join(sweep_dir, "results.csv"),
        runs=os.path.join(sweep_dir, "runs.csv"),
    )
    with open(paths["markdown"], "w") as f:
        f.write(markdown)
    on_validation = selected_on_validation(records)
    write_csv(rows, paths["csv"], CSV_FIELDS + (SPLIT_CSV_FIELDS if on_validation else ()))
    with_split = any(r.get("val_split_sha256") for r in records)
    write_csv(records, paths["runs"], RUN_FIELDS + (SPLIT_RUN_FIELDS if with_split else ()))
    paths["plots"] = []
    if plots:
        paths["plots"] = draw_sweep_plots(records, sweep_dir, echo=echo)
    echo("")
    echo(markdown)
    echo("Wrote {}, {}, {}{}".format(paths["markdown"], paths["csv"], paths["runs"],
                                    "".join(", " + p for p in paths["plots"])))
    return dict(sweep_dir=sweep_dir, runs=runs, records=records, rows=rows, markdown=markdown, paths=paths)


def draw_sweep_plots(records, sweep_dir, echo=print):
    """Alignment and accuracy figures of the sweep: one line per config (seed mean) -> list of PNG paths."""
    with_logs = [r for r in records if r["epochs"]]
    names_of = OrderedDict()
    for r in with_logs:
        names_of.setdefault(r["method"], set()).add(r["name"])
    groups = OrderedDict()
    for r in with_logs:
        method = "vanilla" if r["method"] == "student" else r["method"]
        label = method if len(names_of[r["method"]]) == 1 else "{} ({})".format(method, r["name"])
        groups.setdefault(label, []).append(r["run_dir"])
    if not groups:
        return []
    try:
        from ..plot import plot_groups

        return plot_groups(groups, sweep_dir)
    except ImportError as e:
        echo("plots skipped: {}".format(e))
        return []
