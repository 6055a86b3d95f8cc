"""COCO-format detection sets: images in a folder, boxes in a COCO json (``DATASET.TYPE coco``, and ``shapes``).

Layout of ``DATASET.TYPE coco`` (paths relative to ``DATASET.ROOT``, the ``DATASET.COCO`` keys; any COCO-format
set is read by pointing them elsewhere)::

    ROOT/coco/train2017/*.jpg                          DATASET.COCO.TRAIN_IMAGES
    ROOT/coco/val2017/*.jpg                            DATASET.COCO.VAL_IMAGES
    ROOT/coco/annotations/instances_train2017.json     DATASET.COCO.TRAIN_ANNOTATIONS
    ROOT/coco/annotations/instances_val2017.json       DATASET.COCO.VAL_ANNOTATIONS

Classes: the json's category ids, sorted, are the contiguous classes ``1..K`` of the detectors (0 is background),
the training json's categories for both splits (Detectron2 maps them the same way, to ``0..K−1``; its background
is ``K``). Items: ``(image, target)``, image a float (3, H, W) tensor in [0, 1], RGB, resized so its short side is
``DETECTION.INPUT.MIN_SIZE_TRAIN`` (one of the list, drawn per image) / ``MIN_SIZE_TEST`` and its long side at most
``MAX_SIZE_*`` (Detectron2's ``ResizeShortestEdge``: PIL bilinear, sizes rounded half up; a size of 0 keeps the
image as it is), flipped horizontally with probability ``DETECTION.INPUT.FLIP_PROB`` in training; target
``{"boxes": (n, 4) float xyxy in the resized image, "labels": (n,) int64 in 1..K, "image_id": int, "scale": (4,)
float}``, ``scale`` the factors from the original image's coordinates to the resized one's (x, y, x, y).
As Detectron2 does for training: crowd annotations and boxes without area are dropped, then images left
without a box. The validation split keeps every image and annotation (COCOeval reads its json).
"""
import copy
import json
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from .common import missing_data_error

COCO_HINT = ("Get COCO 2017 from https://cocodataset.org/#download (train2017.zip, val2017.zip, "
             "annotations_trainval2017.zip) and unpack it there, or point DATASET.COCO.* at another COCO-format set.")


def input_options(cfg):
    """The builder's resizing and flipping keywords from ``DETECTION.INPUT``."""
    inp = cfg.DETECTION.INPUT
    return dict(min_size_train=tuple(int(s) for s in inp.MIN_SIZE_TRAIN), max_size_train=int(inp.MAX_SIZE_TRAIN),
                min_size_test=int(inp.MIN_SIZE_TEST), max_size_test=int(inp.MAX_SIZE_TEST),
                flip_prob=float(inp.FLIP_PROB))


def coco_options(cfg):
    """``DATASET.TYPE coco``'s builder keywords: the file layout (``DATASET.COCO``) and :func:`input_options`."""
    layout = cfg.DATASET.COCO
    return dict(input_options(cfg), train_images=layout.TRAIN_IMAGES, train_annotations=layout.TRAIN_ANNOTATIONS,
                val_images=layout.VAL_IMAGES, val_annotations=layout.VAL_ANNOTATIONS)


def resized_shape(height, width, short_side, max_side):
    """``(h, w)`` with the short side ``short_side`` and the long side at most ``max_side``, rounded half up
    (Detectron2's ``ResizeShortestEdge``); the shape itself for ``short_side`` <= 0."""
    if short_side <= 0:
        return height, width
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_side > 0:
        scale = max_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def collate_detection(items):
    """A detection batch: ``(list of images, list of targets)`` (images of different sizes stay separate)."""
    return tuple(list(field) for field in zip(*items))


class ResizeFlip:
    """Detectron2's ``ResizeShortestEdge`` (+ ``RandomFlip`` in training) on a PIL image and its boxes.

    ``__call__(image, boxes)`` → ``(pixels, boxes, scale)``: float (3, H, W) pixels in [0, 1], the (n, 4) xyxy
    boxes in the resized (and flipped) image, and the (4,) factors from original to resized coordinates. In
    training (``train``) the short side is drawn per image from ``min_sizes`` and the image flipped with
    probability ``flip_prob`` (torch's generator: seeded per epoch by the trainer); otherwise the first size.
    """

    def __init__(self, min_sizes, max_size, flip_prob=0.0, train=False):
        self.min_sizes = tuple(int(s) for s in min_sizes)
        self.max_size = int(max_size)
        self.flip_prob = float(flip_prob) if train else 0.0
        self.train = bool(train)

    def __call__(self, image, boxes):
        from PIL import Image

        width, height = image.size
        short = self.min_sizes[int(torch.randint(len(self.min_sizes), ()))] if self.train else self.min_sizes[0]
        new_h, new_w = resized_shape(height, width, short, self.max_size)
        if (new_h, new_w) != (height, width):
            image = image.resize((new_w, new_h), Image.BILINEAR)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
        scale = torch.tensor([new_w / width, new_h / height] * 2, dtype=torch.float32)
        boxes = torch.from_numpy(boxes) * scale
        if self.flip_prob > 0 and float(torch.rand(())) < self.flip_prob:
            pixels = pixels.flip(-1)
            boxes = torch.stack([new_w - boxes[:, 2], boxes[:, 1], new_w - boxes[:, 0], boxes[:, 3]], dim=1)
        return pixels, boxes, scale


class CocoDetection(Dataset):
    """A COCO-format detection split (see the module docstring for its items).

    Args:
        images: folder of the image files (``file_name`` of the json's images).
        annotations: the COCO json.
        train: training split: crowd and empty boxes are dropped, then images without boxes.
        transform: :class:`ResizeFlip` (its sizes; random size and flip in training).
        category_ids: the classes' category ids in order (default: the json's, sorted); the validation split
            takes the training split's.

    Attributes: ``category_ids``, ``category_names``, ``annotation_file``, ``image_ids``, ``transform`` and
    ``targets`` (the class index, 0-based, of every kept box; what the dataset layer checks against
    ``DATASET.NUM_CLASSES``).
    """

    def __init__(self, images, annotations, train, transform, category_ids=None):
        with open(annotations) as f:
            data = json.load(f)
        names = {int(c["id"]): c.get("name", str(c["id"])) for c in data.get("categories", [])}
        if category_ids is None:
            category_ids = sorted(names)
        elif sorted(names) != list(category_ids):
            raise ValueError("{} has categories {} but the training split has {}: both splits need the same "
                             "categories".format(annotations, sorted(names), list(category_ids)))
        if not category_ids:
            raise ValueError("{} lists no categories".format(annotations))
        self.category_ids = [int(c) for c in category_ids]
        self.category_names = [names[c] for c in self.category_ids]
        label_of = {c: i + 1 for i, c in enumerate(self.category_ids)}
        self.folder = images
        self.annotation_file = annotations
        self.transform = transform
        boxes = {}
        for ann in data.get("annotations", []):
            x, y, w, h = (float(v) for v in ann["bbox"])
            if train and (ann.get("iscrowd", 0) or w <= 0 or h <= 0):
                continue
            boxes.setdefault(int(ann["image_id"]), []).append((x, y, x + w, y + h, label_of[int(ann["category_id"])]))
        self.image_ids, self.files, self.boxes, self.labels = [], [], [], []
        for image in sorted(data.get("images", []), key=lambda im: int(im["id"])):
            found = boxes.get(int(image["id"]), [])
            if train and not found:
                continue
            rows = np.asarray(found, dtype=np.float64).reshape(-1, 5)
            self.image_ids.append(int(image["id"]))
            self.files.append(image["file_name"])
            self.boxes.append(rows[:, :4].astype(np.float32))
            self.labels.append(rows[:, 4].astype(np.int64))
        if not self.image_ids:
            raise ValueError("{}: no image with a box to {} on".format(annotations, "train" if train else "evaluate"))

    def __len__(self):
        return len(self.image_ids)

    @property
    def targets(self):
        """The class index, 0-based, of every box of the split's images, in order."""
        return [int(c) - 1 for labels in self.labels for c in labels]

    @property
    def strata(self):
        """One key per image for stratified draws (``DATASET.VAL_SPLIT``): the image's rarest class, the one with the
        fewest boxes in the whole split (ties: the lower class), so every class is held out in proportion to the
        images that carry it. The validation view is scored against this split's json, on its image ids."""
        counts = np.bincount(np.concatenate(self.labels), minlength=len(self.category_ids) + 1)
        return [int(min(labels.tolist(), key=lambda c: (counts[c], c))) for labels in self.labels]

    def select(self, indices):
        """A copy holding only the images at ``indices``, in that order (the dataset layer's ``select_items``)."""
        out = copy.copy(self)
        for name in ("image_ids", "files", "boxes", "labels"):
            setattr(out, name, [getattr(self, name)[i] for i in indices])
        return out

    def __getitem__(self, index):
        from PIL import Image

        with Image.open(os.path.join(self.folder, self.files[index])) as raw:
            image = raw.convert("RGB")
        pixels, boxes, scale = self.transform(image, self.boxes[index])
        target = {"boxes": boxes, "labels": torch.from_numpy(self.labels[index]), "image_id": self.image_ids[index],
                  "scale": scale}
        return pixels, target


def _existing(root, path, what):
    full = path if os.path.isabs(path) else os.path.join(root, path)
    if not os.path.exists(full):
        raise missing_data_error("COCO-format " + what, full, COCO_HINT)
    return full


def build_coco_format(root, train_images, train_annotations, val_images, val_annotations, min_size_train=(800,),
                      max_size_train=1333, min_size_test=800, max_size_test=1333, flip_prob=0.5):
    """``(train_set, val_set, num_classes)`` of a COCO-format set whose paths are relative to ``root``."""
    train = CocoDetection(_existing(root, train_images, "training images"),
                          _existing(root, train_annotations, "training annotations"), True,
                          ResizeFlip(min_size_train, max_size_train, flip_prob, train=True))
    val = CocoDetection(_existing(root, val_images, "validation images"),
                        _existing(root, val_annotations, "validation annotations"), False,
                        ResizeFlip((min_size_test,), max_size_test), category_ids=train.category_ids)
    return train, val, len(train.category_ids)


def build_coco(root, download, **options):
    """COCO 2017 (or any COCO-format set the ``DATASET.COCO`` keys name); never downloaded (18 GB)."""
    return build_coco_format(root, **options)
