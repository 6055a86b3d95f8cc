"""DATASET.PIPELINE in the trainer: per_sample keeps the DataLoader path bit for bit, batched is reproducible,
and the in-memory datasets (digits, CIFAR) train on the batched path by default."""
import math

import pytest
import torch
from torch.utils.data import DataLoader

from mdistiller.dataset.batched import BatchedLoader
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.engine.data import set_loader_epoch
from mdistiller.engine.trainer import Trainer
from tests.helpers.datagen import make_cifar100_folder
from tests.helpers.runutil import random_teacher_ckpt, read_metrics, tiny_cfg

# The first epoch of a digits KD run (resnet8 -> resnet8, seed 0, batch 128, random teacher of
# random_teacher_ckpt, one intra-op thread as the tests run) as the trainer wrote it before the batched
# pipeline existed (commit b2549f0, AVX-512 CPU). Other CPU kernels round the float32 training differently:
# between AVX-512, AVX2 and SSE kernels the losses moved by up to 4.6e-4 relative (train_loss_kd) and test top-5
# by one image, hence 2e-3 relative for losses and 1 point (4 of 450 test images) for accuracies.
PER_SAMPLE_REFERENCE = {
    "train_acc": 9.873793615441722,
    "train_loss": 0.2404813849890595,
    "test_acc": 10.0,
    "test_acc_top5": 46.888888888888886,
    "test_loss": 2.3071948920355903,
    "train_loss_ce": 0.23242149983809982,
    "train_loss_kd": 0.008059887425682238,
}
LOSS_REL, ACC_ABS = 2e-3, 1.0
# The per-sample loader's first batch of epoch 1 after torch.manual_seed(0), recorded at commit e5e65ae: the sample
# order and labels (exact on any machine) and a fixed random projection of the cropped images (float64 sum of float32 pixels,
# within 1e-6 of their norm: the dataset's float32 normalization may round differently on other CPUs, while a
# crop one pixel off moves it by 1e-2 of the norm).
FIRST_BATCH = {
    "index": [721, 1052, 1126, 587, 1072, 534, 764, 188, 280, 507, 959, 124, 133, 674, 496, 771],
    "target": [8, 6, 2, 6, 5, 8, 1, 5, 3, 8, 4, 4, 6, 8, 5, 1],
    "projection": 193.8512597702461,
    "norm2": 380511.05516393913,
}


def _kd_cfg(prefix, teacher, **extra):
    return tiny_cfg(prefix, batch=128, size=32, per_class=None, DISTILLER__TYPE="KD", DISTILLER__STUDENT="resnet8",
                    DISTILLER__TEACHER="resnet8", DISTILLER__TEACHER_CKPT=teacher, **extra)


def _run(cfg, path):
    trainer = Trainer(cfg, str(path))
    loader = trainer.train_loader
    summary = trainer.train()
    return loader, summary["log_path"]


def _first_batch(loader):
    """Epoch 1's first batch after ``torch.manual_seed(0)``: its first 16 indices and labels, and a fixed random
    projection and the squared norm of its images (float64 sums)."""
    set_loader_epoch(loader, 1)
    torch.manual_seed(0)
    image, target, index = next(iter(loader))[:3]
    pixels = image.double()
    weights = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return dict(index=index[:16].tolist(), target=target[:16].tolist(), projection=float((weights * pixels).sum()),
                norm2=float((pixels * pixels).sum()))


def _weights(run):
    return load_checkpoint(str(run) + "/student_latest")["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.numerics
def test_per_sample_is_the_dataloader_path_and_unchanged(tmp_path):
    teacher = random_teacher_ckpt(tmp_path / "t.pth")
    runs = []
    for name in ("a", "b"):
        loader, run = _run(_kd_cfg(tmp_path / name, teacher, DATASET__PIPELINE="per_sample"), tmp_path / name / "r")
        assert isinstance(loader, DataLoader) and not loader.persistent_workers
        runs.append(run)
    assert read_metrics(runs[0]) == read_metrics(runs[1])
    _assert_same_weights(_weights(runs[0]), _weights(runs[1]))
    row = read_metrics(runs[0])[0]
    for key, value in PER_SAMPLE_REFERENCE.items():
        tolerance = dict(abs=ACC_ABS) if "acc" in key else dict(rel=LOSS_REL)
        assert float(row[key]) == pytest.approx(value, **tolerance), key

    first = _first_batch(loader)
    assert first["index"] == FIRST_BATCH["index"] and first["target"] == FIRST_BATCH["target"]
    assert first["norm2"] == pytest.approx(FIRST_BATCH["norm2"], rel=2e-6)
    assert first["projection"] == pytest.approx(FIRST_BATCH["projection"], abs=1e-6 * math.sqrt(FIRST_BATCH["norm2"]))


def test_digits_default_to_batched_which_is_reproducible_and_differs_from_per_sample(tmp_path):
    teacher = random_teacher_ckpt(tmp_path / "t.pth")
    runs = []
    for name, pipeline in (("a", "auto"), ("b", "batched")):  # auto: digits hold their images in memory
        loader, run = _run(_kd_cfg(tmp_path / name, teacher, DATASET__PIPELINE=pipeline), tmp_path / name / "r")
        assert isinstance(loader, BatchedLoader)
        runs.append(run)
    assert read_metrics(runs[0]) == read_metrics(runs[1])
    _assert_same_weights(_weights(runs[0]), _weights(runs[1]))
    first = _first_batch(loader)  # the per-sample order, other augmentations
    assert first["index"] == FIRST_BATCH["index"]
    assert first["projection"] != pytest.approx(FIRST_BATCH["projection"], abs=1e-2 * math.sqrt(FIRST_BATCH["norm2"]))


def test_generated_cifar_defaults_to_the_batched_path(tmp_path):
    make_cifar100_folder(tmp_path / "data", n_train=12, n_test=6)
    cfg = get_cfg(None, ["DATASET.TYPE", "cifar100", "DATASET.ROOT", str(tmp_path / "data"), "DATASET.DOWNLOAD",
                         "False", "DATASET.NUM_WORKERS", "0", "SOLVER.EPOCHS", "1", "SOLVER.BATCH_SIZE", "6",
                         "DISTILLER.TYPE", "NONE", "DISTILLER.STUDENT", "resnet8", "LOG.PREFIX", str(tmp_path / "out"),
                         "LOG.PROGRESS_BAR", "False", "EXPERIMENT.DEVICE", "cpu"])
    loader, run = _run(cfg, tmp_path / "out" / "cifar")
    assert isinstance(loader, BatchedLoader) and len(read_metrics(run)) == 1
