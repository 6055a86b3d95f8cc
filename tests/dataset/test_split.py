"""DATASET.VAL_SPLIT: a stratified validation split held out of the training set, for every kind of dataset."""
from collections import Counter

import numpy as np
import pytest
import torch

from mdistiller.dataset import build_data, build_datasets
from mdistiller.dataset.batched import BatchedLoader
from mdistiller.dataset.common import per_class_indices, select_items
from mdistiller.dataset.split import split_digest, stratified_split
from mdistiller.registry import DataNeeds
from tests.helpers.datagen import make_cifar100_folder, make_dataset_cfg, make_imagefolder


def split_cfg(type_, val_split, split_seed=0, per_class=0, seed=0, **kw):
    cfg = make_dataset_cfg(type_, **kw)
    cfg.DATASET.VAL_SPLIT = float(val_split)
    cfg.DATASET.SPLIT_SEED = split_seed
    cfg.DATASET.TRAIN_PER_CLASS = per_class
    cfg.EXPERIMENT.SEED = seed
    return cfg


def test_split_is_stratified_disjoint_and_seeded():
    keys = [0] * 40 + [1] * 13 + [2] * 25 + [0] * 10  # classes of 50, 13 and 25 items, interleaved
    train, held = stratified_split(keys, 4, seed=3)
    assert Counter(keys[i] for i in held) == {0: 4, 1: 4, 2: 4}
    assert set(train).isdisjoint(held) and sorted(train + held) == list(range(len(keys)))
    assert train == sorted(train) and held == sorted(held)
    # a fraction takes round(f * n) of every class, halves up: 0.1 of 50 / 13 / 25 -> 5 / 1 / 3 (2.5 rounds to 3)
    _, held = stratified_split(keys, 0.1, seed=3)
    assert Counter(keys[i] for i in held) == {0: 5, 1: 1, 2: 3}
    assert stratified_split(keys, 4, seed=3) == stratified_split(keys, 4, seed=3)
    assert len({tuple(stratified_split(keys, 4, seed=s)[1]) for s in range(10)}) == 10
    # uniform within a class: over many seeds every item of class 1 is held out about 4/13 of the time
    hits = Counter(i for s in range(1300) for i in stratified_split(keys, 4, seed=s)[1] if keys[i] == 1)
    assert all(abs(hits[i] - 400) < 5 * 16.6 for i in range(40, 53)), hits  # binomial sd sqrt(1300 * 4/13 * 9/13)


def test_split_errors_say_what_to_give():
    keys = [0] * 5 + [1] * 3
    with pytest.raises(ValueError, match="holds out all 3 training items of class 1"):
        stratified_split(keys, 3, seed=0)
    with pytest.raises(ValueError, match="whole number of images per class, or a fraction"):
        stratified_split(keys, 2.5, seed=0)
    with pytest.raises(ValueError, match="holds out no item"):
        stratified_split(keys, 0.01, seed=0)


def test_any_strata_and_a_dataset_of_its_own_kind():
    """A dataset of images with several labels (e.g. detection: image ids) stratifies by its own .strata and takes
    part through its select(indices)."""

    class Images:
        def __init__(self, ids, strata):
            self.ids, self.strata, self.targets = list(ids), list(strata), [[] for _ in ids]

        def select(self, indices):
            return Images([self.ids[i] for i in indices], [self.strata[i] for i in indices])

    images = Images(range(100, 130), [("person",), ("car",), ("person", "car")] * 10)
    _, held = stratified_split(images.strata, 0.2, seed=1)
    assert Counter(images.strata[i] for i in held) == {("person",): 2, ("car",): 2, ("person", "car"): 2}
    assert select_items(images, held).ids == [100 + i for i in held]


def test_digits_split_with_a_labelled_subset_from_the_rest_both_pipelines():
    full, test, _ = build_datasets(make_dataset_cfg("digits"))
    data = build_data(split_cfg("digits", 20, per_class=5, seed=2), needs=DataNeeds(contrastive_k=4))
    assert data.test is not data.val and len(data.test) == len(test) == 450
    val, train = data.val, data.train.dataset  # the train set is wrapped for contrastive sampling
    assert Counter(val.targets) == {c: 20 for c in range(10)} and Counter(train.targets) == {c: 5 for c in range(10)}
    held = data.split.val_indices
    rest = data.split.train_indices
    assert len(held) == 200 and sorted(held + rest) == list(range(len(full)))
    assert data.split.sha256 == split_digest(len(full), held) and data.split.size == len(full) == 1347
    # held-out images are the training images at those positions, evaluated like the test set (no crop, no index)
    assert torch.equal(val.images, full.images[held]) and list(val.sample_indices) == list(full.sample_indices[held])
    assert val.transform is test.transform is None and len(val[0]) == 2
    # the labelled subset is drawn from the rest, with TRAIN_PER_CLASS's own seed (EXPERIMENT.SEED here)
    rest_targets = [full.targets[i] for i in rest]
    chosen = [rest[i] for i in per_class_indices(rest_targets, 5, seed=2)]
    assert torch.equal(train.images, full.images[chosen]) and set(chosen).isdisjoint(held)
    # the same split for another EXPERIMENT.SEED (other subset), another split for another SPLIT_SEED
    other_seed = build_data(split_cfg("digits", 20, per_class=5, seed=3))
    assert other_seed.split.val_indices == held and not torch.equal(other_seed.train.images, train.images)
    assert build_data(split_cfg("digits", 20, split_seed=1)).split.val_indices != held
    # the batched pipeline cuts the held-out set like the test set: every image once, unchanged
    loader = BatchedLoader(val, batch_size=64, train=False)
    assert torch.equal(torch.cat([batch[0] for batch in loader]), full.images[held])


def test_cifar_and_imagefolder_splits(tmp_path):
    make_cifar100_folder(tmp_path, n_train=200, n_test=20, num_classes=10)
    full = build_datasets(make_dataset_cfg("cifar100", root=tmp_path))[0]
    data = build_data(split_cfg("cifar100", 0.25, root=tmp_path))
    assert Counter(data.val.targets) == {c: 5 for c in range(10)}  # 20 images of each class
    assert np.array_equal(data.val.data, full.data[data.split.val_indices])  # torchvision's HWC view follows
    image, target = data.val[3]
    assert image.dtype == torch.float32 and torch.equal(image, data.test.transform(full.images[data.split.val_indices[3]]))

    base = tmp_path / "tiny-imagenet-200"
    make_imagefolder(base / "train", ["a", "b", "c"], 6, size=8)
    make_imagefolder(base / "val", ["a", "b", "c"], 1, size=8)
    tiny = build_data(split_cfg("tiny_imagenet", 2, root=tmp_path))
    assert Counter(tiny.val.targets) == {0: 2, 1: 2, 2: 2} and len(tiny.train) == 12
    assert set(tiny.val.samples).isdisjoint(tiny.train.samples)
    image, target = tiny.val[0]
    assert tiny.val.transform is tiny.test.transform and tuple(image.shape) == (3, 8, 8)
    index_of = {path: i for i, (path, _) in enumerate(build_datasets(split_cfg("tiny_imagenet", 0, root=tmp_path))[0]
                                                      .samples)}
    assert [index_of[path] for path, _ in tiny.val.samples] == tiny.split.val_indices
