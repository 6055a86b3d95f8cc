"""Shared steps of the feature-method distiller tests: mdistiller's yaml through the registry, one step, references."""
import math
import os

import pytest
import torch

from mdistiller.distillers import build_distiller, get_distiller_class
from mdistiller.engine.cfg import get_cfg
from mdistiller.models import cifar_model_dict, imagenet_model_dict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(config, teacher=None, student=None, seed=0, num_classes=100):
    """``(cfg, distiller)`` from a yaml of ``configs/`` (optionally another teacher/student), on random zoo models."""
    opts = []
    if teacher:
        opts += ["DISTILLER.TEACHER", teacher]
    if student:
        opts += ["DISTILLER.STUDENT", student]
    cfg = get_cfg(os.path.join(REPO, config), opts)
    if cfg.DATASET.TYPE == "imagenet":
        make_t, make_s = imagenet_model_dict[cfg.DISTILLER.TEACHER], imagenet_model_dict[cfg.DISTILLER.STUDENT]
    else:
        make_t, make_s = cifar_model_dict[cfg.DISTILLER.TEACHER][0], cifar_model_dict[cfg.DISTILLER.STUDENT][0]
    torch.manual_seed(seed)
    teacher_model = make_t(num_classes=num_classes)
    student_model = make_s(num_classes=num_classes)
    assert get_distiller_class(cfg.DISTILLER.TYPE).registry_name == cfg.DISTILLER.TYPE
    return cfg, build_distiller(cfg, student_model, teacher_model).train()


def batch(size=32, n=3, num_classes=100, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, num_classes, (n,), generator=g)


def _grads(params):
    return torch.cat([p.grad.reshape(-1).double() if p.grad is not None else torch.zeros(p.numel(), dtype=torch.float64)
                      for p in params])


def check_step(distiller, reference, weight, image, target, rel=1e-9, grad_rel=1e-7):
    """One training step of ``distiller`` against ``weight · reference(student_feats, teacher_feats)``.

    Checks the loss keys (mdistiller's) and, in float64 (the networks and the
    batch converted), the value of ``loss_kd`` and its gradient with respect to
    every trainable parameter (student and extra modules); ``reference``
    receives the feature dicts of a second forward. A float32 step is run first
    (the training precision): its ``loss_kd`` must be finite and within 1e-2 of
    the float64 one. Returns ``(loss_kd, reference value)`` of the float64 step.
    """
    _, losses = distiller(image=image, target=target, epoch=1)
    assert list(losses) == ["loss_ce", "loss_kd"]
    sum(losses.values()).backward()
    value32 = float(losses["loss_kd"].detach())
    assert math.isfinite(value32)

    distiller.double()
    image = image.double()
    params = distiller.get_learnable_parameters()
    distiller.zero_grad()
    _, losses = distiller(image=image, target=target, epoch=1)
    losses["loss_kd"].backward()
    got_grad = _grads(params)
    got = float(losses["loss_kd"].detach())

    distiller.zero_grad()
    _, feats_s = distiller.student(image)
    with torch.no_grad():
        _, feats_t = distiller.teacher(image)
    ref = weight * reference(feats_s, feats_t)
    ref.backward()
    ref_grad = _grads(params)
    distiller.zero_grad()
    ref = float(ref.detach())
    assert got == pytest.approx(ref, rel=rel), (got, ref)
    assert value32 == pytest.approx(ref, rel=1e-2), (value32, ref)
    error = float((got_grad - ref_grad).norm() / ref_grad.norm())
    assert ref_grad.norm() > 0 and error < grad_rel, error
    return got, ref


def load_mdistiller_layout(distiller, extra):
    """Load, strictly, a state_dict with mdistiller's keys: ``student.*``, ``teacher.*`` and ``extra`` (name -> shape).

    The values are random (buffers of integer type get 7); returns the dict loaded.
    """
    g = torch.Generator().manual_seed(5)
    state = {}
    for prefix, model in (("student.", distiller.student), ("teacher.", distiller.teacher)):
        for key, value in model.state_dict().items():
            state[prefix + key] = torch.randn(value.shape, generator=g).to(value.dtype) if value.is_floating_point() \
                else torch.full_like(value, 7)
    for key, shape in extra.items():
        state[key] = torch.tensor(7) if key.endswith("num_batches_tracked") else torch.randn(shape, generator=g)
    distiller.load_state_dict(state, strict=True)
    own = distiller.state_dict()
    for key, value in state.items():
        assert torch.equal(own[key], value), key
    return state
