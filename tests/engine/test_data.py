"""Loaders: the global batch split over processes, evaluation shards that cover the set once, the pipeline
decided from the dataset table."""
import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from mdistiller.dataset import build_datasets
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.data import ShardSampler, build_loaders, pipeline_of
from mdistiller.engine.device import Runtime
from mdistiller.registry import DataNeeds
from tests.helpers.datagen import make_cifar10_folder, make_dataset_cfg, make_imagefolder


def test_shards_cover_every_sample_once():
    shards = [list(ShardSampler(10, rank, 3)) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(10)) and [len(s) for s in shards] == [4, 3, 3]


def test_per_process_batch_and_divisibility():
    cfg = get_cfg(None, ["SOLVER.BATCH_SIZE", "8", "DATASET.NUM_WORKERS", "0", "DATASET.TEST.BATCH_SIZE", "5"])
    data = TensorDataset(torch.arange(20.0), torch.zeros(20, dtype=torch.long))
    train, (val,) = build_loaders(cfg, data, [data], Runtime(device=torch.device("cpu"), rank=1, world_size=2))
    assert train.batch_size == 4 and val.batch_size == 5
    assert len(train.sampler) == 10 and list(val.sampler) == list(range(1, 20, 2))
    train.sampler.set_epoch(1)
    first = list(train.sampler)
    train.sampler.set_epoch(2)
    assert list(train.sampler) != first
    with pytest.raises(ValueError, match="must divide by the 3 processes"):
        build_loaders(cfg, data, [data], Runtime(device=torch.device("cpu"), rank=0, world_size=3))


def test_pipeline_auto_batched_for_in_memory_types_and_per_sample_otherwise():
    for kind in ("cifar100", "cifar10", "svhn", "digits"):
        assert pipeline_of(get_cfg(None, ["DATASET.TYPE", kind])) == "batched"
        assert pipeline_of(get_cfg(None, ["DATASET.TYPE", kind, "DATASET.PIPELINE", "per_sample"])) == "per_sample"
    for kind in ("imagenet", "tiny_imagenet"):
        assert pipeline_of(get_cfg(None, ["DATASET.TYPE", kind])) == "per_sample"
        with pytest.raises(ValueError, match="per_sample"):
            pipeline_of(get_cfg(None, ["DATASET.TYPE", kind, "DATASET.PIPELINE", "batched"]))
    with pytest.raises(ValueError, match="auto, batched, per_sample"):
        pipeline_of(get_cfg(None, ["DATASET.PIPELINE", "fast"]))


def test_file_backed_loaders_keep_persistent_workers_seeded_per_item():
    from mdistiller.engine.data import EpochTaggedSampler, PerItemSeeded

    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return torch.rand(()), i

    cfg = get_cfg(None, ["DATASET.TYPE", "imagenet", "SOLVER.BATCH_SIZE", "4", "DATASET.NUM_WORKERS", "1"])
    train, (val,) = build_loaders(cfg, Noise(), [Noise()], Runtime(device=torch.device("cpu")))
    assert train.persistent_workers and isinstance(train.dataset, PerItemSeeded)
    assert isinstance(train.sampler, EpochTaggedSampler)

    def epoch(n):
        train.sampler.set_epoch(n)
        return torch.cat([b[0] for b in train])

    first, second = epoch(1), epoch(2)
    assert not torch.equal(first, second) and torch.equal(epoch(1), first)  # an epoch's draws don't depend on history


def test_contrastive_through_the_batched_loaders(tmp_path):
    make_cifar10_folder(tmp_path, n_train=30, n_test=9)
    cfg = make_dataset_cfg("cifar10", tmp_path, batch_size=8, test_batch_size=4)
    train, val, _ = build_datasets(cfg, needs=DataNeeds(contrastive_k=6, contrastive_mode="relax"))
    labels = np.asarray(train.targets)
    train_loader, (val_loader,) = build_loaders(cfg, train, [val], Runtime(device=torch.device("cpu"), rank=1, world_size=2))
    assert train_loader.batch_size == 4 and val_loader.batch_size == 4
    train_loader.set_epoch(1)
    for image, target, index, cidx in train_loader:
        assert image.shape[1:] == (3, 32, 32) and cidx.shape == (len(index), 7)
        assert (labels[cidx[:, 0].numpy()] == target.numpy()).all()
        assert (labels[cidx[:, 1:].numpy()] != target.numpy()[:, None]).all()
    assert len(train_loader) == 4 and len(val_loader) == 1
    with pytest.raises(ValueError, match="divide"):
        build_loaders(cfg, train, [val], Runtime(device=torch.device("cpu"), rank=0, world_size=3))


def test_resolve_pipeline(tmp_path):
    cfg = make_dataset_cfg("cifar100")
    assert pipeline_of(cfg) == "batched"
    assert pipeline_of(make_dataset_cfg("imagenet")) == "per_sample"
    cfg.DATASET.PIPELINE = "per_sample"
    assert pipeline_of(cfg) == "per_sample"
    cfg.DATASET.PIPELINE = "fast"
    with pytest.raises(ValueError, match="batched, per_sample"):
        pipeline_of(cfg)
    cfg = make_dataset_cfg("tiny_imagenet", tmp_path)
    cfg.DATASET.PIPELINE = "batched"
    with pytest.raises(ValueError, match="per_sample"):
        pipeline_of(cfg)
    base = tmp_path / "tiny-imagenet-200"
    make_imagefolder(base / "train", ["a", "b"], 2, size=8)
    make_imagefolder(base / "val", ["a"], 1, size=8)
    train, val, _ = build_datasets(cfg)
    with pytest.raises(ValueError, match="in-memory.*tiny_imagenet.*per_sample"):
        build_loaders(cfg, train, [val], Runtime(device=torch.device("cpu")))
