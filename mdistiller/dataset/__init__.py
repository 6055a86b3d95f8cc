"""Datasets of the benchmark.

``build_datasets(cfg, needs=None) -> (train_set, val_set, num_classes)``
is the entry point; ``get_dataset(cfg)`` keeps mdistiller's loader-returning
interface and asks the configured method what it needs (:func:`mdistiller.registry.data_needs`). Config keys read:

* ``DATASET.TYPE``: one of :data:`DATASET_TYPES`;
* ``DATASET.ROOT`` (default ``"data"``): folder holding the datasets;
* ``DATASET.DOWNLOAD`` (default True): download CIFAR / SVHN when missing;
* ``DATASET.NUM_CLASSES`` (default 0 = the dataset's own count): override the
  number of classes reported (e.g. for a reduced copy of a dataset); every
  label must be smaller than it;
* ``DATASET.TRAIN_PER_CLASS`` (default 0 = all): train on at most this many images of every
  class (a labelled subset, e.g. for distillation when the student sees few labels), drawn with
  ``DATASET.SUBSET_SEED`` (default -1 = ``EXPERIMENT.SEED``: runs sharing a seed share the subset);
* ``DATASET.INPUT_SIZE`` (digits only): the side the 8x8 digits are upscaled to (default 32);
* ``needs`` (a :data:`mdistiller.registry.DataNeeds`): with ``contrastive_k > 0`` the train set
  is wrapped in CRD's contrastive sampling with that many negatives and ``contrastive_mode``.

Train items are ``(image, target, index)`` (``+ contrastive_index`` when
contrastive), val items ``(image, target)``; every train set has ``.targets``.

``build_batched_loaders(cfg, train_set, val_set, device, rank, world_size)``
(:mod:`mdistiller.dataset.batched`) replaces the per-sample DataLoaders of the
in-memory datasets (CIFAR, SVHN, digits) by whole-batch tensor ops on the
training device; ``resolve_pipeline(cfg)`` reads ``DATASET.PIPELINE``.
"""
from torch.utils.data import DataLoader

from ..registry import data_needs

from .batched import BatchedLoader, build_batched_loaders, resolve_pipeline
from .common import config_value, per_class_indices, select_items
from .cifar import CIFAR10, CIFAR100, CIFAR100Instance, build_cifar10, build_cifar100
from .contrastive import ContrastiveSample
from .digits import Digits, build_digits, digits_size
from .imagefolder import ImageFolderInstance, build_imagenet, build_tiny_imagenet
from .svhn import SVHN, build_svhn

_BUILDERS = {
    "cifar100": build_cifar100,
    "cifar10": build_cifar10,
    "svhn": build_svhn,
    "imagenet": build_imagenet,
    "tiny_imagenet": build_tiny_imagenet,
    "digits": build_digits,
}
DATASET_TYPES = tuple(_BUILDERS)
# Side of the images each in-memory / fixed-size dataset yields (digits: DATASET.INPUT_SIZE, see image_size).
_FIXED_SIDES = {"cifar100": 32, "cifar10": 32, "svhn": 32, "tiny_imagenet": 64}

__all__ = [
    "DATASET_TYPES",
    "build_datasets",
    "image_size",
    "get_dataset",
    "wrap_contrastive",
    "resolve_num_classes",
    "ContrastiveSample",
    "BatchedLoader",
    "build_batched_loaders",
    "resolve_pipeline",
    "CIFAR10",
    "CIFAR100",
    "CIFAR100Instance",
    "SVHN",
    "Digits",
    "ImageFolderInstance",
]


def resolve_num_classes(own, override, *label_lists):
    """Return ``override`` if > 0 else ``own``; check every label fits."""
    num_classes = int(override) if override and int(override) > 0 else int(own)
    top = max((max(labels) for labels in label_lists if len(labels)), default=-1)
    if top >= num_classes:
        raise ValueError(
            "DATASET.NUM_CLASSES=%d but the data has label %d; use 0 for the dataset's "
            "own count (%d) or a value > %d" % (num_classes, top, own, top)
        )
    return num_classes


def wrap_contrastive(dataset, k, mode="exact"):
    """Contrastive (CRD) view of any train set of this package."""
    return ContrastiveSample(dataset, k=k, mode=mode)


def image_size(cfg):
    """``(h, w)`` of the images ``DATASET.TYPE`` yields — 32 for CIFAR-10/100 and SVHN, 64 for Tiny-ImageNet,
    digits at ``DATASET.INPUT_SIZE`` (default 32) — or None where the dataset does not fix it (ImageNet)."""
    name = str(config_value(cfg, "DATASET.TYPE", "")).lower()
    if name == "digits":
        side = digits_size(config_value(cfg, "DATASET.INPUT_SIZE", None))
    elif name in _FIXED_SIDES:
        side = _FIXED_SIDES[name]
    else:
        return None
    return (side, side)


def build_datasets(cfg, needs=None):
    """Build ``(train_set, val_set, num_classes)`` from ``cfg.DATASET`` and the method's ``needs``."""
    name = str(config_value(cfg, "DATASET.TYPE", "")).lower()
    if name not in _BUILDERS:
        raise ValueError(
            "unknown DATASET.TYPE %r; valid names: %s"
            % (config_value(cfg, "DATASET.TYPE", None), ", ".join(DATASET_TYPES))
        )
    root = str(config_value(cfg, "DATASET.ROOT", "data"))
    download = bool(config_value(cfg, "DATASET.DOWNLOAD", True))
    options = {"size": image_size(cfg)[0]} if name == "digits" else {}  # the one builder that resizes
    train_set, val_set, own = _BUILDERS[name](root, download, **options)
    num_classes = resolve_num_classes(
        own, config_value(cfg, "DATASET.NUM_CLASSES", 0), train_set.targets, val_set.targets
    )
    per_class = int(config_value(cfg, "DATASET.TRAIN_PER_CLASS", 0) or 0)
    if per_class > 0:
        seed = int(config_value(cfg, "DATASET.SUBSET_SEED", -1))
        if seed < 0:
            seed = int(config_value(cfg, "EXPERIMENT.SEED", 0))
        train_set = select_items(train_set, per_class_indices(train_set.targets, per_class, seed))
    if needs is not None and needs.contrastive_k > 0:
        train_set = wrap_contrastive(train_set, k=int(needs.contrastive_k), mode=str(needs.contrastive_mode))
    return train_set, val_set, num_classes


def get_dataset(cfg):
    """mdistiller's interface: ``(train_loader, val_loader, num_data, num_classes)``.

    Contrastive items are produced when the configured distiller needs them (CRD, WCORD, ...).
    """
    train_set, val_set, num_classes = build_datasets(cfg, needs=data_needs(cfg))
    workers = int(config_value(cfg, "DATASET.NUM_WORKERS", 0))
    train_loader = DataLoader(
        train_set, batch_size=int(config_value(cfg, "SOLVER.BATCH_SIZE", 64)), shuffle=True,
        num_workers=workers,
    )
    val_loader = DataLoader(
        val_set, batch_size=int(config_value(cfg, "DATASET.TEST.BATCH_SIZE", 64)), shuffle=False,
        num_workers=workers,
    )
    return train_loader, val_loader, len(train_set), num_classes
