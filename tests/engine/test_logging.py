"""The run's sinks: mdistiller's worklog format, CSV records and their truncation on resume, wandb failures."""
import os
import sys
import types
from collections import OrderedDict

from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.logging import CsvSink, RunLogger, WandbSink, WorklogSink
from mdistiller.engine.records import read_csv


def _record(epoch, acc):
    return OrderedDict(epoch=epoch, lr=0.05, train_acc=50.0, train_loss=1.23456, test_acc=acc, test_acc_top5=99.0,
                       test_loss=0.5, train_loss_kd=0.7, best_acc=acc, epoch_time=1.0)


def test_worklog_is_mdistillers_format(tmp_path):
    sink = WorklogSink(str(tmp_path))
    sink.log_epoch(_record(1, 60.0), {})
    sink.resumed(1)
    sink.finish({"best_acc": 60.0, "last_acc": 59.5})
    expected = ["-" * 25, "epoch: 1", "lr: 0.05", "train_acc: 50.00", "train_loss: 1.23", "test_acc: 60.00",
                "test_acc_top5: 99.00", "test_loss: 0.50", "-" * 25, "resumed from epoch 1", "best_acc\t60.00",
                "last_acc\t59.50", ""]
    with open(tmp_path / "worklog.txt", newline="") as f:
        assert f.read() == os.linesep.join(expected)


def test_csv_rows_and_truncation_on_resume(tmp_path):
    sink = CsvSink(str(tmp_path))
    for epoch in (1, 2, 3):
        sink.log_epoch(_record(epoch, 10.0 * epoch), {"kl": 0.1 * epoch} if epoch > 1 else {})
    assert [r["epoch"] for r in read_csv(str(tmp_path / "metrics.csv"))] == [1, 2, 3]
    assert [r["epoch"] for r in read_csv(str(tmp_path / "alignment.csv"))] == [2, 3]
    sink.resumed(2)
    assert [r["test_acc"] for r in read_csv(str(tmp_path / "metrics.csv"))] == [10.0, 20.0]
    assert [r["epoch"] for r in read_csv(str(tmp_path / "alignment.csv"))] == [2]


def test_wandb_failures_disable_the_sink_and_say_why(monkeypatch, tmp_path, capsys):
    cfg = get_cfg(None, ["LOG.WANDB", "True"])
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    sink = WandbSink(cfg, str(tmp_path))
    assert sink.run is None and "wandb disabled" in capsys.readouterr().out

    class Run:
        summary = {}

        def __init__(self, fail):
            self.fail, self.logged, self.finished = fail, [], False

        def log(self, data, step):
            if self.fail == "log":
                raise RuntimeError("rate limited")
            self.logged.append((step, data))

        def finish(self):
            if self.fail == "finish":
                raise RuntimeError("sync failed")
            self.finished = True

    for fail, message in (("log", "wandb logging failed, disabled: rate limited"),
                          ("finish", "wandb finish failed: sync failed"), (None, None)):
        run = Run(fail)
        monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kwargs: run))
        sink = WandbSink(cfg, str(tmp_path))
        sink.log_epoch(_record(1, 60.0), {"kl": 0.5})
        sink.log_epoch(_record(2, 61.0), {})
        sink.finish({"best_acc": 61.0, "last_acc": 61.0})
        out = capsys.readouterr().out
        if message:
            assert message in out and sink.run is None
        if fail == "log":
            assert run.logged == [] and not run.finished  # disabled after the first failure
        else:
            assert [step for step, _ in run.logged] == [1, 2] and run.logged[0][1]["alignment/kl"] == 0.5
            assert run.summary["best_acc"] == 61.0


def test_run_logger_sinks_and_resume(tmp_path):
    cfg = get_cfg(None, [])
    logger = RunLogger(cfg, str(tmp_path))
    assert [type(s).__name__ for s in logger.sinks] == [
        "TensorboardSink", "CsvSink", "WorklogSink", "ConsoleSink", "SummarySink"]
    logger.log_epoch(_record(1, 60.0), {})
    logger.log_epoch(_record(2, 62.0), {})
    logger.close()
    logger = RunLogger(cfg, str(tmp_path), resumed_epoch=1)
    assert [r["epoch"] for r in read_csv(str(tmp_path / "metrics.csv"))] == [1]
    logger.close()
    logger.finish({"best_acc": 60.0, "last_acc": 60.0})
    assert os.path.exists(tmp_path / "summary.json")
    assert (tmp_path / "worklog.txt").read_text().count("resumed from epoch 1") == 1
