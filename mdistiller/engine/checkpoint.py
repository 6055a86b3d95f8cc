"""Checkpoint I/O: atomic writes and safe (``weights_only``) reads."""
import os
import pickle

import torch


def save_checkpoint(obj, path):
    """Write to a temporary file in the same folder, then rename: a crash never leaves a truncated file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = "{}.tmp.{}".format(path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _numpy_scalar_globals():
    """Numpy scalars and dtypes (e.g. a ``best_acc`` saved as np.float64): data, not code."""
    import numpy as np

    try:
        scalar = np._core.multiarray.scalar
    except AttributeError:  # numpy < 2
        scalar = np.core.multiarray.scalar
    return [scalar, np.dtype] + [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]


def load_checkpoint(path, map_location="cpu", hint=None):
    """``torch.load(..., weights_only=True)`` with clear errors for a missing or unsafe file."""
    if not os.path.isfile(path):
        message = "Checkpoint not found: {}".format(os.path.abspath(path))
        if hint:
            message += "\n" + hint
        raise FileNotFoundError(message)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise RuntimeError(
            "Refusing to load {}: it is not a plain weights file (it asks to run code while unpickling). "
            "Only load checkpoints you trust; re-save it as {{'model': state_dict}} with tensors only.\n"
            "Details: {}".format(os.path.abspath(path), str(e).splitlines()[0] if str(e) else e)
        ) from None


def strip_data_parallel_prefix(state_dict):
    """A model state dict without ``nn.DataParallel``'s ``module.`` key prefix (mdistiller's ``latest`` files
    hold its wrapped distiller); returned unchanged when not every key has it."""
    prefix = "module."
    if state_dict and all(key.startswith(prefix) for key in state_dict):
        return type(state_dict)((key[len(prefix):], value) for key, value in state_dict.items())
    return state_dict


def rng_state():
    """The RNG states of python, numpy and torch as plain tensors/ints (loadable with weights_only)."""
    import random

    import numpy as np

    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype("int64")), int(np_state[2]), int(np_state[3]), float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    import random

    import numpy as np

    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
