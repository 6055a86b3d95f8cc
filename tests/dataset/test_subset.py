"""DATASET.TRAIN_PER_CLASS (a labelled subset of the training set) and DATASET.INPUT_SIZE for digits."""
from collections import Counter

import numpy as np
import pytest
import torch

from mdistiller.dataset import build_datasets
from mdistiller.dataset.batched import BatchedLoader
from mdistiller.dataset.common import per_class_indices, select_items
from mdistiller.dataset.digits import digits_stats
from mdistiller.registry import DataNeeds
from tests.helpers.datagen import make_cifar100_folder, make_dataset_cfg, make_imagefolder


def subset_cfg(type_, per_class, seed=0, subset_seed=-1, **kw):
    cfg = make_dataset_cfg(type_, **kw)
    cfg.DATASET.TRAIN_PER_CLASS = per_class
    cfg.DATASET.SUBSET_SEED = subset_seed
    cfg.EXPERIMENT = type(cfg)()
    cfg.EXPERIMENT.SEED = seed
    return cfg


def test_per_class_indices_draws_that_many_of_each_class_without_replacement():
    targets = [0] * 7 + [1] * 3 + [2] * 12 + [0] * 5
    keep = per_class_indices(targets, 4, seed=3)
    assert keep == sorted(set(keep))
    counts = Counter(targets[i] for i in keep)
    assert counts == {0: 4, 1: 3, 2: 4}  # class 1 has only 3: all kept
    assert per_class_indices(targets, 4, seed=3) == keep
    draws = {tuple(per_class_indices(targets, 4, seed=s)) for s in range(20)}
    assert len(draws) > 10
    with pytest.raises(ValueError, match="positive"):
        per_class_indices(targets, 0, seed=0)


def test_per_class_indices_is_uniform_within_a_class():
    targets = [0] * 10
    hits = Counter()
    for seed in range(2000):
        hits.update(per_class_indices(targets, 3, seed))
    # each item is kept with probability 3/10: 600 of 2000 draws, sd ~20.5
    assert all(abs(hits[i] - 600) < 5 * 20.5 for i in range(10)), hits


def test_digits_subset_keeps_rows_labels_and_sample_indices():
    full_train = build_datasets(make_dataset_cfg("digits"))[0]
    train, val, _ = build_datasets(subset_cfg("digits", 5, seed=2))
    assert len(train) == 50 and len(val) == 450
    assert Counter(train.targets) == {c: 5 for c in range(10)}
    positions = per_class_indices(full_train.targets, 5, seed=2)
    assert torch.equal(train.images, full_train.images[positions])
    assert train.data is train.images
    assert list(train.sample_indices) == [full_train.sample_indices[i] for i in positions]
    assert train.targets == [full_train.targets[i] for i in positions]
    # the cached full set is untouched
    assert len(build_datasets(make_dataset_cfg("digits"))[0]) == 1347


def test_subset_seed_defaults_to_the_experiment_seed():
    by_experiment = build_datasets(subset_cfg("digits", 3, seed=4))[0]
    explicit = build_datasets(subset_cfg("digits", 3, seed=0, subset_seed=4))[0]
    other = build_datasets(subset_cfg("digits", 3, seed=5))[0]
    assert list(by_experiment.sample_indices) == list(explicit.sample_indices)
    assert list(by_experiment.sample_indices) != list(other.sample_indices)


def test_cifar_subset_with_contrastive_sampling_and_the_batched_path(tmp_path):
    make_cifar100_folder(tmp_path, n_train=200, n_test=20, num_classes=10)
    cfg = subset_cfg("cifar100", 4, seed=1, root=tmp_path)
    full = build_datasets(make_dataset_cfg("cifar100", root=tmp_path))[0]
    train, _, _ = build_datasets(cfg, needs=DataNeeds(contrastive_k=8))
    images = train.dataset
    assert len(train) == 40 and len(images.data) == 40
    keep = per_class_indices(full.targets, 4, seed=1)
    assert np.array_equal(images.data, full.data[keep])  # torchvision's HWC view follows the rows
    assert torch.equal(images.images, full.images[keep])
    # contrastive negatives index the subset, so CRD's memory bank has one row per kept image
    _, target, index, contrast = train[7]
    assert index == 7 and contrast.max() < 40
    assert all(train.dataset.targets[int(j)] != target for j in contrast[1:])
    loader = BatchedLoader(train, batch_size=16, train=True, seed=0)
    loader.set_epoch(0)
    seen = torch.cat([batch[2] for batch in loader])
    assert sorted(seen.tolist()) == list(range(40))


def test_imagefolder_subset(tmp_path):
    make_imagefolder(tmp_path / "train", ["a", "b", "c"], 6)
    from mdistiller.dataset.imagefolder import ImageFolderInstance

    full = ImageFolderInstance(str(tmp_path / "train"), return_index=True)
    sub = select_items(full, per_class_indices(full.targets, 2, seed=0))
    assert len(sub) == 6 and Counter(sub.targets) == {0: 2, 1: 2, 2: 2}
    assert sub.imgs == sub.samples and all(s in full.samples for s in sub.samples)
    img, target, index = sub[3]
    assert target == sub.targets[3] and index == 3 and len(full) == 18


def test_digits_at_a_lower_resolution():
    from sklearn.datasets import load_digits

    cfg = make_dataset_cfg("digits")
    cfg.DATASET.INPUT_SIZE = [16, 16]
    train, val, _ = build_datasets(cfg)
    assert tuple(train.images.shape[1:]) == (3, 16, 16) and tuple(val.images.shape[1:]) == (3, 16, 16)
    mean, std = digits_stats(16)
    raw = torch.from_numpy(load_digits().images[val.sample_indices[:3]].astype(np.float32) / 16)
    up = torch.nn.functional.interpolate(raw[:, None], size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(val.images[:3], ((up.clamp(0, 1) - mean) / std).expand(-1, 3, -1, -1),
                               rtol=0, atol=1e-5)
    assert train.transform.size == (16, 16) and train.transform.padding == 1
    assert digits_stats(16) != digits_stats(32)
    cfg.DATASET.INPUT_SIZE = [16, 12]
    with pytest.raises(ValueError, match="square"):
        build_datasets(cfg)
