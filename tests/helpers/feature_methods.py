"""Shared set-up of the feature-method distiller tests (AT, NST, PKT, KDSVD, FitNet, RKD, SP, VID, OFD, ReviewKD).

:func:`build` merges mdistiller's own yaml file (our ``configs/`` copy), optionally switches the
teacher/student pair and other keys, and builds real zoo models and the distiller through the registry.
:func:`check_step` compares one step with a closed form; the independent reference computations use the
small functional pieces at the end (explicit BN, 1x1 convs by einsum, nearest resizing by index arithmetic,
pooling by reshape).
"""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers import build_distiller, get_distiller_class
from mdistiller.engine.cfg import get_cfg
from mdistiller.models import cifar_model_dict, imagenet_model_dict
from tests.helpers.runutil import REPO

CLASSES = 100


def config(path, teacher=None, student=None, opts=()):
    """The yaml at ``path`` (relative to the repository), optionally another teacher/student, then ``opts``."""
    pair = []
    if teacher:
        pair += ["DISTILLER.TEACHER", teacher]
    if student:
        pair += ["DISTILLER.STUDENT", student]
    return get_cfg(os.path.join(REPO, path), pair + list(opts))


def randomize_bn(model, seed):
    """Spread every BN's affine parameters and statistics (fresh models have weight 1, bias 0, mean 0, var 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.3 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return model


def models(cfg, seed=0, num_classes=CLASSES, spread_bn=False):
    """``(student, teacher)``: fresh zoo models of ``cfg``'s pair (the ImageNet zoo for ``DATASET.TYPE``
    imagenet) drawn after ``torch.manual_seed(seed)``, the teacher first. ``spread_bn``: the student first,
    then the teacher with its BatchNorms spread (:func:`randomize_bn`, ``seed + 1``) and in eval mode."""
    if cfg.DATASET.TYPE == "imagenet":
        make_t, make_s = imagenet_model_dict[cfg.DISTILLER.TEACHER], imagenet_model_dict[cfg.DISTILLER.STUDENT]
    else:
        make_t, make_s = cifar_model_dict[cfg.DISTILLER.TEACHER][0], cifar_model_dict[cfg.DISTILLER.STUDENT][0]
    torch.manual_seed(seed)
    if not spread_bn:
        teacher = make_t(num_classes=num_classes)
        return make_s(num_classes=num_classes), teacher
    student = make_s(num_classes=num_classes)
    return student, randomize_bn(make_t(num_classes=num_classes), seed + 1).eval()


def build(path, teacher=None, student=None, opts=(), seed=0, num_classes=CLASSES, spread_bn=False):
    """``(cfg, distiller)``: :func:`config` on :func:`models`, the distiller built through the registry (after
    ``torch.manual_seed(seed + 2)`` with ``spread_bn``), in train mode."""
    cfg = config(path, teacher, student, opts)
    student_model, teacher_model = models(cfg, seed, num_classes, spread_bn)
    assert get_distiller_class(cfg.DISTILLER.TYPE).registry_name == cfg.DISTILLER.TYPE
    if spread_bn:
        torch.manual_seed(seed + 2)
    return cfg, build_distiller(cfg, student_model, teacher_model).train()


def batch(n=3, size=32, num_classes=CLASSES, seed=1):
    """``(image, target)``: ``n`` random ``size`` x ``size`` images and labels."""
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
    return load_strictly(distiller, state)


def load_strictly(distiller, state):
    """Load ``state`` with ``strict=True``; the distiller's state_dict then has exactly its keys and values."""
    distiller.load_state_dict(state, strict=True)
    own = distiller.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        assert torch.equal(own[key], value), key
    return state


def load_with_extra(distiller, extra):
    """:func:`load_strictly` copies of the distiller's own ``student.*`` and ``teacher.*`` tensors and ``extra``
    (mdistiller's key -> tensor)."""
    state = {"student." + k: v.clone() for k, v in distiller.student.state_dict().items()}
    state.update({"teacher." + k: v.clone() for k, v in distiller.teacher.state_dict().items()})
    state.update(extra)
    return load_strictly(distiller, state)


def step_and_features(distiller, ce_weight, epoch=1):
    """One ``forward_train`` on ``batch(n=4, seed=0)``: mdistiller's loss keys, ``loss_ce`` = ``ce_weight`` · CE.

    Returns ``(losses, student feats, teacher feats)``, the feature dicts from a second forward of the
    networks in their current modes (the teacher's under no_grad).
    """
    image, target = batch(n=4, seed=0)
    logits, losses = distiller.forward_train(image=image, target=target, epoch=epoch)
    assert list(losses) == ["loss_ce", "loss_kd"]
    expected_ce = ce_weight * F.cross_entropy(logits.float(), target)
    assert torch.allclose(losses["loss_ce"], expected_ce, rtol=1e-6)
    _, feats_s = distiller.student(image)
    with torch.no_grad():
        _, feats_t = distiller.teacher(image)
    return losses, feats_s, feats_t


def student_params(distiller):
    return [p for p in distiller.student.parameters() if p.requires_grad]


def grads(loss, params):
    out = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, out)]


def assert_grads_close(got, expected, rtol=1e-4):
    scale = max(float(g.abs().max()) for g in expected)
    assert scale > 0, "reference gradient is identically zero"
    for a, b in zip(got, expected):
        assert float((a - b).abs().max()) <= rtol * scale, (float((a - b).abs().max()), scale)


# --- functional pieces for the reference computations --------------------------------------------


def bn_train(x, bn):
    """BatchNorm in training mode from its definition (biased batch variance)."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)


def conv1x1(x, weight, bias=None):
    out = torch.einsum("oi,nihw->nohw", weight[:, :, 0, 0], x)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def conv3x3(x, weight):
    """3x3 convolution, stride 1, zero padding 1, by unfolding patches."""
    n, _, h, w = x.shape
    cols = F.unfold(x, kernel_size=3, padding=1)  # n × (c·9) × (h·w)
    return (weight.reshape(weight.shape[0], -1) @ cols).reshape(n, -1, h, w)


def nearest(x, size):
    """Nearest-neighbour resize to size × size: source index floor(i · in / out)."""
    h, w = x.shape[-2:]
    rows = torch.div(torch.arange(size) * h, size, rounding_mode="floor")
    cols = torch.div(torch.arange(size) * w, size, rounding_mode="floor")
    return x[:, :, rows][:, :, :, cols]


def pool(x, size):
    """Average pooling to size × size for sizes dividing the input."""
    n, c, h, w = x.shape
    return x.reshape(n, c, size, h // size, size, w // size).mean(dim=(3, 5))
