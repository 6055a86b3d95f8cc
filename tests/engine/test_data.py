"""Loaders: the global batch split over processes, evaluation shards that cover the set once."""
import pytest
import torch
from torch.utils.data import TensorDataset

from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.data import ShardSampler, build_loaders
from mdistiller.engine.device import Runtime


def test_shards_cover_every_sample_once():
    shards = [list(ShardSampler(10, rank, 3)) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(10)) and [len(s) for s in shards] == [4, 3, 3]


def test_per_process_batch_and_divisibility():
    cfg = get_cfg(None, ["SOLVER.BATCH_SIZE", "8", "DATASET.NUM_WORKERS", "0", "DATASET.TEST.BATCH_SIZE", "5"])
    data = TensorDataset(torch.arange(20.0), torch.zeros(20, dtype=torch.long))
    train, val = build_loaders(cfg, data, data, Runtime(device=torch.device("cpu"), rank=1, world_size=2))
    assert train.batch_size == 4 and val.batch_size == 5
    assert len(train.sampler) == 10 and list(val.sampler) == list(range(1, 20, 2))
    train.sampler.set_epoch(1)
    first = list(train.sampler)
    train.sampler.set_epoch(2)
    assert list(train.sampler) != first
    with pytest.raises(ValueError, match="must divide by the 3 processes"):
        build_loaders(cfg, data, data, Runtime(device=torch.device("cpu"), rank=0, world_size=3))


def test_pipeline_auto_batched_for_in_memory_types_and_per_sample_otherwise():
    from mdistiller.engine.data import pipeline_of

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
    train, val = build_loaders(cfg, Noise(), Noise(), Runtime(device=torch.device("cpu")))
    assert train.persistent_workers and isinstance(train.dataset, PerItemSeeded)
    assert isinstance(train.sampler, EpochTaggedSampler)

    def epoch(n):
        train.sampler.set_epoch(n)
        return torch.cat([b[0] for b in train])

    first, second = epoch(1), epoch(2)
    assert not torch.equal(first, second) and torch.equal(epoch(1), first)  # an epoch's draws don't depend on history
