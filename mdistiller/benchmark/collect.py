"""Reading a run folder: whether the run is finished, and its record (status, top-1 or AP, wall time, error).

Files read: the trainer's ``metrics.csv`` and ``summary.json``, the runner's
``benchmark.json`` (wall time, threads and, for batch jobs, the job id of each attempt) and
``error.txt`` (last line of a failed attempt's stderr). The record depends on the run folder
only, whichever launcher ran it. Which ``metrics.csv`` column is the run's score follows its dataset's task
(:func:`evaluator_of`): ``test_acc`` (top-1) for classification, ``test_ap`` (COCO AP) for detection.
"""
import json
import os
from collections import OrderedDict

from ..dataset.table import DATASETS
from ..engine.evaluate import EVALUATORS
from ..engine.records import read_csv

RUN_INFO = "benchmark.json"
ERROR_FILE = "error.txt"


def read_json(path):
    """The file's JSON, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_state(run_dir, epochs):
    """``"done"`` (all epochs logged), ``"resume"`` (has ``latest``) or ``"new"``."""
    summary = read_json(os.path.join(run_dir, "summary.json"))
    if summary is not None:
        logged = len(read_csv(os.path.join(run_dir, "metrics.csv")))
        if int(summary.get("epochs") or 0) >= epochs and logged >= epochs:
            return "done"
    if os.path.exists(os.path.join(run_dir, "latest")):
        return "resume"
    return "new"


def evaluator_of(cfg):
    """The evaluator class of a run's task (its score column ``test_<METRIC>``, its ``LABEL`` and ``TABLE_EXTRAS``);
    classification's for a config that did not load or an unknown dataset."""
    spec = DATASETS.get(str(cfg.DATASET.TYPE).lower()) if cfg is not None else None
    return EVALUATORS[spec.task if spec is not None else "classification"]


def collect_run(run):
    """The run's record, from its own logs: status, last/best top-1, wall time, error; with a validation split also
    the trainer's ``test_at_val_best`` (test top-1 at the validation-best epoch), ``val_best_acc``,
    ``val_best_epoch`` and the split's hash (``summary.json``)."""
    evaluator = evaluator_of(run.cfg)
    record = OrderedDict(
        name=run.name,
        config=run.config,
        method=run.label,
        type=run.kind,
        dataset=run.dataset,
        teacher=run.teacher,
        student=run.student,
        seed=run.seed,
        status="failed",
        epochs=0,
        last_acc=None,
        best_acc=None,
        best_epoch=None,
        wall_time=None,
        error="",
        run_dir=run.run_dir,
        metric=evaluator.LABEL,
        extras=OrderedDict(),
        attempts=0,
        job_ids="",
        threads=[],
        launchers=[],
        parallel=[],
    )
    rows = read_csv(os.path.join(run.run_dir, "metrics.csv"))
    key = "test_" + evaluator.METRIC
    if rows and key in rows[0]:
        accs = [float(r[key]) for r in rows]
        best = max(range(len(accs)), key=lambda i: accs[i])  # first epoch reaching the max, as the trainer
        record.update(
            epochs=len(rows), last_acc=accs[-1], best_acc=accs[best], best_epoch=int(rows[best]["epoch"])
        )
        record["extras"] = OrderedDict((label, float(rows[-1]["test_" + metric]))
                                       for metric, label in evaluator.TABLE_EXTRAS)
    elif rows:  # DATASET.TEST_AT_END_ONLY: the test set was evaluated after the last epoch only
        record["epochs"] = len(rows)
    summary = read_json(os.path.join(run.run_dir, "summary.json"))
    if summary and summary.get("val_split_sha256"):
        record.update(test_at_val_best=summary.get("test_top1_at_val_best"), val_best_acc=summary.get("val_best_acc"),
                      val_best_epoch=summary.get("val_best_epoch"), val_split_sha256=summary["val_split_sha256"])
        if record["last_acc"] is None:
            record["last_acc"] = summary.get("last_acc")
            last_metrics = summary.get("last_metrics") or {}
            record["extras"] = OrderedDict((label, last_metrics.get("test_" + metric))
                                           for metric, label in evaluator.TABLE_EXTRAS)
    info = read_json(os.path.join(run.run_dir, RUN_INFO))
    if info and info.get("attempts"):
        attempts = info["attempts"]
        record["wall_time"] = sum(a["wall_time"] for a in attempts)
        record["attempts"] = len(attempts)
        record["job_ids"] = " ".join(OrderedDict.fromkeys(str(a["job_id"]) for a in attempts if a.get("job_id")))
        record["threads"] = sorted({int(a["threads"]) for a in attempts if a.get("threads")})
        record["launchers"] = sorted({a.get("launcher", "local") for a in attempts})
        record["parallel"] = sorted({int(a["jobs"]) for a in attempts if a.get("jobs")})
    elif rows:
        record["wall_time"] = sum(float(r.get("epoch_time") or 0) for r in rows)
    error_path = os.path.join(run.run_dir, ERROR_FILE)
    if run.load_error:
        record["error"] = run.load_error
    elif run_state(run.run_dir, run.epochs) == "done" and run.epochs > 0:
        record["status"] = "ok"
    elif os.path.exists(error_path):
        with open(error_path) as f:
            record["error"] = f.read().strip()
    else:
        record["status"] = "pending"
        record["error"] = "not finished"
    return record
