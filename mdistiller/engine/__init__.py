"""Training engine: config (cfg), device/DDP runtime (device), loaders (data), optimizer and LR (optim),
run naming (naming), sinks and run info (logging), checkpoints (checkpoint), the trainer (trainer)."""
from .trainer import Trainer, train, trainer_dict  # noqa: F401
