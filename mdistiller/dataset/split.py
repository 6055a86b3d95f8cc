"""The validation split: items of the training set held out to select epochs and hyper-parameters on, so that the
test set is touched only to report.

* ``DATASET.VAL_SPLIT``: 0 (no split, the default), a whole number ``k >= 1`` (``k`` items of every class), or a
  fraction ``f`` in (0, 1) (``round(f * n)`` of a class's ``n`` items, halves rounded up). Stratified: every class
  (every stratum of :func:`~mdistiller.dataset.common.strata`, so a dataset of images with several labels can
  define its own) gives its share; a class that would give all its items is an error.
* ``DATASET.SPLIT_SEED`` (default 0): the draw's seed. It does not follow ``EXPERIMENT.SEED``, so every method and
  every seed of a sweep shares one split unless told otherwise.

The held-out items are evaluated like the test set (its transforms: no augmentation); training uses the rest
(and ``DATASET.TRAIN_PER_CLASS`` draws its subset from the rest). The indices refer to the dataset's full
training set; :func:`write_split` records them in the run folder (``val_split.json``) with their SHA-256, which
``summary.json`` repeats and a resumed run checks (:func:`check_split`).
"""
import hashlib
import json
import math
import os
from collections import namedtuple

import torch

from .common import select_items, strata, stratum_orders

SPLIT_FILE = "val_split.json"

# train_indices / val_indices: sorted positions in the full training set; size: its length; sha256: split_digest.
ValidationSplit = namedtuple("ValidationSplit", ["train_indices", "val_indices", "size", "sha256", "val_split", "seed"])


def held_out_count(val_split, n):
    """Items of a stratum of ``n`` items that ``DATASET.VAL_SPLIT`` ``val_split`` holds out."""
    if val_split < 1:
        return int(math.floor(val_split * n + 0.5))
    return int(val_split)


def check_val_split(val_split):
    """``DATASET.VAL_SPLIT`` as a float, or a ValueError saying what it takes."""
    value = float(val_split)
    if value < 0 or (value >= 1 and value != int(value)):
        raise ValueError("DATASET.VAL_SPLIT {!r}: give 0 (no split), a whole number of images per class, or a "
                         "fraction of each class between 0 and 1".format(val_split))
    return value


def stratified_split(keys, val_split, seed):
    """``(train, held_out)``: sorted positions of ``keys`` (one stratum key per item), each stratum giving
    :func:`held_out_count` items drawn uniformly without replacement (``torch.Generator`` seeded with ``seed``)."""
    val_split = check_val_split(val_split)
    train, held = [], []
    for positions, order in stratum_orders(keys, seed):
        k = held_out_count(val_split, len(positions))
        if k >= len(positions):
            raise ValueError("DATASET.VAL_SPLIT {:g} holds out all {} training items of class {!r}: give fewer images "
                             "per class or a smaller fraction".format(val_split, len(positions),
                                                                      keys[int(positions[0])]))
        held.append(positions[order[:k]])
        train.append(positions[order[k:]])
    if not held or sum(len(h) for h in held) == 0:
        raise ValueError("DATASET.VAL_SPLIT {:g} holds out no item of the {} training items".format(
            val_split, len(keys)))
    return torch.sort(torch.cat(train)).values.tolist(), torch.sort(torch.cat(held)).values.tolist()


def split_digest(size, val_indices):
    """SHA-256 of a split: the training set's size and the held-out positions, as text ``"<size>:<i>,<j>,..."``."""
    text = "{}:{}".format(int(size), ",".join(str(int(i)) for i in val_indices))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def draw_split(cfg, train_set):
    """The :data:`ValidationSplit` of ``cfg.DATASET`` over ``train_set`` (the dataset's full training set), or None
    when ``DATASET.VAL_SPLIT`` is 0."""
    val_split = check_val_split(cfg.DATASET.VAL_SPLIT)
    if val_split == 0:
        return None
    seed = int(cfg.DATASET.SPLIT_SEED)
    train, held = stratified_split(strata(train_set), val_split, seed)
    return ValidationSplit(train, held, len(train_set), split_digest(len(train_set), held), val_split, seed)


def held_out_view(train_set, test_set, indices):
    """The training items at ``indices`` as an evaluation set: the test set's transforms (no augmentation) and
    items without their index, like the test set's."""
    view = select_items(train_set, indices)
    for name in ("transform", "target_transform", "transforms"):
        if hasattr(test_set, name):
            setattr(view, name, getattr(test_set, name))
    if hasattr(view, "return_index"):
        view.return_index = False
    return view


def write_split(run_dir, split, cfg):
    """``<run_dir>/val_split.json``: the dataset, the settings, the training set's size, the held-out positions
    and their SHA-256."""
    record = {"dataset": str(cfg.DATASET.TYPE), "val_split": split.val_split, "split_seed": split.seed,
              "train_size": split.size, "val_size": len(split.val_indices), "sha256": split.sha256,
              "val_indices": list(split.val_indices)}
    path = os.path.join(run_dir, SPLIT_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)
    return path


def check_split(run_dir, split):
    """Raise ValueError when the split recorded in ``run_dir`` (or its absence) differs from ``split`` (None: no
    split): a resumed run must train and select on the data it started with."""
    path = os.path.join(run_dir, SPLIT_FILE)
    recorded = None
    if os.path.isfile(path):
        with open(path) as f:
            recorded = json.load(f)
    if recorded is None and split is None:
        return
    if recorded is None:
        raise ValueError("{} has no {}: the run started without a validation split, but the config holds one out "
                         "(DATASET.VAL_SPLIT {:g}); resume with the run's own config".format(run_dir, SPLIT_FILE,
                                                                                             split.val_split))
    if split is None:
        raise ValueError("{} started with a validation split (DATASET.VAL_SPLIT {:g}), but the config has none; resume "
                         "with the run's own config".format(run_dir, recorded["val_split"]))
    if recorded["sha256"] != split.sha256:
        raise ValueError("the validation split drawn now (DATASET.VAL_SPLIT {:g}, SPLIT_SEED {}, sha256 {}) differs from "
                         "the one this run started with ({}: sha256 {}); resume with the run's own config".format(
                             split.val_split, split.seed, split.sha256[:12], path, recorded["sha256"][:12]))
