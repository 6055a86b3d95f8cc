"""Training engine: config (cfg), device/DDP runtime (device), loaders (data), optimizer and LR (optim),
run naming (naming), sinks and run info (logging), checkpoints (checkpoint), the trainer (trainer).

``Trainer``, ``train`` and ``trainer_dict`` are imported from :mod:`.trainer` on first use, so that importing a
light module of the engine (``engine.records``, ``engine.naming``) does not import torch.
"""
_FROM_TRAINER = ("Trainer", "train", "trainer_dict")


def __getattr__(name):
    if name in _FROM_TRAINER:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
