"""Helpers for tests that run the real trainer on small real data (digits) on CPU."""
import csv
import os

import torch

from mdistiller.engine.cfg import get_cfg
from mdistiller.models import cifar_model_dict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_opts(log_prefix, epochs=1, batch=64, size=16, per_class=30, **extra):
    """KEY VALUE overrides for a quick CPU run on the bundled digits data: ``size`` x ``size`` images,
    ``per_class`` training images of each class (None: the whole training set)."""
    opts = [
        "DATASET.TYPE", "digits",
        "DATASET.INPUT_SIZE", "[{0},{0}]".format(size),
        "DATASET.TRAIN_PER_CLASS", str(per_class or 0),
        "DATASET.NUM_WORKERS", "0",
        "DATASET.TEST.BATCH_SIZE", "256",
        "SOLVER.EPOCHS", str(epochs),
        "SOLVER.BATCH_SIZE", str(batch),
        "SOLVER.LR_DECAY_STAGES", "[1000]",
        "LOG.PREFIX", str(log_prefix),
        "LOG.PROGRESS_BAR", "False",
        "EXPERIMENT.DEVICE", "cpu",
    ]
    for key, value in extra.items():
        opts += [key.replace("__", "."), str(value)]
    return opts


def tiny_cfg(log_prefix, cfg_file=None, epochs=1, batch=64, size=16, per_class=30, **extra):
    return get_cfg(cfg_file, tiny_opts(log_prefix, epochs=epochs, batch=batch, size=size, per_class=per_class, **extra))


def random_teacher_ckpt(path, name="resnet8", num_classes=10, seed=0):
    """A `{"model": state_dict}` file for a randomly initialized zoo model."""
    torch.manual_seed(seed)
    model = cifar_model_dict[name][0](num_classes=num_classes)
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def read_metrics(run_dir, drop=("epoch_time",)):
    """The rows of a run's metrics.csv as text, without the columns in ``drop`` (timings differ run to run)."""
    with open(os.path.join(str(run_dir), "metrics.csv"), newline="") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]
