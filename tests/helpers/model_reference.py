"""Deterministic parameter fill shared by the model-reference fixtures and tests.

The reference fixtures (``tests/fixtures/*_reference.json``) were produced by
filling the *reference* implementation (mdistiller's models / torchvision) with
``deterministic_fill`` and recording outputs on ``reference_input``. Filling our
models the same way must reproduce those outputs, which checks both the
state_dict layout (keys and shapes) and the forward computation.
"""
import zlib

import torch


def _generator(key):
    g = torch.Generator()
    g.manual_seed(zlib.crc32(key.encode("utf-8")))
    return g


def deterministic_fill(model):
    """Fill every parameter and buffer from a generator seeded by its key."""
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            g = _generator(key)
            if key.endswith("running_var"):
                value = torch.rand(tensor.shape, generator=g) + 0.5
            elif key.endswith("running_mean"):
                value = torch.randn(tensor.shape, generator=g) * 0.1
            elif tensor.dim() <= 1:
                value = torch.randn(tensor.shape, generator=g) * 0.1 + (1.0 if key.endswith("weight") else 0.0)
            else:
                fan_in = tensor[0].numel()
                value = torch.randn(tensor.shape, generator=g) * (2.0 / fan_in) ** 0.5
            tensor.copy_(value.to(tensor.dtype))
    return model


def reference_input(batch=2, channels=3, size=32, seed=1234):
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.randn(batch, channels, size, size, generator=g)
