"""Inputs of the distillation tests: a fresh CIFAR-zoo pair, a batch with CRD's indices, logits, a class cost,
and the float64 scope of the tests that compare two computations through networks."""
import contextlib

import torch
import torch.nn.functional as F

from mdistiller.models import cifar_model_dict


@contextlib.contextmanager
def default_dtype(dtype):
    """Tensors and modules created inside are ``dtype`` (``torch.set_default_dtype``), restored on exit.

    In float64, values computed through networks do not depend on which CPU kernels PyTorch picks (the
    summation order moves them by ~1e-15 relative, float32 by 1e-7 to 1e-3), so a test can compare them tightly
    on any machine.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def zoo_pair(student="resnet8", teacher="wrn_16_2", num_classes=10, seed=0):
    """``(student, teacher)``: fresh CIFAR-zoo models, drawn in that order after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return cifar_model_dict[student][0](num_classes=num_classes), cifar_model_dict[teacher][0](num_classes=num_classes)


def contrastive_batch(n, size, num_data, k, num_classes=10, seed=1, target=None):
    """``dict(image, target, index, contrastive_index)``: ``n`` random ``size`` x ``size`` images, labels (drawn
    unless ``target`` is given), distinct dataset indices and, per sample, its own index then ``k`` random ones."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 3, size, size, generator=g)
    if target is None:
        target = torch.randint(0, num_classes, (n,), generator=g)
    index = torch.randperm(num_data, generator=g)[:n]
    contrast = torch.randint(0, num_data, (n, k + 1), generator=g)
    contrast[:, 0] = index
    return dict(image=image, target=target, index=index, contrastive_index=contrast)


def raw_cost(num_classes, dim=6, seed=0, dtype=torch.float64):
    """A (C, C) 1 − cos cost of random prototypes (values in [0, 2])."""
    g = torch.Generator().manual_seed(seed)
    proto = F.normalize(torch.randn(num_classes, dim, generator=g, dtype=dtype), dim=1)
    return 1.0 - proto @ proto.t()


def random_logits(batch, classes, dtype=torch.float64, seed=1):
    """``(student logits (requiring grad), teacher logits, labels)``: ``batch`` x ``classes``, scales 2 and 3."""
    g = torch.Generator().manual_seed(seed)
    zs = (torch.randn(batch, classes, generator=g, dtype=dtype) * 2).requires_grad_(True)
    zt = torch.randn(batch, classes, generator=g, dtype=dtype) * 3
    y = torch.randint(0, classes, (batch,), generator=g)
    return zs, zt, y
