"""Tests of the batched data path (mdistiller.dataset.batched) against the per-sample one."""
import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from torchvision.transforms import functional as TF

from tests.helpers.datagen import (
    make_cifar10_folder,
    make_cifar100_folder,
    make_dataset_cfg,
    make_imagefolder,
    make_svhn_folder,
)
from mdistiller.dataset import ContrastiveSample, build_datasets
from mdistiller.dataset.batched import (
    BatchedLoader,
    BatchTransform,
    check_batched_support,
    epoch_seed,
    shard_indices,
)
from mdistiller.dataset.cifar import CIFAR100_MEAN, CIFAR100_STD, get_cifar100_train_transform
from mdistiller.dataset.common import TensorImageDataset
from mdistiller.dataset.digits import get_digits_train_transform

P_MIN = 1e-3  # fixed seeds: the p-values are deterministic; a broken sampler gives p ~ 0


@pytest.fixture(scope="module")
def digits_sets():
    return build_datasets(make_dataset_cfg("digits"))


def _stack(items):
    return torch.stack([item[0] for item in items])


# ------------------------------------------------- augmentation distribution


def _coordinate_images(n):
    """uint8 images whose pixel (y, x) holds (y + 1, x + 1, 7): 0 only in the padding."""
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    image = torch.stack([ys + 1, xs + 1, torch.full_like(ys, 7)]).to(torch.uint8)
    return image.expand(n, -1, -1, -1).contiguous()


def _decode(images):
    """(dy, dx, flip) of CIFAR RandomCrop(32, padding=4) + flip outputs of coordinate images."""
    mean = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
    raw = torch.round((images * std + mean) * 255).to(torch.int64)
    # the centre pixel is never padding: output (16, 16) is padded (dy + 16, dx + 16 or dx + 15)
    flip = raw[:, 1, 16, 17] < raw[:, 1, 16, 16]
    dy = raw[:, 0, 16, 16] - 13
    dx = raw[:, 1, 16, 16] - 13 + flip.long()
    return dy.numpy(), dx.numpy(), flip.numpy()


def _cells(dy, dx, flip):
    assert dy.min() >= 0 and dy.max() <= 8 and dx.min() >= 0 and dx.max() <= 8
    return np.bincount((dy * 9 + dx) * 2 + flip.astype(np.int64), minlength=162)


def _expected(dy, dx, flip, mean=CIFAR100_MEAN, std=CIFAR100_STD):
    """The per-sample pipeline with given crop offsets / flips, via torchvision's functionals."""
    src = _coordinate_images(1)[0]
    out = []
    for y, x, f in zip(dy, dx, flip):
        img = TF.crop(TF.pad(src, [4]), int(y), int(x), 32, 32)
        if f:
            img = TF.hflip(img)
        out.append(TF.normalize(img.float().div(255.0), mean, std))
    return torch.stack(out)


def _uniformity(counts):
    total = counts.sum()
    flips = counts.reshape(81, 2).sum(0)
    p_joint = stats.chisquare(counts).pvalue
    p_flip = stats.binomtest(int(flips[1]), int(total), 0.5).pvalue
    return p_joint, p_flip


DRAWS = 81 * 2 * 60  # 60 expected per (offset, flip) cell


def _batched_draws(epochs=10):
    n = DRAWS // epochs
    data = TensorImageDataset(_coordinate_images(n), [0] * n, get_cifar100_train_transform(), return_index=True)
    loader = BatchedLoader(data, 256, "cpu", seed=0)
    images = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        images += [batch[0] for batch in loader]
    return torch.cat(images)


def test_batched_crop_offsets_uniform_over_81_positions_and_flip_rate_half():
    images = _batched_draws()
    assert images.shape == (DRAWS, 3, 32, 32)
    dy, dx, flip = _decode(images)
    counts = _cells(dy, dx, flip)
    assert (counts > 0).all()  # all 81 offsets x 2 flips occur
    p_joint, p_flip = _uniformity(counts)
    assert p_joint > P_MIN and p_flip > P_MIN, (p_joint, p_flip)
    assert abs(flip.mean() - 0.5) < 4 * 0.5 / np.sqrt(DRAWS)
    # every image is exactly the per-sample pipeline at its decoded offsets
    torch.testing.assert_close(images[:300], _expected(dy[:300], dx[:300], flip[:300]), rtol=0, atol=1e-6)


def test_per_sample_transform_passes_the_same_test_and_agrees_with_batched():
    data = TensorImageDataset(_coordinate_images(1), [0], get_cifar100_train_transform())
    torch.manual_seed(0)
    per_sample = torch.stack([data[0][0] for _ in range(DRAWS)])
    dy, dx, flip = _decode(per_sample)
    counts = _cells(dy, dx, flip)
    p_joint, p_flip = _uniformity(counts)
    assert p_joint > P_MIN and p_flip > P_MIN, (p_joint, p_flip)
    torch.testing.assert_close(per_sample[:300], _expected(dy[:300], dx[:300], flip[:300]), rtol=0, atol=1e-6)
    # two-sample test: both paths draw from one distribution
    batched = _cells(*_decode(_batched_draws()))
    p_same = stats.chi2_contingency(np.stack([counts, batched])).pvalue
    assert p_same > P_MIN, p_same


def test_batch_transform_matches_torchvision_at_given_offsets(digits_sets):
    gen = torch.Generator().manual_seed(5)
    # CIFAR: uint8, zero padding 4, flip, normalise
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=gen)
    transform = BatchTransform.from_transform(get_cifar100_train_transform())
    source = transform.prepare(images)
    index = torch.tensor([3, 0, 11, 3, 7, 5, 1, 9])
    dy, dx, flip = transform.draw(source, len(index), gen)
    got = transform.apply(source, index, dy, dx, flip)
    for row, i in enumerate(index.tolist()):
        img = TF.crop(TF.pad(images[i], [4]), int(dy[row]), int(dx[row]), 32, 32)
        if flip[row]:
            img = TF.hflip(img)
        ref = TF.normalize(img.float().div(255.0), CIFAR100_MEAN, CIFAR100_STD)
        assert torch.equal(got[row], ref)
    # flip without crop; neither (a plain copy)
    flip_only = BatchTransform(flip_p=1.0)
    source = flip_only.prepare(images)
    dy, dx, flip = flip_only.draw(source, len(index), gen)
    assert flip.all() and not dy.any() and not dx.any()
    assert torch.equal(flip_only.apply(source, index, dy, dx, flip), images[index].flip(-1))
    assert torch.equal(BatchTransform().apply(images, index, dy, dx, None), images[index])
    # digits: float source, padding 2 with the background value, no flip
    train = digits_sets[0]
    transform = BatchTransform.from_transform(get_digits_train_transform())
    assert transform.flip_p == 0 and not transform.to_float and transform.mean is None
    source = transform.prepare(train.data)
    index = torch.arange(0, 1347, 97)
    dy, dx, flip = transform.draw(source, len(index), gen)
    assert flip is None and int(dy.max()) <= 4 and int(dx.max()) <= 4
    got = transform.apply(source, index, dy, dx, flip)
    fill = get_digits_train_transform().fill
    for row, i in enumerate(index.tolist()):
        ref = TF.crop(TF.pad(train.data[i], [2], fill=fill), int(dy[row]), int(dx[row]), 32, 32)
        assert torch.equal(got[row], ref)


# --------------------------------------------------------- no augmentation


@pytest.mark.parametrize("type_", ["cifar100", "cifar10", "svhn", "digits"])
def test_eval_batches_equal_per_sample_items_exactly(tmp_path, type_):
    if type_ == "cifar100":
        make_cifar100_folder(tmp_path, n_train=30, n_test=23)
    elif type_ == "cifar10":
        make_cifar10_folder(tmp_path, n_train=30, n_test=23)
    elif type_ == "svhn":
        make_svhn_folder(tmp_path, n_train=30, n_test=23)
    train, val, _ = build_datasets(make_dataset_cfg(type_, tmp_path))
    loader = BatchedLoader(val, 8, "cpu", train=False)
    batches = list(loader)
    assert len(batches) == len(loader) == -(-len(val) // 8)
    assert all(len(batch) == 2 for batch in batches)  # val items are (image, target)
    images = torch.cat([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    expected = _stack(val[i] for i in range(len(val)))
    assert images.dtype == torch.float32 and targets.dtype == torch.int64
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-6)
    assert torch.equal(images, expected)  # same float32 operations: bit-identical
    assert targets.tolist() == list(val.targets)
    # the train set without augmentation: the original image, normalised as per-sample does
    loader = BatchedLoader(train, 7, "cpu", train=False, augment=False)
    images = torch.cat([b[0] for b in loader])
    unaugmented = TensorImageDataset(train.images, train.targets, val.transform)
    torch.testing.assert_close(images, _stack(unaugmented[i] for i in range(len(train))), rtol=0, atol=1e-6)


def test_batches_collate_like_the_per_sample_loader(tmp_path):
    make_cifar100_folder(tmp_path, n_train=37, n_test=5)
    train, _, _ = build_datasets(make_dataset_cfg("cifar100", tmp_path))
    reference = next(iter(DataLoader(train, batch_size=8)))
    batch = next(iter(BatchedLoader(train, 8, "cpu")))
    assert len(batch) == len(reference) == 3
    for ours, theirs in zip(batch, reference):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    image, target, index = batch
    assert target.tolist() == [train.targets[i] for i in index.tolist()]


# ---------------------------------------------------------- reproducibility


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def _equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for ba, bb in zip(a, b) for x, y in zip(ba, bb))


def test_fixed_seed_identical_batches_and_epochs_differ(tmp_path):
    make_cifar100_folder(tmp_path, n_train=50, n_test=5)
    train, _, _ = build_datasets(make_dataset_cfg("cifar100", tmp_path))
    rng_before = torch.get_rng_state()
    first = _epoch(BatchedLoader(train, 16, "cpu", seed=3), 2)
    second = _epoch(BatchedLoader(train, 16, "cpu", seed=3), 2)
    assert _equal(first, second)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is never drawn from
    threads = torch.get_num_threads()
    other = BatchedLoader(train, 16, "cpu", seed=3, cpu_threads=threads + 1)
    other.set_epoch(2)
    batches = iter(other)
    assert _equal([next(batches)], first[:1]) and torch.get_num_threads() == threads  # restored between batches
    loader = BatchedLoader(train, 16, "cpu", seed=3)
    assert _equal(_epoch(loader, 2), _epoch(loader, 2))  # an epoch replays exactly
    resumed = BatchedLoader(train, 16, "cpu", seed=3)  # a fresh process resuming at epoch 3
    assert _equal(_epoch(loader, 3), _epoch(resumed, 3))
    assert not _equal(_epoch(loader, 2), _epoch(loader, 3))
    assert not _equal(first, _epoch(BatchedLoader(train, 16, "cpu", seed=4), 2))
    # the rank enters the augmentation stream's seed
    gens = [BatchedLoader(train, 16, "cpu", seed=3, rank=r, world_size=2).generator() for r in (0, 1)]
    assert not torch.equal(torch.rand(8, generator=gens[0]), torch.rand(8, generator=gens[1]))
    assert len({epoch_seed(s, e, r) for s in (0, 1) for e in (0, 1) for r in (0, 1)}) == 8


def test_epoch_order_is_distributed_samplers(tmp_path):
    make_cifar100_folder(tmp_path, n_train=41, n_test=5)
    train, _, _ = build_datasets(make_dataset_cfg("cifar100", tmp_path))
    for world_size in (1, 2, 3):
        for rank in range(world_size):
            sampler = DistributedSampler(train, num_replicas=world_size, rank=rank, shuffle=True, seed=7)
            loader = BatchedLoader(train, 4, "cpu", seed=7, rank=rank, world_size=world_size)
            for epoch in (1, 2):
                sampler.set_epoch(epoch)
                batches = _epoch(loader, epoch)
                assert torch.cat([b[2] for b in batches]).tolist() == list(sampler)
                for drop_last in (False, True):
                    loader.drop_last = drop_last
                    reference = DataLoader(train, batch_size=4, sampler=sampler, drop_last=drop_last)
                    assert len(loader) == len(reference) == len(list(loader))
                    assert [len(b[0]) for b in loader] == [len(b[0]) for b in reference]
                loader.drop_last = False


def test_two_ranks_cover_the_epoch_permutation_exactly_once(tmp_path):
    make_cifar100_folder(tmp_path, n_train=40, n_test=11)
    train, val, _ = build_datasets(make_dataset_cfg("cifar100", tmp_path))
    for epoch in (1, 2):
        shares = []
        for rank in (0, 1):
            loader = BatchedLoader(train, 6, "cpu", seed=1, rank=rank, world_size=2)
            shares.append(torch.cat([b[2] for b in _epoch(loader, epoch)]))
        assert len(shares[0]) == len(shares[1]) == 20
        permutation = shard_indices(40, epoch, 1, 0, 1)
        assert sorted(permutation.tolist()) == list(range(40))
        interleaved = torch.stack(shares, dim=1).reshape(-1)  # rank r holds positions r, r + 2, ...
        assert torch.equal(interleaved, permutation)
    assert not torch.equal(shard_indices(40, 1, 1, 0, 1), shard_indices(40, 2, 1, 0, 1))
    # evaluation: every sample once over the ranks, in order, no padding
    seen = []
    for rank in (0, 1):
        loader = BatchedLoader(val, 4, "cpu", train=False, rank=rank, world_size=2)
        seen += [b[1] for b in loader]
        assert len(loader) == 2  # 6 and 5 samples
    assert sorted(torch.cat(seen).tolist()) == sorted(val.targets)
    assert sum(len(t) for t in seen) == 11


# --------------------------------------------------------------- contrastive


def _toy(labels):
    labels = list(labels)
    return TensorImageDataset(torch.zeros(len(labels), 3, 2, 2, dtype=torch.uint8), labels, return_index=True)


def _contrastive_rows(wrapped, epochs=1, batch_size=64, seed=0):
    loader = BatchedLoader(wrapped, batch_size, "cpu", seed=seed)
    rows = []
    for epoch in range(epochs):
        for batch in _epoch(loader, epoch):
            assert len(batch) == 4
            rows.append((batch[2], batch[3]))
    return torch.cat([r[0] for r in rows]).numpy(), torch.cat([r[1] for r in rows]).numpy()


def test_contrastive_batches_exact_and_relax_semantics(digits_sets):
    train = digits_sets[0]
    labels = np.asarray(train.targets)
    k = 64
    for mode in ("exact", "relax"):
        wrapped = ContrastiveSample(train, k=k, mode=mode)
        loader = BatchedLoader(wrapped, 100, "cpu")
        image, target, index, cidx = next(iter(loader))
        assert image.shape == (100, 3, 32, 32) and cidx.shape == (100, k + 1) and cidx.dtype == torch.int64
        assert target.tolist() == labels[index.numpy()].tolist()
        index, cidx = _contrastive_rows(wrapped, batch_size=100)
        assert sorted(index.tolist()) == list(range(len(train)))
        assert (labels[cidx[:, 0]] == labels[index]).all()
        negatives = cidx[:, 1:]
        assert (labels[negatives] != labels[index][:, None]).all()
        assert all(len(np.unique(row)) == k for row in negatives)  # no replacement while k <= pool
        assert negatives.min() >= 0 and negatives.max() < len(train)
        self_positive = (cidx[:, 0] == index).mean()
        if mode == "exact":
            assert self_positive == 1
        else:
            assert self_positive < 0.05  # ~1/135 per row
    # same seed -> same draws
    wrapped = ContrastiveSample(train, k=16, mode="relax")
    np.testing.assert_array_equal(_contrastive_rows(wrapped, seed=2)[1], _contrastive_rows(wrapped, seed=2)[1])
    assert not np.array_equal(_contrastive_rows(wrapped, seed=2)[1], _contrastive_rows(wrapped, seed=3)[1])


def test_contrastive_relax_positive_covers_class_and_negatives_cover_others():
    labels = [0, 1, 0, 2, 1, 0, 2, 2]
    index, cidx = _contrastive_rows(ContrastiveSample(_toy(labels), k=3, mode="relax"), epochs=100)
    rows = cidx[index == 2]
    assert len(rows) == 100
    assert set(rows[:, 0].tolist()) == {0, 2, 5}
    assert set(rows[:, 1:].reshape(-1).tolist()) == {1, 3, 4, 6, 7}
    assert all(len(set(row.tolist())) == 3 for row in rows[:, 1:])


def test_contrastive_replacement_only_when_k_exceeds_pool():
    index, cidx = _contrastive_rows(ContrastiveSample(_toy([0, 0, 0, 1, 1]), k=7, mode="exact"), epochs=5)
    rows = cidx[index == 0]
    assert rows.shape == (5, 8) and (rows[:, 0] == 0).all()
    assert set(rows[:, 1:].reshape(-1).tolist()) <= {3, 4}
    index, cidx = _contrastive_rows(ContrastiveSample(_toy([0, 0, 0, 1, 1]), k=3, mode="exact"), epochs=3)
    for row in cidx[index == 3]:
        assert sorted(row[1:].tolist()) == [0, 1, 2]
    # mixed: class 0 has 2 negatives (< k, replacement), classes 1 and 2 have 5 (>= k, none)
    labels = np.array([0, 0, 0, 0, 1, 2])
    index, cidx = _contrastive_rows(ContrastiveSample(_toy(labels), k=3, mode="exact"), epochs=20)
    for i, row in zip(index, cidx):
        assert row[0] == i and (labels[row[1:]] != labels[i]).all()
        if labels[i] != 0:
            assert len(set(row[1:].tolist())) == 3
    assert any(len(set(row[1:].tolist())) < 3 for i, row in zip(index, cidx) if labels[i] == 0)


def test_contrastive_negatives_uniform_over_the_pool():
    labels = [0] * 10 + list(range(1, 6)) * 10  # anchor class 0, pool of 50 other samples
    index, cidx = _contrastive_rows(ContrastiveSample(_toy(labels), k=10, mode="exact"), epochs=80)
    negatives = cidx[np.asarray(labels)[index] == 0][:, 1:].reshape(-1)
    counts = np.bincount(negatives, minlength=60)[10:]
    assert counts.sum() == 800 * 10
    assert stats.chisquare(counts).pvalue > P_MIN


# ------------------------------------------------------------------- errors


def test_imagefolder_and_unsupported_transforms_are_rejected(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    make_imagefolder(base / "train", ["a", "b"], 2, size=8)
    make_imagefolder(base / "val", ["a"], 1, size=8)
    cfg = make_dataset_cfg("tiny_imagenet", tmp_path)
    train, val, _ = build_datasets(cfg)
    with pytest.raises(ValueError, match="per_sample"):
        BatchedLoader(train, 4)
    from torchvision import transforms

    odd = TensorImageDataset(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), [0, 1, 0, 1],
                             transforms.Compose([transforms.RandomRotation(10)]))
    with pytest.raises(ValueError, match="RandomRotation"):
        check_batched_support(odd)
    reflect = TensorImageDataset(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), [0, 1, 0, 1],
                                 transforms.RandomCrop(8, padding=2, padding_mode="reflect"))
    with pytest.raises(ValueError, match="constant"):
        check_batched_support(reflect)
