"""Samplers and data loaders of a run: one process or DDP, training shuffled per epoch, evaluation sharded.

Two pipelines (``DATASET.PIPELINE``): ``batched`` (the in-memory datasets: whole batches cut on the
training device by :class:`~mdistiller.dataset.batched.BatchedLoader`) and ``per_sample`` (the dataset's
transform per image in DataLoader workers). ``auto`` picks ``batched`` for cifar100/cifar10/svhn/digits
and ``per_sample`` otherwise.
"""
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from ..dataset.batched import (
    IN_MEMORY_TYPES,
    build_batched_loaders,
    check_batched_support,
    epoch_seed,
    resolve_pipeline,
)
from .utils import seed_worker

PIPELINE_CHOICES = ("auto", "batched", "per_sample")


class ShardSampler(Sampler):
    """Evaluation sharding without padding: rank r gets indices r, r+W, r+2W, ... (each sample once)."""

    def __init__(self, length, rank, world_size):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


class EpochTaggedSampler(Sampler):
    """Yields ``(epoch, index)`` for the indices of ``sampler`` (forwards ``set_epoch``)."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, int(i)) for i in self.sampler)

    def __len__(self):
        return len(self.sampler)


class PerItemSeeded(Dataset):
    """``dataset[index]`` with python, numpy and torch seeded from ``(seed, epoch, index)`` first.

    Persistent DataLoader workers are seeded once, so their augmentation streams would depend on
    the epochs they have already served; seeding every item keeps a resumed run identical to an
    uninterrupted one (and makes the augmentations independent of the number of workers).
    """

    def __init__(self, dataset, seed):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        item_seed = epoch_seed(self.seed, epoch, index)
        random.seed(item_seed)
        np.random.seed(item_seed % (2**32))
        torch.manual_seed(item_seed % (2**63))
        return self.dataset[index]


def pipeline_of(cfg):
    """``"batched"`` or ``"per_sample"``: ``DATASET.PIPELINE`` with ``auto`` resolved by ``DATASET.TYPE``."""
    value = str(cfg.DATASET.get("PIPELINE", "auto") or "auto").lower()
    if value not in PIPELINE_CHOICES:
        raise ValueError("DATASET.PIPELINE must be one of {}, got {!r}".format(", ".join(PIPELINE_CHOICES), value))
    return resolve_pipeline({"DATASET": {"TYPE": cfg.DATASET.TYPE, "PIPELINE": "" if value == "auto" else value}})


def _explicit(cfg):
    return str(cfg.DATASET.get("PIPELINE", "auto") or "auto").lower() != "auto"


def _supports_batched(*datasets):
    """``auto`` falls back to per_sample for a dataset that does not hold its images in memory."""
    try:
        for dataset in datasets:
            check_batched_support(dataset)
    except ValueError:
        return False
    return True


def set_loader_epoch(loader, epoch):
    """Select ``epoch``'s order (and, for the batched path, augmentations) of a training loader."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    else:
        loader.sampler.set_epoch(epoch)


def build_loaders(cfg, train_set, val_set, runtime):
    """``(train_loader, val_loader)`` for this process.

    Training: ``DistributedSampler`` order (shuffled, seeded by ``EXPERIMENT.SEED``; call
    :func:`set_loader_epoch` every epoch), per-process batch ``SOLVER.BATCH_SIZE / world_size`` (the
    config's batch is the global one). Validation: ``ShardSampler`` order, batch ``DATASET.TEST.BATCH_SIZE``.
    ``DATASET.PIPELINE`` batched: :func:`~mdistiller.dataset.batched.build_batched_loaders` on the
    training device. per_sample: DataLoaders; for file-backed datasets (ImageFolder) with workers they
    persist across epochs, and batches are pinned on CUDA for non-blocking copies.
    """
    if cfg.SOLVER.BATCH_SIZE % runtime.world_size:
        raise ValueError(
            "SOLVER.BATCH_SIZE {} is the global batch; it must divide by the {} processes".format(
                cfg.SOLVER.BATCH_SIZE, runtime.world_size
            )
        )
    if pipeline_of(cfg) == "batched" and (_explicit(cfg) or _supports_batched(train_set, val_set)):
        return build_batched_loaders(cfg, train_set, val_set, runtime.device, runtime.rank, runtime.world_size)
    train_sampler = DistributedSampler(
        train_set, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True, seed=cfg.EXPERIMENT.SEED
    )
    persistent = cfg.DATASET.TYPE not in IN_MEMORY_TYPES and cfg.DATASET.NUM_WORKERS > 0
    common = dict(
        num_workers=cfg.DATASET.NUM_WORKERS,
        pin_memory=runtime.device.type == "cuda",
        worker_init_fn=seed_worker,
        persistent_workers=persistent,
    )
    if persistent:  # workers outlive epochs: seed each item from (seed, epoch, index) instead
        train_set = PerItemSeeded(train_set, cfg.EXPERIMENT.SEED)
        train_sampler = EpochTaggedSampler(train_sampler)
    train_loader = DataLoader(
        train_set, batch_size=cfg.SOLVER.BATCH_SIZE // runtime.world_size, sampler=train_sampler, **common
    )
    val_loader = DataLoader(
        val_set,
        batch_size=cfg.DATASET.TEST.BATCH_SIZE,
        sampler=ShardSampler(len(val_set), runtime.rank, runtime.world_size),
        **common,
    )
    return train_loader, val_loader
