"""Checkpoint I/O: atomic writes, safe (``weights_only``) reads, and strict loads that say what is wrong.

A file that cannot be used as a checkpoint (damaged or truncated, not a PyTorch file, a pickle that asks to
run code, the weights of another model or class count) raises :class:`CheckpointError` naming the file and
what to do; it is a ``ValueError``, so the command line reports it in one line.
"""
import functools
import os
import pickle

import torch


class CheckpointError(ValueError):
    """A file named as a checkpoint cannot be used; the message names the file and says what to do."""


class _KeepWriteError:
    """A file wrapper that keeps the first ``OSError`` of a write: torch's zip writer reports a failed write
    (disk full, quota, file-size limit) only as ``unexpected pos N vs M``."""

    def __init__(self, file):
        self.file = file
        self.error = None

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self):
        self.file.flush()


def save_checkpoint(obj, path, what="a checkpoint"):
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never leaves a truncated file.
    A failed write (e.g. a full disk) raises an ``OSError`` naming ``path``, ``what`` was written and the system's
    reason; the file that was at ``path`` before is unchanged."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = "{}.tmp.{}".format(path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            writer = _KeepWriteError(f)
            try:
                torch.save(obj, writer)
            except RuntimeError:
                if writer.error is None:
                    raise
                raise writer.error from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise OSError(e.errno, "{} while writing {} (the previous one, if any, is kept)".format(reason, what),
                      os.path.abspath(path)) from None
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
    """``torch.load(..., weights_only=True)`` with clear errors for a missing, damaged or unsafe file."""
    if not os.path.isfile(path):
        message = "Checkpoint not found: {}".format(os.path.abspath(path))
        if hint:
            message += "\n" + hint
        raise FileNotFoundError(message)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, OSError, EOFError, KeyError...
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        refused = [line for line in lines if "GLOBAL" in line]
        if isinstance(e, pickle.UnpicklingError) and refused:
            raise CheckpointError(
                "Refusing to load {}: it is not a plain weights file ({}; nothing in it was run). Only load "
                "checkpoints you trust; re-save it as {{'model': state_dict}} with tensors only".format(
                    os.path.abspath(path), refused[0])) from None
        detail = next((line for line in lines if line.startswith("Unsupported")), lines[0] if lines else "")
        raise CheckpointError(
            "Cannot read {} ({} bytes): it is not a PyTorch checkpoint, or a damaged one (truncated by an interrupted "
            "copy or download?) ({}: {}); give the right file, or copy or download it again".format(
                os.path.abspath(path), os.path.getsize(path), type(e).__name__, detail.split(". ")[0])) from None


def _shape(value):
    return tuple(value.shape) if hasattr(value, "shape") else None


def _state_signature(state):
    return {k: _shape(v) for k, v in state.items()}


@functools.lru_cache(maxsize=None)
def _zoo_signatures():
    """``[(zoo, model name, {key: shape})]`` of every zoo model, built on the meta device (no memory, no init cost)."""
    from ..models import cifar_model_dict, imagenet_model_dict, tiny_imagenet_model_dict

    zoos = [("CIFAR", {k: v[0] for k, v in cifar_model_dict.items()}),
            ("Tiny-ImageNet", {k: v[0] for k, v in tiny_imagenet_model_dict.items()}),
            ("ImageNet", imagenet_model_dict)]
    signatures = []
    for zoo, models in zoos:
        for name, constructor in models.items():
            try:
                with torch.device("meta"):
                    model = constructor(num_classes=10)
            except Exception:  # pragma: no cover - a constructor that cannot run on the meta device
                continue
            signatures.append((zoo, name, _state_signature(model.state_dict())))
    return signatures


def _same_but_classes(saved, expected):
    """Whether two {key: shape} signatures are one architecture, allowing another class count (the shapes may
    differ only in the first dimension of at most two tensors: the classifier's weight and bias)."""
    if set(saved) != set(expected):
        return False
    differ = [k for k in expected if saved[k] != expected[k]]
    return len(differ) <= 2 and all(
        saved[k] is not None and expected[k] is not None and len(saved[k]) == len(expected[k])
        and saved[k][1:] == expected[k][1:] for k in differ)


def _examples(keys, count=2):
    keys = list(keys)
    return ", ".join(keys[:count]) + (", ..." if len(keys) > count else "")


def load_weights(model, state, path, expected):
    """``model.load_state_dict(state)`` (strict). When the file does not fit, a :class:`CheckpointError` says why:
    another class count, or which zoo model the file holds (``expected``: what asked for ``model``, e.g.
    ``"DISTILLER.TEACHER resnet8x4"``), or the keys that differ."""
    if not isinstance(state, dict):
        raise CheckpointError("{} holds a {}, not a model's weights (a state dict, or {{'model': state dict}})".format(
            os.path.abspath(path), type(state).__name__))
    own, saved = _state_signature(model.state_dict()), _state_signature(state)
    if own == saved:
        model.load_state_dict(state)
        return model
    where = os.path.abspath(path)
    if _same_but_classes(saved, own):
        key = next(k for k in own if own[k] != saved[k])
        raise CheckpointError(
            "{} was trained for {} classes, but {} has {} here (the dataset's classes, or DATASET.NUM_CLASSES): "
            "give a checkpoint trained on this dataset".format(where, saved[key][0], expected, own[key][0]))
    holds = sorted({"{} ({} zoo)".format(name, zoo) for zoo, name, signature in _zoo_signatures()
                    if _same_but_classes(saved, signature)})
    if holds:
        raise CheckpointError("{} holds the weights of a {}, but {} is asked for: give a checkpoint of that model, "
                              "or name the model the file holds".format(where, " or ".join(holds), expected))
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    reshaped = ["{} {} in the file, {} in the model".format(k, saved[k], own[k]) for k in own
                if k in saved and saved[k] != own[k]]
    parts = ["{} of the model's {} weights missing ({})".format(len(missing), len(own), _examples(missing))] * bool(
        missing) + ["{} unexpected ({})".format(len(unexpected), _examples(unexpected))] * bool(unexpected) + [
        "{} of another shape ({})".format(len(reshaped), _examples(reshaped, 1))] * bool(reshaped)
    raise CheckpointError("{} does not fit {}: {}; give a checkpoint of that model".format(
        where, expected, "; ".join(parts)))


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
