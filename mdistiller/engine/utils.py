"""Small helpers shared by the trainer and the tools."""
import os
import platform
import random
import subprocess
import sys

import numpy as np
import torch


def correct_counts_tensor(output, target, topk=(1,)):
    """Number of samples whose target is among the top-k predictions, for each k, as device tensors (int64
    scalars)."""
    with torch.no_grad():
        maxk = min(max(topk), output.size(1))
        _, pred = output.topk(maxk, 1, True, True)
        hits = pred.eq(target.view(-1, 1))
        return [hits[:, : min(k, maxk)].any(dim=1).sum() for k in topk]


def correct_counts(output, target, topk=(1,)):
    """Number of samples whose target is among the top-k predictions, for each k (Python ints)."""
    return [count.item() for count in correct_counts_tensor(output, target, topk)]


def seed_everything(seed):
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def seed_worker(worker_id):
    """DataLoader worker init: numpy and python follow the worker's torch seed."""
    seed = torch.initial_seed() % (2**32)
    np.random.seed(seed)
    random.seed(seed)


def log_msg(msg, mode="INFO"):
    color_map = {"INFO": 36, "TRAIN": 32, "EVAL": 31}
    return "\033[{}m[{}] {}\033[0m".format(color_map.get(mode, 37), mode, msg)


def environment_info(device=None):
    """What a reader needs to reproduce a run: versions, device, git commit."""
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else None,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:  # the commit of the checkout this package is imported from, if it is one
        package_dir = os.path.dirname(os.path.abspath(__file__))
        commit = subprocess.run(
            ["git", "-C", package_dir, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        info["git_commit"] = commit or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info
