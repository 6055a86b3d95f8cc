"""The dataset table: one :class:`DatasetSpec` per ``DATASET.TYPE``, read by every place that asks what kind of
dataset a run has (which builder, which image size, which data pipeline, which model zoo, where teachers come
from, which task).

Adding a dataset is its builder module plus one :func:`register_dataset` entry below (or, outside the
package, a call of :func:`register_dataset` in the user's module). Builders are named ``"module:function"``
and imported when the dataset is built, so reading the table imports no dataset code.
"""
import importlib
from dataclasses import dataclass
from typing import Optional

TASKS = ("classification", "detection")
ZOOS = ("cifar", "imagenet", "detection")


@dataclass(frozen=True)
class DatasetSpec:
    """What the engine needs to know about a dataset.

    Attributes:
        name: its ``DATASET.TYPE``.
        builder: ``"module:function"``; ``function(root, download[, size=side])`` returns
            ``(train_set, val_set, num_classes)``, the number of classes being the data's own (a folder
            dataset counts its class folders). Train items ``(image, target, index)``, val items
            ``(image, target)``; both sets have ``.targets``. ``DATASET.VAL_SPLIT`` and ``TRAIN_PER_CLASS``
            take subsets of the train set (``common.select_items``: in-memory tensors, ImageFolder samples, or
            the set's own ``select(indices)``), stratified by its ``.strata`` when it has them, else ``.targets``.
        image_size: the side of the square images it yields, or None when it has no fixed size (ImageNet's
            crops) or is resized (``resize``).
        resize: ``"module:function"`` mapping ``DATASET.INPUT_SIZE`` to the side the builder resizes to
            (passed as ``size=``); None: the dataset has its own size and ``DATASET.INPUT_SIZE`` does not
            resize it.
        options: ``"module:function"`` mapping the run's config to more keyword arguments of the builder (file
            layout, input sizes: the COCO-format sets' ``DATASET.COCO`` and ``DETECTION.INPUT`` keys); None: none.
        in_memory: its sets hold their images in one tensor, so whole batches can be cut on the training device
            (``DATASET.PIPELINE auto`` picks ``batched``); otherwise images are read from files per sample.
        zoo: the model zoo of ``DISTILLER.MODEL_ZOO auto``: ``"cifar"`` (CIFAR-layout models), ``"imagenet"``
            (torchvision-layout models) or ``"detection"`` (Faster R-CNN + FPN detectors around zoo backbones).
        teachers: where its teachers come from when ``DISTILLER.TEACHER_CKPT`` is empty: the name of a model
            dict of mdistiller's released checkpoints (``mdistiller.models.RELEASED_MODEL_DICTS``: its
            checkpoints are the released teachers and its constructors replace the CIFAR zoo's), or
            ``"torchvision"`` (torchvision's pretrained weights: ImageNet classifiers for the ImageNet zoo, the COCO
            R50-FPN detector for the detection zoo), or None (a teacher is trained first and passed through
            ``DISTILLER.TEACHER_CKPT``).
        task: the task it serves, :data:`TASKS`: ``"classification"`` (items ``(image, class)``, top-1/top-5) or
            ``"detection"`` (items ``(image, {"boxes", "labels", ...})`` of any size, COCO mAP; its builder's sets
            also have ``.category_ids``).
    """

    name: str
    builder: str
    image_size: Optional[int] = None
    resize: Optional[str] = None
    options: Optional[str] = None
    in_memory: bool = False
    zoo: str = "cifar"
    teachers: Optional[str] = None
    task: str = "classification"

    def build(self, root, download, **options):
        """``(train_set, val_set, num_classes)`` from the builder."""
        return load_function(self.builder)(root, download, **options)


DATASETS = {}  # DATASET.TYPE -> DatasetSpec


def register_dataset(spec):
    """Add ``spec`` to the table under ``spec.name``; a name registered twice with another spec is an error."""
    if spec.task not in TASKS:
        raise ValueError("DatasetSpec {!r}: unknown task {!r}; valid: {}".format(spec.name, spec.task, ", ".join(TASKS)))
    if spec.zoo not in ZOOS:
        raise ValueError("DatasetSpec {!r}: zoo must be one of {}, got {!r}".format(spec.name, ", ".join(ZOOS), spec.zoo))
    if spec.name in DATASETS and DATASETS[spec.name] != spec:
        raise KeyError("Dataset {!r} is registered twice ({} and {})".format(spec.name, DATASETS[spec.name], spec))
    DATASETS[spec.name] = spec
    return spec


def dataset_spec(name):
    """The spec of ``DATASET.TYPE`` ``name`` (case-insensitive); an unknown name lists the valid ones."""
    try:
        return DATASETS[str(name).lower()]
    except KeyError:
        raise ValueError("unknown DATASET.TYPE %r; valid names: %s" % (name, ", ".join(DATASETS))) from None


def task_of(cfg):
    """The task of the run's dataset (``DatasetSpec.task`` of ``DATASET.TYPE``)."""
    return dataset_spec(cfg.DATASET.TYPE).task


def load_function(path):
    """The function ``"package.module:function"`` names."""
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


def image_size(cfg):
    """``(h, w)`` of the images ``DATASET.TYPE`` yields — its fixed side, or the side ``DATASET.INPUT_SIZE`` resizes
    it to — or None where the dataset does not fix it (ImageNet)."""
    spec = dataset_spec(cfg.DATASET.TYPE)
    if spec.resize:
        side = load_function(spec.resize)(cfg.DATASET.INPUT_SIZE)
    elif spec.image_size:
        side = spec.image_size
    else:
        return None
    return (side, side)


register_dataset(DatasetSpec("cifar100", "mdistiller.dataset.cifar:build_cifar100", image_size=32, in_memory=True,
                             teachers="cifar100"))
register_dataset(DatasetSpec("cifar10", "mdistiller.dataset.cifar:build_cifar10", image_size=32, in_memory=True))
register_dataset(DatasetSpec("svhn", "mdistiller.dataset.svhn:build_svhn", image_size=32, in_memory=True))
register_dataset(DatasetSpec("imagenet", "mdistiller.dataset.imagefolder:build_imagenet", zoo="imagenet",
                             teachers="torchvision"))
register_dataset(DatasetSpec("tiny_imagenet", "mdistiller.dataset.imagefolder:build_tiny_imagenet", image_size=64,
                             teachers="tiny_imagenet"))
register_dataset(DatasetSpec("coco", "mdistiller.dataset.coco:build_coco", options="mdistiller.dataset.coco:coco_options",
                             zoo="detection", teachers="torchvision", task="detection"))
register_dataset(DatasetSpec("shapes", "mdistiller.dataset.shapes:build_shapes",
                             options="mdistiller.dataset.coco:input_options", zoo="detection", task="detection"))
register_dataset(DatasetSpec("digits", "mdistiller.dataset.digits:build_digits", resize="mdistiller.dataset.digits:digits_size",
                             in_memory=True))
