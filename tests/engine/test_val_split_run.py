"""Runs with a validation split: selection on it (val_best), the test set kept for the end, what is logged, resume;
and a run without a split, unchanged."""
import glob
import json
import os
import shutil
import struct
import sys
import types

import pytest
import torch

from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.engine.trainer import Trainer, train
from mdistiller.eval import main as eval_main
from tests.helpers.runutil import read_metrics, tiny_cfg

EPOCHS = 3
TEST_BATCH = 90  # 450 test images: 5 batches per pass


def split_cfg(root, epochs=EPOCHS, **extra):
    return tiny_cfg(root, epochs=epochs, batch=32, per_class=8, DISTILLER__STUDENT="resnet8", DATASET__VAL_SPLIT=6,
                    DATASET__TEST__BATCH_SIZE=TEST_BATCH, LOG__SAVE_CHECKPOINT_FREQ=1, **extra)


class WandbRun:
    """What the wandb sink sends (a stand-in for wandb's run)."""

    def __init__(self):
        self.logged, self.summary = [], {}

    def log(self, data, step):
        self.logged.append((step, dict(data)))

    def finish(self):
        pass


@pytest.fixture(scope="module")
def end_only(tmp_path_factory):
    """A finished 3-epoch digits run with a validation split and DATASET.TEST_AT_END_ONLY; every batch the test
    evaluator draws records how many epochs were logged by then."""
    root = tmp_path_factory.mktemp("split")
    run_dir = str(root / "run")
    wandb_run = WandbRun()
    patch = pytest.MonkeyPatch()
    patch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kwargs: wandb_run))
    trainer = Trainer(split_cfg(root, DATASET__TEST_AT_END_ONLY=True, LOG__WANDB=True), run_dir)
    drawn = []
    loader = trainer.test_evaluator.loader

    class Spy:
        def __iter__(self):
            for batch in loader:
                drawn.append(len(read_metrics(run_dir)))
                yield batch

    trainer.test_evaluator.loader = Spy()
    summary = trainer.train()
    patch.undo()
    return dict(root=root, run_dir=run_dir, trainer=trainer, summary=summary, drawn=drawn, wandb=wandb_run)


def evaluate(path):
    """``mdistiller-eval -c path`` (the run's config.yaml next to it gives the model and the data)."""
    return eval_main(["-c", str(path), "--workers", "0", "-bs", str(TEST_BATCH)])[0]


def test_no_test_batch_before_the_end(end_only):
    summary, drawn = end_only["summary"], end_only["drawn"]
    passes = 1 if summary["val_best_epoch"] == EPOCHS else 2  # the last model, and the val_best one when it differs
    assert drawn == [EPOCHS] * (5 * passes)
    rows = read_metrics(end_only["run_dir"])
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "lr", "train_acc", "train_loss", "val_acc", "val_acc_top5", "val_loss",
                             "train_ce", "val_best_acc"]
    assert summary["best_acc"] is None and summary["best_epoch"] is None
    vals = [float(r["val_acc"]) for r in rows]
    assert summary["val_best_acc"] == max(vals) and summary["val_best_epoch"] == vals.index(max(vals)) + 1


def test_test_top1_at_val_best_is_the_val_best_checkpoint_reevaluated(end_only):
    run_dir, summary = end_only["run_dir"], end_only["summary"]
    assert evaluate(os.path.join(run_dir, "student_val_best")) == summary["test_top1_at_val_best"]
    assert evaluate(os.path.join(run_dir, "student_latest")) == summary["last_acc"]
    state = load_checkpoint(os.path.join(run_dir, "val_best"))
    assert state["epoch"] == summary["val_best_epoch"] and state["val_best_acc"] == summary["val_best_acc"]
    assert not os.path.exists(os.path.join(run_dir, "best"))  # no epoch was chosen on the test set


def test_the_val_best_checkpoint_is_loaded_for_its_test_pass_then_the_last_weights_put_back(end_only, tmp_path):
    """The branch a run takes when its val-best epoch is not the last: forced to epoch 1 on a copy of the run."""
    trainer, run_dir = end_only["trainer"], end_only["run_dir"]
    shutil.copy(os.path.join(run_dir, "epoch_1"), str(tmp_path / "val_best"))
    last_weights = {k: v.clone() for k, v in trainer.distiller.state_dict().items()}
    trainer.log_path, trainer.best["val"] = str(tmp_path), (0.0, 1)
    try:
        last, at_val_best = trainer.test_at_end()
    finally:
        trainer.log_path = run_dir
    assert at_val_best["test_acc"] == evaluate(os.path.join(run_dir, "student_1"))
    assert last["test_acc"] == end_only["summary"]["last_acc"]
    assert all(torch.equal(v, last_weights[k]) for k, v in trainer.distiller.state_dict().items())


def tensorboard_tags(run_dir):
    """Tags of the scalars in a run's tensorboardX event files (TFRecord: length, crc, event proto, crc)."""
    from tensorboardX.proto import event_pb2

    tags = set()
    for path in glob.glob(os.path.join(run_dir, "train.events", "events*")):
        with open(path, "rb") as f:
            data = f.read()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            tags.update(value.tag for value in event.summary.value)
            at += 16 + length
    return tags


def test_split_records_logs_and_summary(end_only):
    run_dir, summary, wandb_run = end_only["run_dir"], end_only["summary"], end_only["wandb"]
    with open(os.path.join(run_dir, "val_split.json")) as f:
        split = json.load(f)
    assert split["sha256"] == summary["val_split_sha256"] and split["val_size"] == summary["val_size"] == 60
    assert len(split["val_indices"]) == 60 and split["train_size"] == 1347
    with open(os.path.join(run_dir, "summary.json")) as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    assert {"val_acc", "val_acc_top5", "val_loss", "val_best_acc"} <= tensorboard_tags(run_dir)
    assert "test_acc" not in tensorboard_tags(run_dir)
    assert [step for step, _ in wandb_run.logged] == [1, 2, 3] and "val_acc" in wandb_run.logged[0][1]
    assert wandb_run.summary["test_top1_at_val_best"] == summary["test_top1_at_val_best"]
    with open(os.path.join(run_dir, "worklog.txt")) as f:
        worklog = f.read()
    assert "val_acc: " in worklog and "test_acc: " not in worklog
    assert "test_top1_at_val_best\t{:.2f}".format(summary["test_top1_at_val_best"]) in worklog


def test_resume_continues_like_the_uninterrupted_run_and_checks_the_split(end_only, tmp_path):
    run_dir = str(tmp_path / "run")
    train(split_cfg(tmp_path, epochs=2, DATASET__TEST_AT_END_ONLY=True), run_dir)
    summary = train(split_cfg(tmp_path, DATASET__TEST_AT_END_ONLY=True), run_dir, resume=True)
    assert read_metrics(run_dir) == read_metrics(end_only["run_dir"])
    for key in ("val_best_acc", "val_best_epoch", "test_top1_at_val_best", "last_acc", "val_split_sha256"):
        assert summary[key] == end_only["summary"][key], key
    with pytest.raises(ValueError, match="differs from the one this run started with"):
        Trainer(split_cfg(tmp_path, DATASET__TEST_AT_END_ONLY=True, DATASET__SPLIT_SEED=1), run_dir, resume=True)
    with pytest.raises(ValueError, match="the config has none"):
        Trainer(tiny_cfg(tmp_path, epochs=EPOCHS, batch=32, per_class=8, DISTILLER__STUDENT="resnet8"), run_dir,
                resume=True)


def test_with_the_test_set_every_epoch_the_val_best_epoch_reads_its_row(tmp_path):
    """(on the per-sample pipeline: DataLoaders over the held-out images too)"""
    run_dir = str(tmp_path / "run")
    summary = train(split_cfg(tmp_path, epochs=2, DATASET__PIPELINE="per_sample"), run_dir)
    rows = read_metrics(run_dir)
    assert list(rows[0])[4:10] == ["val_acc", "val_acc_top5", "val_loss", "test_acc", "test_acc_top5", "test_loss"]
    row = rows[summary["val_best_epoch"] - 1]
    assert summary["test_top1_at_val_best"] == float(row["test_acc"])
    assert summary["best_acc"] == max(float(r["test_acc"]) for r in rows)
    assert os.path.exists(os.path.join(run_dir, "best")) and os.path.exists(os.path.join(run_dir, "val_best"))
    assert evaluate(os.path.join(run_dir, "student_val_best")) == summary["test_top1_at_val_best"]
    with pytest.raises(ValueError, match="DATASET.TEST_AT_END_ONLY needs a validation split"):
        Trainer(tiny_cfg(tmp_path, DATASET__TEST_AT_END_ONLY=True), str(tmp_path / "no"))


def test_without_a_split_the_run_is_todays(tmp_path):
    """The default run against the same run with the split machinery explicitly off, and the layout of the parent
    commit's runs (columns, checkpoint keys, summary keys, files)."""
    runs = [str(tmp_path / "default"), str(tmp_path / "off")]
    train(tiny_cfg(tmp_path, epochs=2, batch=32, per_class=8, DISTILLER__STUDENT="resnet8"), runs[0])
    train(tiny_cfg(tmp_path, epochs=2, batch=32, per_class=8, DISTILLER__STUDENT="resnet8", DATASET__VAL_SPLIT=0,
                   DATASET__SPLIT_SEED=7, DATASET__TEST_AT_END_ONLY=False), runs[1])
    assert read_metrics(runs[0]) == read_metrics(runs[1])
    weights = [load_checkpoint(os.path.join(r, "latest"))["model"] for r in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert list(read_metrics(runs[0], drop=())[0]) == ["epoch", "lr", "train_acc", "train_loss", "test_acc",
                                                       "test_acc_top5", "test_loss", "train_ce", "best_acc",
                                                       "epoch_time"]
    assert list(load_checkpoint(os.path.join(runs[0], "latest"))) == ["epoch", "model", "optimizer", "best_acc",
                                                                      "best_epoch", "scaler", "rng"]
    with open(os.path.join(runs[0], "summary.json")) as f:
        assert list(json.load(f)) == ["method", "teacher", "student", "dataset", "seed", "epochs", "metric",
                                      "best_acc", "best_epoch", "last_acc", "best_metrics", "last_metrics",
                                      "train_time", "wall_time_this_process", "log_path"]
    assert not glob.glob(os.path.join(runs[0], "*val*"))
