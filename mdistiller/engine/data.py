"""Samplers and data loaders of a run: one process or DDP, training shuffled per epoch, evaluation sharded."""
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from .utils import seed_worker


class ShardSampler(Sampler):
    """Evaluation sharding without padding: rank r gets indices r, r+W, r+2W, ... (each sample once)."""

    def __init__(self, length, rank, world_size):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def build_loaders(cfg, train_set, val_set, runtime):
    """``(train_loader, val_loader)`` for this process.

    Training: ``DistributedSampler`` (shuffled, seeded by ``EXPERIMENT.SEED``; call
    ``train_loader.sampler.set_epoch(epoch)`` every epoch), per-process batch
    ``SOLVER.BATCH_SIZE / world_size`` (the config's batch is the global one).
    Validation: ``ShardSampler``, batch ``DATASET.TEST.BATCH_SIZE``.
    """
    if cfg.SOLVER.BATCH_SIZE % runtime.world_size:
        raise ValueError(
            "SOLVER.BATCH_SIZE {} is the global batch; it must divide by the {} processes".format(
                cfg.SOLVER.BATCH_SIZE, runtime.world_size
            )
        )
    train_sampler = DistributedSampler(
        train_set, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True, seed=cfg.EXPERIMENT.SEED
    )
    common = dict(
        num_workers=cfg.DATASET.NUM_WORKERS,
        pin_memory=runtime.device.type == "cuda",
        worker_init_fn=seed_worker,
        persistent_workers=False,
    )
    train_loader = DataLoader(
        train_set, batch_size=cfg.SOLVER.BATCH_SIZE // runtime.world_size, sampler=train_sampler, **common
    )
    val_loader = DataLoader(
        val_set,
        batch_size=cfg.DATASET.TEST.BATCH_SIZE,
        sampler=ShardSampler(len(val_set), runtime.rank, runtime.world_size),
        **common,
    )
    return train_loader, val_loader
