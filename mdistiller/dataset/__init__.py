"""Datasets of the benchmark.

``build_datasets(cfg, needs=None) -> (train_set, val_set, num_classes)``
is the entry point; ``get_dataset(cfg)`` keeps mdistiller's loader-returning
interface and asks the configured method what it needs (:func:`mdistiller.registry.data_needs`).
What each ``DATASET.TYPE`` is (builder, image size, in memory or in files, model zoo, teachers, task)
is the dataset table, :mod:`mdistiller.dataset.table`. Config keys read:

* ``DATASET.TYPE``: a name of the table (:data:`DATASETS`);
* ``DATASET.ROOT``: folder holding the datasets;
* ``DATASET.DOWNLOAD``: download CIFAR / SVHN when missing;
* ``DATASET.NUM_CLASSES`` (0 = the dataset's own count): override the
  number of classes reported (e.g. for a reduced copy of a dataset); every
  label must be smaller than it;
* ``DATASET.TRAIN_PER_CLASS`` (0 = all): train on at most this many images of every
  class (a labelled subset, e.g. for distillation when the student sees few labels), drawn with
  ``DATASET.SUBSET_SEED`` (-1 = ``EXPERIMENT.SEED``: runs sharing a seed share the subset);
* ``DATASET.VAL_SPLIT`` (0 = none), ``DATASET.SPLIT_SEED``: a validation split held out of the training set
  before ``TRAIN_PER_CLASS`` draws from the rest (:mod:`mdistiller.dataset.split`);
* ``DATASET.INPUT_SIZE``: the side a resizable dataset (digits) is resized to;
* ``needs`` (a :data:`mdistiller.registry.DataNeeds`): with ``contrastive_k > 0`` the train set
  is wrapped in CRD's contrastive sampling with that many negatives and ``contrastive_mode``.

``build_data(cfg, needs=None)`` returns every set of a run (:data:`RunData`: train, the validation split or
None, test, number of classes, the :data:`~mdistiller.dataset.split.ValidationSplit` or None);
``build_datasets`` is its ``(train, test, num_classes)`` view (mdistiller's "val" set is the test set).
Train items are ``(image, target, index)`` (``+ contrastive_index`` when
contrastive), evaluation items ``(image, target)``; every train set has ``.targets``.

The data pipeline (per-sample DataLoaders or whole batches cut on the training device by
:class:`~mdistiller.dataset.batched.BatchedLoader`) is chosen by the engine, ``mdistiller.engine.data``.
"""
from collections import namedtuple

from torch.utils.data import DataLoader

from ..registry import data_needs

from .batched import BatchedLoader
from .common import per_class_indices, select_items
from .cifar import CIFAR10, CIFAR100, CIFAR100Instance
from .contrastive import ContrastiveSample
from .digits import Digits
from .imagefolder import ImageFolderInstance
from .split import draw_split, held_out_view
from .svhn import SVHN
from .table import DATASETS, DatasetSpec, dataset_spec, image_size, load_function, register_dataset, task_of

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "dataset_spec",
    "register_dataset",
    "build_data",
    "build_datasets",
    "RunData",
    "image_size",
    "task_of",
    "get_dataset",
    "wrap_contrastive",
    "resolve_num_classes",
    "ContrastiveSample",
    "BatchedLoader",
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


# Every set of a run: val is the validation split held out of the training set (None without DATASET.VAL_SPLIT),
# test the dataset's evaluation split; split is the ValidationSplit (None without one).
RunData = namedtuple("RunData", ["train", "val", "test", "num_classes", "split"])


def build_data(cfg, needs=None):
    """Build the :data:`RunData` of ``cfg.DATASET`` and the method's ``needs``."""
    spec = dataset_spec(cfg.DATASET.TYPE)
    options = {"size": image_size(cfg)[0]} if spec.resize else {}
    if spec.options:
        options.update(load_function(spec.options)(cfg))
    train_set, test_set, own = spec.build(str(cfg.DATASET.ROOT), bool(cfg.DATASET.DOWNLOAD), **options)
    num_classes = resolve_num_classes(own, cfg.DATASET.NUM_CLASSES, train_set.targets, test_set.targets)
    split = draw_split(cfg, train_set)
    val_set = None
    if split is not None:
        val_set = held_out_view(train_set, test_set, split.val_indices)
        train_set = select_items(train_set, split.train_indices)
    per_class = int(cfg.DATASET.TRAIN_PER_CLASS or 0)
    if per_class > 0 and spec.task != "classification":
        raise ValueError("DATASET.TRAIN_PER_CLASS selects images by class: it applies to classification sets only, "
                         "not to DATASET.TYPE {} ({})".format(spec.name, spec.task))
    if per_class > 0:
        seed = int(cfg.DATASET.SUBSET_SEED)
        if seed < 0:
            seed = int(cfg.EXPERIMENT.SEED)
        train_set = select_items(train_set, per_class_indices(train_set.targets, per_class, seed))
    if needs is not None and needs.contrastive_k > 0:
        train_set = wrap_contrastive(train_set, k=int(needs.contrastive_k), mode=str(needs.contrastive_mode))
    return RunData(train_set, val_set, test_set, num_classes, split)


def build_datasets(cfg, needs=None):
    """``(train_set, test_set, num_classes)`` of :func:`build_data` (mdistiller's ``(train, val, classes)``)."""
    data = build_data(cfg, needs)
    return data.train, data.test, data.num_classes


def get_dataset(cfg):
    """mdistiller's interface: ``(train_loader, val_loader, num_data, num_classes)``.

    Contrastive items are produced when the configured distiller needs them (CRD, WCORD, ...).
    """
    train_set, val_set, num_classes = build_datasets(cfg, needs=data_needs(cfg))
    workers = int(cfg.DATASET.NUM_WORKERS)
    train_loader = DataLoader(train_set, batch_size=int(cfg.SOLVER.BATCH_SIZE), shuffle=True, num_workers=workers)
    val_loader = DataLoader(val_set, batch_size=int(cfg.DATASET.TEST.BATCH_SIZE), shuffle=False, num_workers=workers)
    return train_loader, val_loader, len(train_set), num_classes
