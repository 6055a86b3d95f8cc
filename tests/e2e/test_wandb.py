"""wandb: a failing wandb never stops a run; offline mode logs the run's records."""
import sys
import time
import types

from mdistiller.engine.trainer import train
from tests.helpers.runutil import tiny_cfg


def test_failing_wandb_never_stops_training(tmp_path, monkeypatch):
    calls = []

    def failing_init(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("network unreachable")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=failing_init))
    cfg = tiny_cfg(tmp_path, DISTILLER__STUDENT="resnet8", LOG__WANDB=True)
    assert train(cfg, str(tmp_path / "a"))["epochs"] == 1 and calls

    class Run:
        summary = {}

        def log(self, *args, **kwargs):
            raise RuntimeError("rate limited")

        def finish(self):
            pass

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kwargs: Run()))
    assert train(tiny_cfg(tmp_path, DISTILLER__STUDENT="resnet8", LOG__WANDB=True), str(tmp_path / "b"))["epochs"] == 1


def test_wandb_offline_mode_logs_the_run(tmp_path, monkeypatch, teacher_ckpt):
    import wandb  # optional for users; CI installs it from requirements/ci.txt
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_cfg(tmp_path, DISTILLER__TYPE="KD", DISTILLER__STUDENT="resnet8", DISTILLER__TEACHER="resnet8",
                   DISTILLER__TEACHER_CKPT=teacher_ckpt, LOG__WANDB=True)
    summary = train(cfg, str(tmp_path / "run"))
    wandb.teardown()  # stops wandb's service process, which writes out what it still holds of the run
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 1
    keys = (b"test_acc", b"train_loss_kd", b"alignment/kl", b"best_acc")
    deadline = time.time() + 60  # and may still be appending to the transaction log when it returns (loaded CI)
    while not all(key in runs[0].read_bytes() for key in keys) and time.time() < deadline:
        time.sleep(0.1)
    data = runs[0].read_bytes()
    for key in keys:
        assert key in data, key
    assert summary["epochs"] == 1
