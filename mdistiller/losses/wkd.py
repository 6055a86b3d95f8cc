"""WKD's math: Lv, Yang & Li, "Wasserstein Distance Rivals Kullback-Leibler Divergence for Knowledge
Distillation", NeurIPS 2024 (release: github.com/JiamingLv/WKD, ``mdistiller/distillers/WKD.py``).

* WKD-L (Sec. 3.1): ``L = L_t + γ·W``, the target-class term and the discrete
  Wasserstein distance between the non-target distributions under a
  class-to-class ground cost (:func:`wkd_target_loss`,
  :func:`wkd_nontarget_distance`, :func:`wkd_logit_parts`); the non-target
  transport runs on one shared (C, C) kernel with each sample's target masked
  out (:func:`sinkhorn_nontarget`, on :func:`mdistiller.ot.sinkhorn_masked`); the ground cost comes from
  :mod:`mdistiller.losses.class_cost`.
* WKD-F (Sec. 3.2): per-window diagonal Gaussians of a feature map
  (:func:`window_mean_std`) and their 2-Wasserstein distance
  (:func:`wkd_feature_parts`, :func:`wkd_feature_loss`).
* The release's loss-weight schedule is :func:`mdistiller.losses.schedules.cosine_decay_weight`.
"""
import math

import torch
import torch.nn.functional as F

from ..ot import sinkhorn_masked

__all__ = [
    "SINKHORN_STAB",
    "hard_target",
    "sinkhorn_nontarget",
    "smallest_window",
    "window_mean_std",
    "wkd_feature_loss",
    "wkd_feature_parts",
    "wkd_logit_parts",
    "wkd_nontarget_distance",
    "wkd_target_loss",
]

# The stabiliser ε of the released WKD solver (added to both Sinkhorn denominators).
SINKHORN_STAB = 1e-8


# ---------------------------------------------------------------------------
# WKD-L
# ---------------------------------------------------------------------------


def hard_target(target):
    """Class indices from labels given as indices (B,) or as (soft) one-hot rows (B, C) (argmax, as released)."""
    if target.dim() > 1:
        return target.argmax(dim=1)
    return target


def wkd_target_loss(logits_student, logits_teacher, target):
    """WKD-L's target term ``L_t = −mean_b p_t[b, y_b]·log p_s[b, y_b]``, p = softmax(z) at T = 1.

    The teacher's factor is detached. Source: Lv et al. 2024, Sec. 3.1 (target
    separation); release ``wkd_logit_loss_with_speration`` (``loss_t``).

    Args:
        logits_student, logits_teacher: (B, C) logits.
        target: (B,) class indices, or (B, C) (soft) labels (argmax is used).
    """
    label = hard_target(target).view(-1, 1)
    log_p_student = F.log_softmax(logits_student, dim=1)
    p_teacher = F.softmax(logits_teacher, dim=1)
    return -(p_teacher.gather(1, label).detach() * log_p_student.gather(1, label)).mean()


def wkd_nontarget_distance(logits_student, logits_teacher, target, cost, temperature, reg, num_iter, kernel=None):
    """WKD-L's ``W = mean_b W_b``: the non-target Wasserstein term, unweighted.

    ``W_b`` is the fixed-iteration Sinkhorn transport cost (student → teacher,
    λ = ``reg``, ``num_iter`` iterations, u⁰ = 1/(C − 1)) between
    softmax(z_s/T) and softmax(z_t/T) restricted to the C − 1 non-target
    classes, under ``cost`` restricted likewise (:func:`sinkhorn_nontarget`).
    Source: Lv et al. 2024, Sec. 3.1; release ``wkd_logit_loss_with_speration``
    (``loss_wkd``).

    Args:
        logits_student, logits_teacher: (B, C) logits; the gradient flows to
            ``logits_student``.
        target: (B,) class indices, or (B, C) (soft) labels (argmax is used).
        cost: the final (C, C) ground cost (:func:`mdistiller.losses.class_cost.prepare_cost_matrix`);
            ignored when ``kernel`` is given.
        temperature, reg, num_iter: T, λ and the Sinkhorn iteration count.
        kernel: optional precomputed ``mdistiller.ot.sinkhorn_kernel(cost, reg)``.
    """
    label = hard_target(target).view(-1, 1)
    non_target = torch.ones_like(logits_student, dtype=torch.bool).scatter_(1, label, False)
    minus_inf = logits_student.new_tensor(float("-inf"))
    q_student = F.softmax(torch.where(non_target, logits_student / temperature, minus_inf), dim=1)
    q_teacher = F.softmax(torch.where(non_target, logits_teacher / temperature, minus_inf), dim=1)
    w = sinkhorn_nontarget(q_student, q_teacher, cost, reg, num_iter, label.view(-1), stab=SINKHORN_STAB, kernel=kernel)
    return w.mean()


def wkd_logit_parts(logits_student, logits_teacher, target, cost, temperature, reg, num_iter, kernel=None):
    """``(L_t, W)`` of WKD-L on the same logits; the loss is ``L_t + γ·W``.

    :func:`wkd_target_loss` and :func:`wkd_nontarget_distance` (see those for the
    arguments). Source: Lv et al. 2024, Sec. 3.1; release
    ``wkd_logit_loss_with_speration`` (``loss_t + gamma * loss_wkd``).
    """
    loss_t = wkd_target_loss(logits_student, logits_teacher, target)
    w = wkd_nontarget_distance(logits_student, logits_teacher, target, cost, temperature, reg, num_iter, kernel=kernel)
    return loss_t, w


def sinkhorn_nontarget(a, b, cost, reg, num_iter, target, stab=SINKHORN_STAB, kernel=None, return_plan=False):
    """The non-target transport of WKD-L: :func:`mdistiller.ot.sinkhorn_masked` over all classes except each sample's ``target``.

    ``W_b = Σ_{i,j ≠ y_b} u_i K_ij M_ij v_j``, the fixed-iteration Sinkhorn cost
    (u⁰ = 1/(C − 1)) between the student's (``a``) and the teacher's (``b``)
    distributions over the C − 1 non-target classes, under the cost restricted
    likewise. Equals the release's per-sample computation (gather the
    (C − 1, C − 1) sub-cost for each sample) by the argument of
    :func:`mdistiller.ot.sinkhorn_masked`.

    Source: Lv et al., NeurIPS 2024, Sec. 3.1 (WKD-L, non-target part); release
    ``wkd_logit_loss_with_speration``.

    Args:
        a, b: (B, C) distributions over the non-target classes (values at the
            target column are ignored).
        cost: shared (C, C) class cost (or None with ``kernel``).
        reg: λ, the entropic regulariser.
        num_iter: T ≥ 1, the number of (v, u) updates.
        target: (B,) class indices.
        stab, kernel, return_plan: as in :func:`mdistiller.ot.sinkhorn_masked`.

    Returns:
        (B,) transport costs; ``(value, plan)`` with ``return_plan=True``.
    """
    mask = torch.ones_like(a, dtype=torch.bool).scatter_(1, target.view(-1, 1), False)
    return sinkhorn_masked(a, b, cost, reg, num_iter, mask, stab=stab, kernel=kernel, return_plan=return_plan)


# ---------------------------------------------------------------------------
# WKD-F
# ---------------------------------------------------------------------------


def _window_index(size, grid, device):
    """Gather indices (grid, k) and validity mask of adaptive-pooling windows along one axis.

    Window i covers [floor(i·size/grid), ceil((i+1)·size/grid)), as in
    ``adaptive_avg_pool2d``; windows shorter than the longest are padded with
    their last index and masked out.
    """
    starts = [(i * size) // grid for i in range(grid)]
    ends = [-((-(i + 1) * size) // grid) for i in range(grid)]
    width = max(e - s for s, e in zip(starts, ends))
    offsets = torch.arange(width, device=device)
    start = torch.tensor(starts, device=device).unsqueeze(1)
    end = torch.tensor(ends, device=device).unsqueeze(1)
    index = torch.minimum(start + offsets, end - 1)
    valid = (start + offsets) < end
    return index, valid


def smallest_window(size, grid):
    """Length of the shortest adaptive-pooling window when a side of ``size`` is split into ``grid`` windows."""
    return min(math.ceil((i + 1) * size / grid) - (i * size) // grid for i in range(grid))


def window_mean_std(x, grid, eps):
    """Per-channel mean ``μ`` and ``σ = sqrt(unbiased var + eps)`` of (B, C, H, W) maps on a grid × grid of windows.

    Returns two (B, C, grid, grid) tensors. The windows are those of
    ``adaptive_avg_pool2d`` (they overlap when grid does not divide H or W);
    grid 1 is the whole map. Source: the release's ``adaptive_avg_std_pool2d``
    (Lv et al. 2024, Sec. 3.2: a diagonal Gaussian per window).
    """
    batch, channels, height, width = x.shape
    if grid == 1:
        return x.mean(dim=(2, 3), keepdim=True), torch.sqrt(x.var(dim=(2, 3), keepdim=True) + eps)
    if height % grid == 0 and width % grid == 0:
        blocks = x.reshape(batch, channels, grid, height // grid, grid, width // grid)
        mean = blocks.mean(dim=(3, 5))
        var = blocks.var(dim=(3, 5))
        return mean, torch.sqrt(var + eps)
    index_h, valid_h = _window_index(height, grid, x.device)
    index_w, valid_w = _window_index(width, grid, x.device)
    kh, kw = index_h.shape[1], index_w.shape[1]
    windows = x.index_select(2, index_h.reshape(-1)).index_select(3, index_w.reshape(-1))
    windows = windows.reshape(batch, channels, grid, kh, grid, kw)
    valid = (valid_h.view(grid, kh, 1, 1) & valid_w.view(1, 1, grid, kw)).to(x.dtype)
    count = valid.sum(dim=(1, 3))
    mean = (windows * valid).sum(dim=(3, 5)) / count
    centred = (windows - mean.view(batch, channels, grid, 1, grid, 1)) * valid
    var = centred.pow(2).sum(dim=(3, 5)) / (count - 1)
    return mean, torch.sqrt(var + eps)


def wkd_feature_parts(f_s, f_t, eps=1e-5, grid=1):
    """``(mean_loss, cov_loss)`` of WKD-F: ``Σ‖μ_s − μ_t‖²`` and ``Σ‖σ_s − σ_t‖²`` over channels and windows, each / (grid²·B).

    The two terms of the squared 2-Wasserstein distance between diagonal
    Gaussians, ``W2² = ‖μ_s − μ_t‖² + ‖σ_s − σ_t‖²`` (statistics of
    :func:`window_mean_std`). Source: Lv et al. 2024, Sec. 3.2; release
    ``wkd_feature_loss`` (which returns this pair).

    Args:
        f_s, f_t: (B, C, H, W) student (already projected) and teacher feature maps.
        eps: variance floor inside the square root.
        grid: windows per side.
    """
    mu_s, sigma_s = window_mean_std(f_s, grid, eps)
    mu_t, sigma_t = window_mean_std(f_t, grid, eps)
    batch = f_s.shape[0]
    mean_term = (mu_s - mu_t).pow(2).reshape(batch, -1).sum(1)
    cov_term = (sigma_s - sigma_t).pow(2).reshape(batch, -1).sum(1)
    norm = grid * grid * batch
    return mean_term.sum() / norm, cov_term.sum() / norm


def wkd_feature_loss(f_s, f_t, eps=1e-5, grid=1, mean_cov_ratio=2.0):
    """WKD-F: ``mean_cov_ratio·mean_loss + cov_loss`` of :func:`wkd_feature_parts`.

    The diagonal-Gaussian W2² with the mean term weighted by ``MEAN_COV_RATIO``,
    summed over channels and windows, divided by grid²·B. Source: Lv et al.
    2024, Sec. 3.2; release ``forward_train`` (``mean_cov_ratio * mean_loss + cov_loss``).
    """
    mean_loss, cov_loss = wkd_feature_parts(f_s, f_t, eps=eps, grid=grid)
    return mean_cov_ratio * mean_loss + cov_loss
