"""Tests of mdistiller.dataset on fake on-disk copies and the bundled digits."""
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from tests.helpers.datagen import (
    make_cifar10_folder,
    make_cifar100_folder,
    make_dataset_cfg,
    make_imagefolder,
    make_svhn_folder,
)
from mdistiller.dataset import (
    DATASETS,
    ContrastiveSample,
    build_datasets,
    get_dataset,
)
from mdistiller.registry import DataNeeds
from mdistiller.dataset.cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD
from mdistiller.dataset.common import TensorImageDataset
from mdistiller.dataset.digits import DIGITS_SPLIT_SEED, digits_stats
from mdistiller.dataset.imagefolder import TINY_IMAGENET_MEAN, TINY_IMAGENET_STD
from mdistiller.dataset.svhn import SVHN_MEAN, SVHN_STD


def normalize(chw_uint8, mean, std):
    x = torch.as_tensor(np.ascontiguousarray(chw_uint8)).float() / 255.0
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@pytest.fixture(scope="module")
def digits_sets():
    return build_datasets(make_dataset_cfg("digits"))


# ---------------------------------------------------------------- CIFAR / SVHN


def test_cifar100_reads_written_pixels_and_labels(tmp_path):
    written = make_cifar100_folder(tmp_path, n_train=40, n_test=20)
    train, val, num_classes = build_datasets(make_dataset_cfg("cifar100", tmp_path))
    assert num_classes == 100
    assert len(train) == 40 and len(val) == 20
    assert list(train.targets) == written["train"][1].tolist()
    assert list(val.targets) == written["test"][1].tolist()
    data, labels = written["test"]
    for i in (0, 7, 19):
        img, target = val[i]
        assert target == labels[i]
        expected = normalize(data[i].reshape(3, 32, 32), CIFAR100_MEAN, CIFAR100_STD)
        torch.testing.assert_close(img, expected, rtol=0, atol=1e-5)
    img, target, index = train[5]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32
    assert (target, index) == (written["train"][1][5], 5)
    # torchvision-style HWC uint8 view of the data
    assert train.data.shape == (40, 32, 32, 3)
    np.testing.assert_array_equal(train.data[3], written["train"][0][3].reshape(3, 32, 32).transpose(1, 2, 0))
    assert train.classes[:2] == ["class_0", "class_1"]


def test_cifar100_augmentation_matches_mdistiller_pil_pipeline(tmp_path):
    written = make_cifar100_folder(tmp_path, n_train=8, n_test=2)
    train, _, _ = build_datasets(make_dataset_cfg("cifar100", tmp_path))
    reference = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR100_MEAN, CIFAR100_STD),
    ])
    for i in range(8):
        torch.manual_seed(100 + i)
        ours = train[i][0]
        torch.manual_seed(100 + i)
        hwc = written["train"][0][i].reshape(3, 32, 32).transpose(1, 2, 0)
        ref = reference(Image.fromarray(np.ascontiguousarray(hwc)))
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_cifar10_reads_all_batches(tmp_path):
    written = make_cifar10_folder(tmp_path, n_train=25, n_test=10)
    train, val, num_classes = build_datasets(make_dataset_cfg("cifar10", tmp_path))
    assert num_classes == 10
    assert len(train) == 25 and len(val) == 10
    assert list(train.targets) == written["train"][1].tolist()
    np.testing.assert_array_equal(
        train.data[24], written["train"][0][24].reshape(3, 32, 32).transpose(1, 2, 0)
    )
    data, labels = written["test"]
    for i in (0, 9):
        img, target = val[i]
        assert target == labels[i]
        torch.testing.assert_close(
            img, normalize(data[i].reshape(3, 32, 32), CIFAR10_MEAN, CIFAR10_STD), rtol=0, atol=1e-5
        )


def test_svhn_reads_mat_files_and_maps_10_to_0(tmp_path):
    written = make_svhn_folder(tmp_path, n_train=30, n_test=20)
    train, val, num_classes = build_datasets(make_dataset_cfg("svhn", tmp_path))
    assert num_classes == 10 and len(train) == 30 and len(val) == 20
    X, y = written["test"]
    expected_labels = (y.reshape(-1).astype(int) % 10).tolist()
    assert list(val.targets) == expected_labels
    assert 0 in expected_labels and 10 not in train.targets
    for i in (0, 11, 19):
        img, target = val[i]
        assert target == expected_labels[i]
        chw = X[:, :, :, i].transpose(2, 0, 1)
        torch.testing.assert_close(img, normalize(chw, SVHN_MEAN, SVHN_STD), rtol=0, atol=1e-5)
    assert train[3][0].shape == (3, 32, 32) and train[3][2] == 3


# ----------------------------------------------------------------- ImageFolder


def test_tiny_imagenet_imagefolder_pixels_and_class_mapping(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    make_imagefolder(base / "train", ["n01", "n02", "n03"], 3, size=16, seed=1)
    # val lacks class n02: labels must still follow the train mapping
    val_written = make_imagefolder(base / "val", ["n01", "n03"], 2, size=16, seed=2)
    train, val, num_classes = build_datasets(make_dataset_cfg("tiny_imagenet", tmp_path))
    assert num_classes == 3
    assert len(train) == 9 and len(val) == 4
    assert train.class_to_idx == {"n01": 0, "n02": 1, "n03": 2}
    assert list(val.targets) == [0, 0, 2, 2]
    img, target = val[2]
    assert target == 2
    expected = normalize(val_written["n03"][0].transpose(2, 0, 1), TINY_IMAGENET_MEAN, TINY_IMAGENET_STD)
    torch.testing.assert_close(img, expected, rtol=0, atol=1e-5)
    img, target, index = train[4]
    assert img.shape == (3, 16, 16) and (target, index) == (1, 4)


def test_imagenet_transforms_and_unknown_val_class(tmp_path):
    base = tmp_path / "imagenet"
    make_imagefolder(base / "train", ["a", "b"], 2, size=(12, 10))
    make_imagefolder(base / "val", ["a", "b"], 1, size=(12, 10))
    train, val, num_classes = build_datasets(make_dataset_cfg("imagenet", tmp_path))
    assert num_classes == 2 and train.targets == [0, 0, 1, 1]
    img, target, index = train[3]
    assert img.shape == (3, 224, 224) and (target, index) == (1, 3)
    img, target = val[1]
    assert img.shape == (3, 224, 224) and target == 1
    make_imagefolder(base / "val", ["zzz"], 1, size=8)
    with pytest.raises(ValueError, match="zzz"):
        build_datasets(make_dataset_cfg("imagenet", tmp_path))


# ------------------------------------------------------------ missing / errors


@pytest.mark.parametrize("type_, folder", [
    ("cifar100", "cifar-100-python"),
    ("cifar10", "cifar-10-batches-py"),
    ("svhn", "svhn"),
    ("imagenet", os.path.join("imagenet", "train")),
    ("tiny_imagenet", os.path.join("tiny-imagenet-200", "train")),
])
def test_missing_data_without_download_names_the_path(tmp_path, type_, folder):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        build_datasets(make_dataset_cfg(type_, root, download=False))
    assert os.path.abspath(os.path.join(str(root), folder)) in str(err.value)


def test_download_failure_is_a_clear_file_not_found(tmp_path, monkeypatch):
    import torchvision

    calls = []

    def offline(root, train=True, download=False, **kwargs):
        calls.append((root, download))
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(FileNotFoundError) as err:
        build_datasets(make_dataset_cfg("cifar100", tmp_path, download=True))
    assert calls == [(str(tmp_path), True)]
    message = str(err.value)
    assert os.path.abspath(os.path.join(str(tmp_path), "cifar-100-python")) in message
    assert "network unreachable" in message and "cifar-100-python.tar.gz" in message


def test_download_path_is_used_when_folder_missing(tmp_path, monkeypatch):
    import torchvision

    def fake_download(root, train=True, download=False, **kwargs):
        assert download
        make_cifar10_folder(root, n_train=10, n_test=5)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_download)
    train, val, _ = build_datasets(make_dataset_cfg("cifar10", tmp_path, download=True))
    assert len(train) == 10 and len(val) == 5


def test_unknown_type_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_datasets(make_dataset_cfg("mnist"))
    for name in DATASETS:
        assert name in str(err.value)
    assert set(DATASETS) == {"cifar100", "cifar10", "svhn", "imagenet", "tiny_imagenet", "digits", "coco", "shapes"}


def test_num_classes_override(tmp_path):
    make_cifar100_folder(tmp_path, n_train=20, n_test=10, num_classes=10)
    assert build_datasets(make_dataset_cfg("cifar100", tmp_path))[2] == 100
    assert build_datasets(make_dataset_cfg("cifar100", tmp_path, num_classes=10))[2] == 10
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        build_datasets(make_dataset_cfg("cifar100", tmp_path, num_classes=5))
    assert build_datasets(make_dataset_cfg("digits", num_classes=12))[2] == 12


# ----------------------------------------------------------------- contrastive


def _toy(labels):
    labels = list(labels)
    return TensorImageDataset(torch.zeros(len(labels), 3, 2, 2), labels, return_index=True)


def test_contrastive_exact_and_relax_semantics(digits_sets):
    train = digits_sets[0]
    labels = np.asarray(train.targets)
    k = 64
    for mode in ("exact", "relax"):
        wrapped = ContrastiveSample(train, k=k, mode=mode)
        assert len(wrapped) == len(train) and wrapped.targets == train.targets
        torch.manual_seed(0)
        positives_equal_self = 0
        for index in (0, 1, 500, 1346):
            img, target, idx, cidx = wrapped[index]
            assert idx == index and target == labels[index] and img.shape == (3, 32, 32)
            assert cidx.shape == (k + 1,) and cidx.dtype == np.int64
            assert labels[cidx[0]] == labels[index]
            positives_equal_self += int(cidx[0] == index)
            negatives = cidx[1:]
            assert (labels[negatives] != labels[index]).all()
            assert len(np.unique(negatives)) == k  # no replacement while k <= pool
            assert negatives.min() >= 0 and negatives.max() < len(train)
        if mode == "exact":
            assert positives_equal_self == 4
        else:
            assert positives_equal_self < 4  # ~1/135 chance each


def test_contrastive_relax_positive_covers_class_and_negatives_cover_others():
    labels = [0, 1, 0, 2, 1, 0, 2, 2]
    wrapped = ContrastiveSample(_toy(labels), k=3, mode="relax")
    torch.manual_seed(1)
    positives, negatives = set(), set()
    for _ in range(200):
        cidx = wrapped[2][3]
        positives.add(int(cidx[0]))
        negatives.update(cidx[1:].tolist())
    assert positives == {0, 2, 5}
    assert negatives == {1, 3, 4, 6, 7}


def test_contrastive_replacement_only_when_k_exceeds_pool():
    wrapped = ContrastiveSample(_toy([0, 0, 0, 1, 1]), k=7, mode="exact")
    cidx = wrapped[0][3]
    assert len(cidx) == 8 and cidx[0] == 0
    assert set(cidx[1:].tolist()) <= {3, 4}
    wrapped = ContrastiveSample(_toy([0, 0, 0, 1, 1]), k=3, mode="exact")
    cidx = wrapped[3][3]
    assert sorted(cidx[1:].tolist()) == [0, 1, 2]


def test_contrastive_deterministic_under_torch_seed_and_picklable(digits_sets):
    wrapped = ContrastiveSample(digits_sets[0], k=16, mode="relax")
    torch.manual_seed(3)
    first = [wrapped[i][3] for i in range(5)]
    torch.manual_seed(3)
    second = [wrapped[i][3] for i in range(5)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    clone = pickle.loads(pickle.dumps(wrapped))
    assert len(clone) == len(wrapped) and clone.classes == wrapped.classes


def test_contrastive_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        ContrastiveSample(_toy([0, 1]), k=1, mode="loose")
    with pytest.raises(ValueError, match="two classes"):
        ContrastiveSample(_toy([0, 0, 0]), k=1)


@pytest.mark.parametrize("type_", ["cifar100", "cifar10", "svhn", "tiny_imagenet"])
def test_contrastive_wrapper_on_every_on_disk_family(tmp_path, type_):
    if type_ == "cifar100":
        make_cifar100_folder(tmp_path, n_train=30, n_test=5, num_classes=5)
    elif type_ == "cifar10":
        make_cifar10_folder(tmp_path, n_train=30, n_test=5)
    elif type_ == "svhn":
        make_svhn_folder(tmp_path, n_train=30, n_test=5)
    else:
        base = tmp_path / "tiny-imagenet-200"
        make_imagefolder(base / "train", ["a", "b", "c"], 4, size=8)
        make_imagefolder(base / "val", ["a"], 1, size=8)
    cfg = make_dataset_cfg(type_, tmp_path, k=6, mode="relax")
    train, _, _ = build_datasets(cfg, needs=DataNeeds(contrastive_k=6, contrastive_mode="relax"))
    assert isinstance(train, ContrastiveSample)
    labels = np.asarray(train.targets)
    img, target, index, cidx = train[2]
    assert index == 2 and target == labels[2] and len(cidx) == 7
    assert labels[cidx[0]] == target and (labels[cidx[1:]] != target).all()


# ---------------------------------------------------------------------- digits


def test_digits_split_sizes_balance_and_shape(digits_sets):
    from sklearn.datasets import load_digits

    train, val, num_classes = digits_sets
    assert num_classes == 10 and DIGITS_SPLIT_SEED == 0
    assert len(train) == 1347 and len(val) == 450
    all_labels = np.asarray(load_digits().target)
    totals = np.bincount(all_labels, minlength=10)
    train_counts = np.bincount(train.targets, minlength=10)
    val_counts = np.bincount(val.targets, minlength=10)
    np.testing.assert_array_equal(train_counts + val_counts, totals)
    assert (np.abs(train_counts - 0.75 * totals) <= 1).all()  # stratified
    # disjoint, complete, labels consistent with sklearn's
    assert set(train.sample_indices).isdisjoint(val.sample_indices)
    assert len(set(train.sample_indices) | set(val.sample_indices)) == 1797
    assert list(val.targets) == all_labels[val.sample_indices].tolist()
    img, target = val[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    img, target, index = train[10]
    assert img.shape == (3, 32, 32) and index == 10 and target == train.targets[10]


def test_digits_values_normalized_with_train_statistics(digits_sets):
    from sklearn.datasets import load_digits

    train, val, _ = digits_sets
    assert abs(float(train.data.mean())) < 1e-4 and abs(float(train.data.std()) - 1) < 1e-3
    mean, std = digits_stats()
    raw = torch.from_numpy(load_digits().images[val.sample_indices[:4]].astype(np.float32) / 16)
    up = torch.nn.functional.interpolate(raw[:, None], size=(32, 32), mode="bilinear", align_corners=False)
    expected = ((up.clamp(0, 1) - mean) / std).expand(-1, 3, -1, -1)
    got = torch.stack([val[i][0] for i in range(4)])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # handing out an item never mutates the cached tensors
    val[0][0].zero_()
    torch.testing.assert_close(val[0][0], expected[0], rtol=0, atol=1e-5)


def test_digits_augmentation_deterministic_under_torch_seed(digits_sets):
    train = digits_sets[0]
    torch.manual_seed(7)
    a = torch.stack([train[i][0] for i in range(20)])
    torch.manual_seed(7)
    b = torch.stack([train[i][0] for i in range(20)])
    assert torch.equal(a, b)
    torch.manual_seed(8)
    c = torch.stack([train[i][0] for i in range(20)])
    assert not torch.equal(a, c)
    # crops only shift the digit: values stay within the normalized range
    lo, hi = float(train.data.min()), float(train.data.max())
    assert float(a.min()) >= lo - 1e-6 and float(a.max()) <= hi + 1e-6
    # a build in the same process reuses the cached tensors
    assert build_datasets(make_dataset_cfg("digits"))[0].data is train.data


# ------------------------------------------------------------------ get_dataset


def test_get_dataset_loaders_plain_and_crd():
    cfg = make_dataset_cfg("digits", batch_size=8, test_batch_size=5)
    train_loader, val_loader, num_data, num_classes = get_dataset(cfg)
    assert (num_data, num_classes) == (1347, 10)
    images, targets, index = next(iter(train_loader))
    assert images.shape == (8, 3, 32, 32) and targets.shape == (8,) and index.shape == (8,)
    images, targets = next(iter(val_loader))
    assert images.shape == (5, 3, 32, 32)

    cfg = make_dataset_cfg("digits", batch_size=4, k=10, distiller="CRD")
    train_loader, _, num_data, _ = get_dataset(cfg)
    images, targets, index, cidx = next(iter(train_loader))
    assert cidx.shape == (4, 11) and cidx.dtype == torch.int64
    assert torch.equal(cidx[:, 0], index)


def test_digits_read_without_sklearn_equal_load_digits_and_its_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from mdistiller.dataset.digits import DIGITS_TEST_SIZE, digits_split, load_digits_arrays

    digits = load_digits()
    images, labels = load_digits_arrays()
    assert np.array_equal(images, digits.images) and np.array_equal(labels, digits.target)
    train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, stratify=labels,
                                          random_state=DIGITS_SPLIT_SEED)
    pinned_train, pinned_val = digits_split()
    assert np.array_equal(pinned_train, np.sort(train_idx)) and np.array_equal(pinned_val, np.sort(val_idx))


@pytest.mark.slow
def test_a_digits_run_does_not_import_sklearn():
    import subprocess
    import sys

    code = ("import sys; from mdistiller.dataset import build_datasets; from tests.helpers.datagen import "
            "make_dataset_cfg; build_datasets(make_dataset_cfg('digits')); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.strip() == "False"
