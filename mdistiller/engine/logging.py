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
import os
import sys
from collections import OrderedDict

import torch

from .records import append_csv, truncate_csv
from .utils import environment_info, log_msg

# Those a record has are written (val_*: with a validation split; test_*: unless the test set waits for the end).
WORKLOG_KEYS = ("train_acc", "train_loss", "val_acc", "val_acc_top5", "val_loss", "test_acc", "test_acc_top5",
                "test_loss")
SUMMARY_LINES = ("best_acc", "last_acc", "val_best_acc", "test_top1_at_val_best")


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
    split when the run holds one out, else the test set), or None when ``LOG.DIAGNOSTICS`` is off or the method has no
    teacher."""
    if not (cfg.LOG.DIAGNOSTICS and getattr(model, "teacher", None) is not None):
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
    """``worklog.txt`` in mdistiller's format."""

    def __init__(self, log_path):
        self.path = os.path.join(log_path, "worklog.txt")

    def _write(self, lines):
        with open(self.path, "a") as f:
            f.write(os.linesep.join(lines) + os.linesep)

    def resumed(self, epoch):
        self._write(["resumed from epoch {}".format(epoch)])

    def log_epoch(self, record, diagnostics):
        lines = ["-" * 25, "epoch: {}".format(record["epoch"]), "lr: {:.2f}".format(record["lr"])]
        lines += ["{}: {:.2f}".format(key, record[key]) for key in WORKLOG_KEYS if key in record]
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
            if key != "epoch":
                self.writer.add_scalar(key, value, epoch)
        for key, value in diagnostics.items():
            self.writer.add_scalar("alignment/" + key, value, epoch)
        self.writer.flush()

    def close(self):
        self.writer.close()


class ConsoleSink(Sink):
    """One line per epoch on stdout."""

    def log_epoch(self, record, diagnostics):
        text = "Epoch {} | lr {:.4f} | train loss {:.4f} acc {:.2f}".format(
            record["epoch"], record["lr"], record["train_loss"], record["train_acc"])
        for name, best in (("val", "val_best_acc"), ("test", "best_acc")):
            if name + "_acc" in record:
                text += " | {} acc {:.2f} (best {:.2f}) top5 {:.2f}".format(
                    name, record[name + "_acc"], record[best], record[name + "_acc_top5"])
        print(log_msg(text, "EVAL"))


class SummarySink(Sink):
    """``summary.json``: the dict ``Trainer.train`` returns."""

    def __init__(self, log_path):
        self.path = os.path.join(log_path, "summary.json")

    def finish(self, summary):
        with open(self.path, "w") as f:
            json.dump(summary, f, indent=2)


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
    """All sinks of a run (main process only). ``resumed_epoch``: the run continues after that epoch; ``extra_sinks``
    come after the run's own."""

    def __init__(self, cfg, log_path, resumed_epoch=None, extra_sinks=()):
        self.sinks = [
            TensorboardSink(log_path), CsvSink(log_path), WorklogSink(log_path), ConsoleSink(), SummarySink(log_path)
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
