"""Training engine: config (cfg), device/DDP runtime (device), the data pipeline and the batch (data),
optimizer and LR (optim), the step of a batch (step; DOT's in dot), evaluators (evaluate), run naming (naming),
sinks and run info (logging), checkpoints (checkpoint), the loop (trainer) and its dry run (dry_run)."""
from .trainer import Trainer, train, trainer_dict  # noqa: F401
