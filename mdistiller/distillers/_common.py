"""Modules and helpers shared by several methods: feature probing, stage selection, projectors."""
import torch


def _as_size(size):
    if isinstance(size, str):
        size = [int(v) for v in size.strip("()[] ").split(",") if v.strip()]
    if isinstance(size, int):
        return (size, size)
    return tuple(int(v) for v in size)


def probe_input_size(cfg, fallback=None):
    """Image size of the dry forward that reads feature shapes.

    32 for CIFAR-like data and digits, 64 for Tiny-ImageNet; otherwise
    ``DATASET.INPUT_SIZE``, then the method's own ``fallback`` (e.g. WKD.INPUT_SIZE), then 224.
    """
    kind = str(cfg.DATASET.TYPE).lower()
    if kind in ("cifar100", "cifar10", "svhn", "digits"):
        return (32, 32)
    if kind == "tiny_imagenet":
        return (64, 64)
    size = cfg.DATASET.get("INPUT_SIZE", None) or fallback or 224
    return _as_size(size)


@torch.no_grad()
def probe_features(model, input_size):
    """The feature dict of one eval-mode forward on zeros; every module's training flag is restored."""
    modes = [(m, m.training) for m in model.modules()]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        _, features = model(torch.zeros((2, 3) + tuple(input_size), device=device))
    finally:
        for module, mode in modes:
            module.training = mode
    return features
