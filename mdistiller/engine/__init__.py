"""Training engine: config, device/DDP runtime, the trainer, checkpoints."""
from .trainer import Trainer, train, trainer_dict  # noqa: F401
