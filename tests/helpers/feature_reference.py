"""Set-up shared by the tests of the feature-based mdistiller methods (RKD, SP, VID, OFD, REVIEWKD).

``build`` merges mdistiller's own yaml file (our ``configs/`` copy), optionally
switches the teacher/student pair and other keys, builds real zoo models and
the distiller through the registry. The independent reference computations
in the tests use the small functional pieces below (explicit BN, 1x1 convs by
einsum, nearest resizing by index arithmetic, pooling by reshape).
"""
import os

import torch
import torch.nn.functional as F

from mdistiller.distillers import build_distiller
from mdistiller.engine.cfg import CFG, merge_from_file, merge_from_list
from mdistiller.models import cifar_model_dict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH, SIZE, CLASSES = 4, 32, 100


def config(name, teacher=None, student=None, opts=()):
    cfg = CFG.clone()
    merge_from_file(cfg, os.path.join(REPO, "configs", "cifar100", name + ".yaml"))
    if teacher:
        cfg.DISTILLER.TEACHER = teacher
    if student:
        cfg.DISTILLER.STUDENT = student
    if opts:
        merge_from_list(cfg, list(opts))
    return cfg


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


def models(cfg, seed=0):
    torch.manual_seed(seed)
    student = cifar_model_dict[cfg.DISTILLER.STUDENT][0](num_classes=CLASSES)
    teacher = randomize_bn(cifar_model_dict[cfg.DISTILLER.TEACHER][0](num_classes=CLASSES), seed + 1).eval()
    return student, teacher


def build(name, teacher=None, student=None, opts=(), seed=0):
    """``(cfg, distiller)``: mdistiller's yaml for method ``name`` on real zoo models, distiller in train mode."""
    cfg = config(name, teacher, student, opts)
    student_model, teacher_model = models(cfg, seed)
    torch.manual_seed(seed + 2)
    return cfg, build_distiller(cfg, student_model, teacher_model).train()


def batch(seed=0, n=BATCH, size=SIZE):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, CLASSES, (n,), generator=g)


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


def check_ce(cfg_ce_weight, logits, target, losses):
    expected = cfg_ce_weight * F.cross_entropy(logits.float(), target)
    assert torch.allclose(losses["loss_ce"], expected, rtol=1e-6)


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
