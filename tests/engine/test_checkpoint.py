"""Checkpoint I/O: safe reads, atomic writes."""
import contextlib
import errno
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


@contextlib.contextmanager
def _file_size_limit(nbytes):
    """Writes past ``nbytes`` fail in the kernel with EFBIG, as writes to a full disk fail with ENOSPC; torch's own
    writer would report either only as "unexpected pos" (Python ignores SIGXFSZ, so nothing is killed)."""
    resource = pytest.importorskip("resource")  # POSIX
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_failed_write_names_the_file_and_keeps_the_previous_checkpoint(tmp_path):
    from mdistiller._cli import user_error_text

    path = str(tmp_path / "latest")
    save_checkpoint({"epoch": 1}, path)
    with _file_size_limit(64 * 1024), pytest.raises(OSError) as caught:
        save_checkpoint({"epoch": 2, "model": {"w": torch.zeros(100_000)}}, path)
    assert caught.value.errno == errno.EFBIG and caught.value.filename == os.path.abspath(path)
    assert load_checkpoint(path) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["latest"]
    text = user_error_text(caught.value)  # the command line reports it in one line
    assert text.startswith("File too large while writing a checkpoint") and path in text and "\n" not in text


def test_the_cost_matrix_is_written_the_same_way(tmp_path):
    from mdistiller.cost_matrix import save

    path = str(tmp_path / "wkd_cost_matrix" / "m.pth")
    cost = torch.rand(300, 300, dtype=torch.float64)
    with _file_size_limit(64 * 1024), pytest.raises(OSError, match="while writing the cost matrix") as caught:
        save(cost, path)
    assert caught.value.filename == path and os.listdir(tmp_path / "wkd_cost_matrix") == []
    save(cost, path)
    saved = torch.load(path, weights_only=True)
    assert torch.equal(saved, saved.T) and not saved.diagonal().any() and saved.shape == (300, 300)
