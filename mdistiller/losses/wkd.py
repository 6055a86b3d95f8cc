"""WKD-L's non-target transport: fixed-iteration Sinkhorn over all classes but each sample's target.

Lv, Yang & Li, "Wasserstein Distance Rivals Kullback-Leibler Divergence for
Knowledge Distillation" (NeurIPS 2024), Eq. (4), computed on one shared (C, C)
kernel with the target class masked out instead of the release's per-sample
(C − 1, C − 1) sub-costs (``wkd_logit_loss_with_speration``).
"""
import torch

from ..ot import sinkhorn_fixed

__all__ = ["SINKHORN_STAB", "sinkhorn_masked", "sinkhorn_nontarget"]

# The stabiliser ε of the released WKD solver (added to both Sinkhorn denominators).
SINKHORN_STAB = 1e-8


def sinkhorn_masked(a, b, cost, reg, num_iter, mask, stab=SINKHORN_STAB, kernel=None, return_plan=False):
    """Fixed-iteration Sinkhorn on each sample's support ``mask``, with one shared cost.

    For every sample with support S = {i : mask[i]} this returns exactly (in
    exact arithmetic) what :func:`mdistiller.ot.sinkhorn_fixed` returns on the
    sub-problem ``a[S], b[S], M[S][:, S], u⁰ = 1/|S|``, without building the
    (B, |S|, |S|) sub-costs: the histograms are zeroed off the support and
    ``u⁰ = 1_S / |S|``; an entry j off the support has ``b_j = 0``, so
    ``v_j = 0 / (Kᵀu + ε)_j = 0`` (the denominator is ≥ ε > 0), likewise
    ``u_i = 0``, and an entry on the support gets the sub-problem's sum plus exact
    zeros. The transport cost Σ u_i K_ij M_ij v_j only adds zero terms; gradients
    w.r.t. ``a`` and ``b`` off the support are 0. In floating point the sums
    differ only by the matmul's summation order.

    Args:
        a, b: (B, n) histograms; their values off ``mask`` are ignored.
        cost: shared (n, n) ground cost (or None with ``kernel``).
        reg: λ, the entropic regulariser.
        num_iter: T ≥ 1, the number of (v, u) updates.
        mask: (B, n) bool support.
        stab: ε added to both denominators.
        kernel: optional precomputed :func:`sinkhorn_kernel` ``(cost, reg)``.
        return_plan: also return the (B, n, n) plan, zero off the support.

    Returns:
        (B,) transport costs; ``(value, plan)`` with ``return_plan=True``.
    """
    mask = mask.to(torch.bool)
    zero = a.new_zeros(())
    a = torch.where(mask, a, zero)
    b = torch.where(mask, b, zero)
    m = mask.to(a.dtype)
    u0 = m / m.sum(1, keepdim=True)
    return sinkhorn_fixed(a, b, cost, reg, num_iter, u0=u0, stab=stab, kernel=kernel, return_plan=return_plan)


def sinkhorn_nontarget(a, b, cost, reg, num_iter, target, stab=SINKHORN_STAB, kernel=None, return_plan=False):
    """The non-target transport of WKD-L: :func:`sinkhorn_masked` over all classes except each sample's ``target``.

    ``W_b = Σ_{i,j ≠ y_b} u_i K_ij M_ij v_j``, the fixed-iteration Sinkhorn cost
    (u⁰ = 1/(C − 1)) between the student's (``a``) and the teacher's (``b``)
    distributions over the C − 1 non-target classes, under the cost restricted
    likewise. Equals the release's per-sample computation (gather the
    (C − 1, C − 1) sub-cost for each sample) by the argument of
    :func:`sinkhorn_masked`.

    Source: Lv et al., NeurIPS 2024, Eq. (4) (WKD-L, non-target part); release
    ``wkd_logit_loss_with_speration``.

    Args:
        a, b: (B, C) distributions over the non-target classes (values at the
            target column are ignored).
        cost: shared (C, C) class cost (or None with ``kernel``).
        reg: λ, the entropic regulariser.
        num_iter: T ≥ 1, the number of (v, u) updates.
        target: (B,) class indices.
        stab, kernel, return_plan: as in :func:`sinkhorn_masked`.

    Returns:
        (B,) transport costs; ``(value, plan)`` with ``return_plan=True``.
    """
    mask = torch.ones_like(a, dtype=torch.bool).scatter_(1, target.view(-1, 1), False)
    return sinkhorn_masked(a, b, cost, reg, num_iter, mask, stab=stab, kernel=kernel, return_plan=return_plan)
