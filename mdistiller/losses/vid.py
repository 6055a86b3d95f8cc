"""Variational information distillation (Ahn, Hu, Damianou, Lawrence & Dai, "Variational Information
Distillation for Knowledge Transfer", CVPR 2019)."""
import math

import torch
import torch.nn.functional as F


def softplus_inverse(value):
    """``α`` with ``log(1 + exp(α)) = value`` (float): the initial log-scale for a target variance."""
    return math.log(math.exp(value) - 1.0)


def vid_variance(log_scale, eps=1e-5):
    """Per-channel variance ``σ_c² = log(1 + exp(α_c)) + ε`` (Ahn et al. 2019, Sec. 3: softplus keeps it positive)."""
    return torch.log(1.0 + torch.exp(log_scale)) + eps


def vid_loss(pred_mean, feat_teacher, log_scale, eps=1e-5):
    """``mean over (n, c, h, w) of ½ · [(t − μ(s))² / σ_c² + log σ_c²]``.

    The negative log-likelihood of the teacher's feature ``t`` under the
    Gaussian variational distribution ``q(t | s) = N(μ(s), diag σ²)`` with a
    per-channel (homoscedastic) variance, up to the constant ``½ log 2π``:
    maximizing it maximizes the variational lower bound of the mutual
    information I(t; s) (Ahn et al. 2019, Sec. 3). Averaged over every element.

    Arguments: ``pred_mean`` μ(s) (n × c × h × w, the student's regressed
    feature), ``feat_teacher`` t (same shape), ``log_scale`` α (c), ``eps`` ε.
    """
    variance = vid_variance(log_scale, eps).to(pred_mean)
    diff = pred_mean - feat_teacher
    # Σ over each channel's n·h·w squared errors first: one pass over the maps instead of one per operation.
    squared_error = diff.square().sum(dim=(0, 2, 3))
    return 0.5 * ((squared_error / variance).sum() / diff.numel() + torch.log(variance).mean())


def match_spatial(feat_student, feat_teacher):
    """Average-pool the larger of the two maps to the other's height (square output), as mdistiller's VID does."""
    s_h, t_h = feat_student.shape[2], feat_teacher.shape[2]
    if s_h > t_h:
        feat_student = F.adaptive_avg_pool2d(feat_student, (t_h, t_h))
    elif s_h < t_h:
        feat_teacher = F.adaptive_avg_pool2d(feat_teacher, (s_h, s_h))
    return feat_student, feat_teacher
