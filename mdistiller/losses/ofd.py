"""Overhaul of feature distillation (Heo, Kim, Yun, Park, Kwak & Choi, "A Comprehensive Overhaul of
Feature Distillation", ICCV 2019)."""
import math

import torch
from scipy.special import ndtr


def ofd_margin(bn_weight, bn_bias):
    """Per-channel margin ``m = E[x | x < 0]`` for ``x ~ N(β, γ²)``, from a BN's weight γ and bias β.

    ``m = β − |γ| · φ(β/|γ|) / Φ(−β/|γ|)`` (φ, Φ: standard normal pdf and cdf) when
    ``Φ(−β/|γ|) > 0.001``, else ``−3|γ|``. Heo et al. 2019, Sec. 3.2
    ("teacher transform", margin ReLU): the teacher's pre-ReLU response is
    modelled by the Gaussian of the BN before the ReLU; the fallback and the
    0.001 threshold are those of the authors' code (and mdistiller's).

    Returns a float32 tensor of shape (1, C, 1, 1) on the BN's device; computed
    in float64 on the host.
    """
    margins = []
    for gamma, beta in zip(bn_weight.detach().cpu().tolist(), bn_bias.detach().cpu().tolist()):
        std = abs(gamma)
        below = float(ndtr(-beta / std))
        if below > 0.001:
            margins.append(-std * math.exp(-((beta / std) ** 2) / 2) / math.sqrt(2 * math.pi) / below + beta)
        else:
            margins.append(-3 * std)
    return torch.tensor(margins, dtype=torch.float32, device=bn_weight.device).view(1, -1, 1, 1)


def ofd_loss(feat_student, feat_teacher, margin):
    """Partial L2 distance to the margin-ReLU'd teacher, summed over (c, h, w), averaged over the batch.

    With ``σ_m(t) = max(t, m)`` (Heo et al. 2019, Sec. 3.2) and the partial L2
    distance (Sec. 3.3), which skips positions where the student is already
    below a non-positive target::

        d_p(σ_m(t), s) = Σ_{c,h,w} 0 if s ≤ σ_m(t) ≤ 0 else (σ_m(t) − s)²

    Arguments: ``feat_student`` s (the connector's output, n × c × h × w),
    ``feat_teacher`` t (the teacher's pre-ReLU feature, same shape, a constant),
    ``margin`` m (broadcastable to s, e.g. (1, c, 1, 1) from :func:`ofd_margin`).
    """
    s, t, m = feat_student, feat_teacher, margin.to(feat_student)
    # The three cases of d_p — t ≤ m: target m; m < t ≤ 0: target t, both skipped where s ≤ target;
    # t > 0: target t, always counted — are one expression in σ_m(t), since m < 0 (a mean of negative values).
    target = torch.maximum(t, m)
    diff = s - target
    return (diff**2 * ((diff > 0) | (target > 0))).mean(dim=0).sum()
