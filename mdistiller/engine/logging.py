"""What a run writes while it trains, one sink per destination.

* ``worklog.txt``: mdistiller's per-epoch block, ``resumed from epoch N`` lines, ``best_acc``/``last_acc`` at the end
  (and, with a validation split, ``val_best_acc``/``test_top1_at_val_best``)
* ``metrics.csv`` (one row per epoch) and ``alignment.csv`` (the alignment diagnostics), via ``engine.records``
* ``train.events/``: tensorboardX scalars (diagnostics under ``alignment/``)
* the console: one line per epoch
* ``summary.json``: the run summary, at the end
* wandb (``LOG.WANDB``): a failing wandb prints why, is disabled, and never stops the run

plus the run information written once at the start (``config.yaml``, ``env.json``) and the fixed
validation batch the alignment diagnostics are computed on.
"""
import json
import math
import os
import sys
from collections import OrderedDict, namedtuple

import torch

from .records import append_csv, truncate_csv
from .utils import environment_info, log_msg

TRAIN_KEYS = ("train_acc", "train_loss")
SUMMARY_LINES = ("best_acc", "last_acc", "val_best_acc", "test_top1_at_val_best")

# How a run's evaluators appear in its logs: ``name`` (the records' prefix), ``names`` (its metrics, in order),
# ``best`` (the record key of its best value so far) and ``console`` (``(metric, label)`` pairs of the console line,
# the first with its best value). The default is a classification run's test set (TopKEvaluator "test").
EvaluatorLog = namedtuple("EvaluatorLog", ["name", "names", "best", "console"])
CLASSIFICATION_LOGS = (EvaluatorLog("test", ("test_acc", "test_acc_top5", "test_loss"), "best_acc",
                                    (("test_acc", "acc"), ("test_acc_top5", "top5"))),)


def write_run_info(log_path, cfg, runtime, resumed):
    """``config.yaml`` (the merged config, mergeable back) and ``env.json`` (versions, device, git commit, argv)."""
    with open(os.path.join(log_path, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    info = environment_info(runtime.device)
    info.update(world_size=runtime.world_size, seed=cfg.EXPERIMENT.SEED, argv=sys.argv, resumed=resumed,
                host_memory_reuse=runtime.host_memory_reuse)
    with open(os.path.join(log_path, "env.json"), "w") as f:
        json.dump(info, f, indent=2)


def build_diagnostics(cfg, model, val_set):
    """``AlignmentDiagnostics`` on the first ``LOG.DIAGNOSTICS_SAMPLES`` (256) samples of ``val_set`` (the validation
    split when the run holds one out, else the test set), or None when ``LOG.DIAGNOSTICS`` is off, the method has no
    teacher or the task is not classification (the diagnostics compare class distributions of whole images)."""
    from ..dataset.table import task_of

    if not (cfg.LOG.DIAGNOSTICS and getattr(model, "teacher", None) is not None and task_of(cfg) == "classification"):
        return None
    from .diagnostics import AlignmentDiagnostics

    count = min(len(val_set), cfg.LOG.DIAGNOSTICS_SAMPLES)
    items = [val_set[i] for i in range(count)]
    images = torch.stack([item[0] for item in items])
    targets = torch.as_tensor([int(item[1]) for item in items])
    return AlignmentDiagnostics(cfg, images, targets)


class Sink:
    """One destination. ``record`` is the epoch's ordered metrics (``epoch``, ``lr``, accuracies, losses,
    ``train_<loss term>``, ``best_acc`` / ``val_best_acc``, ``epoch_time``); ``diagnostics`` the alignment values (may
    be empty)."""

    def resumed(self, epoch):
        """The run continues after ``epoch``: forget what was logged past it."""

    def log_epoch(self, record, diagnostics):
        pass

    def close(self):
        """After the last epoch, also when training raised."""

    def finish(self, summary):
        """After a completed run."""


class WorklogSink(Sink):
    """``worklog.txt`` in mdistiller's format: per epoch the training accuracy and loss and the metrics of the
    ``evaluators`` the record has (:data:`EvaluatorLog`; mdistiller's ``test_acc``, ``test_acc_top5``, ``test_loss``
    for classification)."""

    def __init__(self, log_path, evaluators=CLASSIFICATION_LOGS):
        self.path = os.path.join(log_path, "worklog.txt")
        self.keys = TRAIN_KEYS + tuple(name for evaluator in evaluators for name in evaluator.names)

    def _write(self, lines):
        with open(self.path, "a") as f:
            f.write(os.linesep.join(lines) + os.linesep)

    def resumed(self, epoch):
        self._write(["resumed from epoch {}".format(epoch)])

    def log_epoch(self, record, diagnostics):
        lines = ["-" * 25, "epoch: {}".format(record["epoch"]), "lr: {:.2f}".format(record["lr"])]
        lines += ["{}: {:.2f}".format(key, record[key]) for key in self.keys if key in record]
        lines.append("-" * 25)
        self._write(lines)

    def finish(self, summary):
        self._write(["{}\t{:.2f}".format(key, summary[key]) for key in SUMMARY_LINES if summary.get(key) is not None])


class CsvSink(Sink):
    """``metrics.csv`` (every record) and ``alignment.csv`` (``epoch`` + diagnostics, when there are any)."""

    def __init__(self, log_path):
        self.metrics = os.path.join(log_path, "metrics.csv")
        self.alignment = os.path.join(log_path, "alignment.csv")

    def resumed(self, epoch):
        # Rows logged after the checkpoint was taken (a kill between logging and saving) are redone.
        for path in (self.metrics, self.alignment):
            truncate_csv(path, epoch)

    def log_epoch(self, record, diagnostics):
        append_csv(self.metrics, record)
        if diagnostics:
            append_csv(self.alignment, OrderedDict([("epoch", record["epoch"])] + list(diagnostics.items())))


class TensorboardSink(Sink):
    """tensorboardX events in ``train.events/``: every record value, diagnostics as ``alignment/<name>``."""

    def __init__(self, log_path):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(os.path.join(log_path, "train.events"))

    def log_epoch(self, record, diagnostics):
        epoch = record["epoch"]
        for key, value in record.items():
            if key != "epoch" and not math.isnan(value):  # NaN: a metric without data (COCO's APl without large boxes)
                self.writer.add_scalar(key, value, epoch)
        for key, value in diagnostics.items():
            self.writer.add_scalar("alignment/" + key, value, epoch)
        self.writer.flush()

    def close(self):
        self.writer.close()


class ConsoleSink(Sink):
    """One line per epoch on stdout: training loss and accuracy, then each evaluator the record has (its console
    metrics, the first with its best value)."""

    def __init__(self, evaluators=CLASSIFICATION_LOGS):
        self.evaluators = tuple(evaluators)

    def log_epoch(self, record, diagnostics):
        text = "Epoch {} | lr {:.4f} | train loss {:.4f} acc {:.2f}".format(
            record["epoch"], record["lr"], record["train_loss"], record["train_acc"])
        for evaluator in self.evaluators:
            (first, label), rest = evaluator.console[0], evaluator.console[1:]
            if first in record:
                text += " | {} {} {:.2f} (best {:.2f})".format(evaluator.name, label, record[first],
                                                               record[evaluator.best])
                text += "".join(" {} {:.2f}".format(label, record[key]) for key, label in rest)
        print(log_msg(text, "EVAL"))


def json_safe(value):
    """``value`` with every NaN float (a metric without data) as None, so the file is standard JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return type(value)((k, json_safe(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class SummarySink(Sink):
    """``summary.json``: the dict ``Trainer.train`` returns (a NaN metric written as null)."""

    def __init__(self, log_path):
        self.path = os.path.join(log_path, "summary.json")

    def finish(self, summary):
        with open(self.path, "w") as f:
            json.dump(json_safe(summary), f, indent=2)


class WandbSink(Sink):
    """wandb run (project ``EXPERIMENT.PROJECT``, name = the run folder's name, files under the run folder,
    ``resume="allow"``). Any exception of wandb disables the sink with a message; the run goes on."""

    def __init__(self, cfg, log_path):
        self.run = None
        self._guarded("wandb disabled: {}", self._init, cfg, log_path)

    def _guarded(self, message, action, *args):
        try:
            action(*args)
        except Exception as e:  # a failing wandb never stops training
            print(log_msg(message.format(e), "INFO"))
            self.run = None

    def _init(self, cfg, log_path):
        import wandb

        self.run = wandb.init(
            project=cfg.EXPERIMENT.PROJECT,
            name=os.path.basename(log_path),
            config=json.loads(json.dumps(cfg, default=str)),
            dir=log_path,
            resume="allow",
        )

    def _log(self, record, diagnostics):
        self.run.log(dict(record, **{"alignment/" + k: v for k, v in diagnostics.items()}), step=record["epoch"])

    def _finish(self, summary):
        self.run.summary.update({key: summary[key] for key in SUMMARY_LINES + ("val_best_epoch",) if key in summary})
        self.run.finish()

    def log_epoch(self, record, diagnostics):
        if self.run is not None:
            self._guarded("wandb logging failed, disabled: {}", self._log, record, diagnostics)

    def finish(self, summary):
        if self.run is not None:
            self._guarded("wandb finish failed: {}", self._finish, summary)


class RunLogger:
    """All sinks of a run (main process only). ``resumed_epoch``: the run continues after that epoch;
    ``evaluators``: how the run's evaluators appear (:data:`EvaluatorLog`, in the records' order); ``extra_sinks``
    come after the run's own."""

    def __init__(self, cfg, log_path, resumed_epoch=None, extra_sinks=(), evaluators=CLASSIFICATION_LOGS):
        self.sinks = [
            TensorboardSink(log_path), CsvSink(log_path), WorklogSink(log_path, evaluators), ConsoleSink(evaluators),
            SummarySink(log_path),
        ]
        if cfg.LOG.WANDB:
            self.sinks.append(WandbSink(cfg, log_path))
        self.sinks += list(extra_sinks)
        if resumed_epoch is not None:
            for sink in self.sinks:
                sink.resumed(resumed_epoch)

    def log_epoch(self, record, diagnostics):
        for sink in self.sinks:
            sink.log_epoch(record, diagnostics)

    def close(self):
        for sink in self.sinks:
            sink.close()

    def finish(self, summary):
        for sink in self.sinks:
            sink.finish(summary)
