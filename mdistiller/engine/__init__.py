"""Training engine: config (cfg), device/DDP runtime (device), the data pipeline and the batch (data),
optimizer and LR (optim), the step of a batch (step; DOT's in dot), evaluators (evaluate), run naming (naming),
sinks and run info (logging), checkpoints (checkpoint), the loop (trainer) and its dry run (dry_run).

``Trainer``, ``train`` and ``trainer_dict`` are imported from :mod:`.trainer` on first use, so that importing a
light module of the engine (``engine.records``, ``engine.naming``) does not import torch.
"""
_FROM_TRAINER = ("Trainer", "train", "trainer_dict")


def __getattr__(name):
    if name in _FROM_TRAINER:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
