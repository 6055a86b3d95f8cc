"""The data pipeline of a run, decided here and only here: samplers and loaders for one process or DDP,
training shuffled per epoch, evaluation sharded, and the batch handed to the distiller.

Two pipelines (``DATASET.PIPELINE``): ``batched`` (the in-memory datasets: whole batches cut on the
training device by :class:`~mdistiller.dataset.batched.BatchedLoader`) and ``per_sample`` (the dataset's
transform per image in DataLoader workers). ``auto`` picks ``batched`` for the datasets the dataset table
marks in memory (cifar100/cifar10/svhn/digits) and ``per_sample`` otherwise.

How items become a batch follows the dataset's task (:data:`COLLATE`): classification items are stacked into
tensors; detection items (images of any size with their box targets) stay lists of images and of target dicts.
"""
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from ..dataset.batched import BatchedLoader, check_batched_support, epoch_seed
from ..dataset.coco import collate_detection
from ..dataset.table import DATASETS, dataset_spec
from .device import move_to
from .utils import seed_worker

PIPELINE_CHOICES = ("auto", "batched", "per_sample")
# Names of the fields of a training batch, by position (CRD's datasets add the last one).
BATCH_FIELDS = ("image", "target", "index", "contrastive_index")
# DatasetSpec.task -> the DataLoader's collate_fn (None: torch's default, stacking items into tensors).
COLLATE = {"classification": None, "detection": collate_detection}


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


def _pipeline_setting(cfg):
    value = str(cfg.DATASET.PIPELINE or "auto").lower()
    if value not in PIPELINE_CHOICES:
        raise ValueError("DATASET.PIPELINE must be one of {}, got {!r}".format(", ".join(PIPELINE_CHOICES), value))
    return value


def pipeline_of(cfg):
    """``"batched"`` or ``"per_sample"``: ``DATASET.PIPELINE`` with ``auto`` resolved by the dataset table
    (``batched`` for an in-memory dataset); ``batched`` for a dataset read from files is an error."""
    value = _pipeline_setting(cfg)
    spec = dataset_spec(cfg.DATASET.TYPE)
    if value == "auto":
        return "batched" if spec.in_memory else "per_sample"
    if value == "batched" and not spec.in_memory:
        raise ValueError(
            "DATASET.PIPELINE batched needs an in-memory dataset (%s); DATASET.TYPE %s reads its images "
            "from files: use DATASET.PIPELINE per_sample"
            % (", ".join(name for name, s in DATASETS.items() if s.in_memory), spec.name)
        )
    return value


def _batchable(cfg, *datasets):
    """Whether the sets can be cut in whole batches; with ``DATASET.PIPELINE auto`` a set that cannot falls back
    to per_sample, with ``batched`` it is an error naming the dataset and the fix."""
    try:
        for dataset in datasets:
            check_batched_support(dataset, "DATASET.TYPE {}".format(cfg.DATASET.TYPE))
    except ValueError:
        if _pipeline_setting(cfg) != "auto":
            raise
        return False
    return True


def set_loader_epoch(loader, epoch):
    """Select ``epoch``'s order (and, for the batched path, augmentations) of a training loader."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    else:
        loader.sampler.set_epoch(epoch)


def build_loaders(cfg, train_set, eval_sets, runtime):
    """``(train_loader, eval_loaders)`` for this process: one evaluation loader per set of ``eval_sets``, in order
    (the test set, and the validation split when the run holds one out).

    Training: ``DistributedSampler`` order (shuffled, seeded by ``EXPERIMENT.SEED``; call
    :func:`set_loader_epoch` every epoch), per-process batch ``SOLVER.BATCH_SIZE / world_size`` (the
    config's batch is the global one). Evaluation: ``ShardSampler`` order, batch ``DATASET.TEST.BATCH_SIZE``.
    ``DATASET.PIPELINE`` batched: :class:`~mdistiller.dataset.batched.BatchedLoader` on the training device,
    in the same sample order. per_sample: DataLoaders; for file-backed datasets (ImageFolder) with workers they
    persist across epochs, and batches are pinned on CUDA for non-blocking copies. Every set of a run takes the
    same pipeline.
    """
    if cfg.SOLVER.BATCH_SIZE % runtime.world_size:
        raise ValueError(
            "SOLVER.BATCH_SIZE {} is the global batch; it must divide by the {} processes".format(
                cfg.SOLVER.BATCH_SIZE, runtime.world_size
            )
        )
    batch_size = cfg.SOLVER.BATCH_SIZE // runtime.world_size
    if pipeline_of(cfg) == "batched" and _batchable(cfg, train_set, *eval_sets):
        common = dict(device=runtime.device, seed=cfg.EXPERIMENT.SEED, rank=runtime.rank, world_size=runtime.world_size)
        return (BatchedLoader(train_set, batch_size, train=True, **common),
                [BatchedLoader(s, cfg.DATASET.TEST.BATCH_SIZE, train=False, **common) for s in eval_sets])
    train_sampler = DistributedSampler(
        train_set, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True, seed=cfg.EXPERIMENT.SEED
    )
    spec = dataset_spec(cfg.DATASET.TYPE)
    persistent = not spec.in_memory and cfg.DATASET.NUM_WORKERS > 0
    common = dict(
        num_workers=cfg.DATASET.NUM_WORKERS,
        pin_memory=runtime.device.type == "cuda",
        worker_init_fn=seed_worker,
        persistent_workers=persistent,
        collate_fn=COLLATE[spec.task],
    )
    if persistent:  # workers outlive epochs: seed each item from (seed, epoch, index) instead
        train_set = PerItemSeeded(train_set, cfg.EXPERIMENT.SEED)
        train_sampler = EpochTaggedSampler(train_sampler)
    train_loader = DataLoader(train_set, batch_size=batch_size, sampler=train_sampler, **common)
    eval_loaders = [
        DataLoader(s, batch_size=cfg.DATASET.TEST.BATCH_SIZE,
                   sampler=ShardSampler(len(s), runtime.rank, runtime.world_size), **common)
        for s in eval_sets
    ]
    return train_loader, eval_loaders


def batch_size(batch):
    """The number of samples (images) in a batch of any task."""
    return len(batch[1])


def batch_inputs(batch, device, channels_last=False):
    """A training batch as the distiller's keyword arguments (``image``, ``target``, ``index``,
    ``contrastive_index``, as many as the batch has), on ``device`` (a detection batch's lists of images and of
    target dicts included)."""
    return {name: move_to(value, device, channels_last) for name, value in zip(BATCH_FIELDS, batch)}
