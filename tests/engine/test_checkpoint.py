"""Checkpoint I/O: safe reads, atomic writes."""
import os

import pytest
import torch

from mdistiller.engine import checkpoint as ckpt_mod
from mdistiller.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_unsafe_checkpoint_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, path)
    with pytest.raises(CheckpointError, match="Refusing to load"):  # a ValueError: one line on the command line
        load_checkpoint(str(path))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "latest")
    save_checkpoint({"epoch": 1}, path)

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["latest"]
