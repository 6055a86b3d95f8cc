"""Entropic optimal transport with a fixed number of Sinkhorn iterations.

Notation. ``a`` (B, n) and ``b`` (B, m) are the source and target histograms,
``M`` the ground cost, shared (n, m) or per sample (B, n, m), ``λ`` the entropic
regulariser (``reg``), ``ε`` a stabiliser added to every denominator.

    K = exp(−M / λ)
    u⁰ = 1/n                           (or a given u0)
    for t = 1..T:   v = b / (Kᵀu + ε)
                    u = a / (K v + ε)
    P = diag(u) K diag(v)              (the transport plan)
    W = ⟨P, M⟩ = Σ_ij u_i K_ij M_ij v_j

Source: Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal
Transport", NeurIPS 2013 (Algorithm 1), in the fixed-iteration form of the WKD
release (Lv, Yang & Li, "Wasserstein Distance Rivals Kullback-Leibler
Divergence for Knowledge Distillation", NeurIPS 2024, github.com/JiamingLv/WKD,
``mdistiller/distillers/WKD.py: sinkhorn``): ε = 1e-8, u⁰ = 1/n, the v-update
first. With T small the iterates are not converged, so ``W`` is *not* the
entropic OT value. Differentiable by autograd through the unrolled iterations.

Batched matrix products are written with the histograms as row vectors:
``(Kᵀu)ᵀ = uᵀK`` is ``u @ K`` and ``(Kv)ᵀ = v @ Kᵀ``, so a shared cost costs
two ``(B, n) @ (n, m)`` products per iteration and no per-sample copy of it.
"""
import torch

from ._utils import batch_histograms, fill_uniform, unbatch, uniform

__all__ = ["sinkhorn_kernel", "sinkhorn_fixed", "sinkhorn_masked"]


def sinkhorn_kernel(cost, reg):
    """``(K, K ⊙ M)`` with ``K = exp(−M / reg)`` (the Gibbs kernel of Cuturi, NeurIPS 2013, Algorithm 1).

    Args:
        cost: ground cost M, shared (n, m) or batched (B, n, m).
        reg: entropic regulariser λ.

    Returns:
        ``(K, K ⊙ M)``, to be passed as ``kernel=`` to the solvers (computed once per cost and λ).
    """
    K = torch.exp(-cost / reg)
    return K, K * cost


def sinkhorn_fixed(a, b, cost, reg, num_iter, u0=None, stab=1e-8, kernel=None, return_plan=False):
    """Fixed-iteration Sinkhorn transport cost, batched.

    Equations (see the module docstring)::

        K = exp(−M/λ);  u⁰ = 1/n or u0
        repeat num_iter times:  v = b / (Kᵀu + ε);  u = a / (K v + ε)
        W = Σ_ij u_i K_ij M_ij v_j

    Source: Cuturi, NeurIPS 2013, Algorithm 1; WKD release ``sinkhorn`` (Lv et
    al., NeurIPS 2024).

    Args:
        a: (B, n) or (n,) source histograms; None = uniform ``1/n``.
        b: (B, m) or (m,) target histograms; None = uniform ``1/m``.
        cost: ground cost M, shared ``(n, m)`` or per sample ``(B, n, m)``;
            ignored (may be None) when ``kernel`` is given.
        reg: λ, the entropic regulariser.
        num_iter: T ≥ 1, the number of (v, u) updates.
        u0: optional (B, n) or (n,) initial ``u``; default ``1/n`` everywhere.
        stab: ε added to both denominators (1e-8 in the WKD release).
        kernel: optional precomputed ``(K, K ⊙ M)``, ``K = exp(−M/λ)``, of shape
            (n, m) or (B, n, m); cast to the histograms' dtype.
        return_plan: also return the plan ``P = diag(u) K diag(v)``.

    Returns:
        ``W`` of shape (B,), or () when no input is batched; ``(W, P)`` with
        ``return_plan=True``.
    """
    if int(num_iter) < 1:
        raise ValueError("num_iter must be >= 1, got {}".format(num_iter))
    given = [t for t in (a, b) if t is not None]
    dtype = given[0].dtype if given else (cost if kernel is None else kernel[0]).dtype
    if kernel is None:
        K, KM = sinkhorn_kernel(cost.to(dtype), reg)
    else:
        K, KM = kernel[0].to(dtype), kernel[1].to(dtype)
    a, b = fill_uniform(a, b, K.shape[-2], K.shape[-1], K)
    a, b, batched = batch_histograms(a, b, K.shape)
    batch, n = a.shape
    if u0 is None:
        u = uniform(n, a, batch=batch)
    else:
        u = u0.to(a.dtype).expand(batch, n)
    if K.dim() == 2:
        Kt = K.t()
        for _ in range(num_iter):
            v = b / (u @ K + stab)
            u = a / (v @ Kt + stab)
        W = ((u @ KM) * v).sum(1)
    else:
        Kt = K.transpose(1, 2)
        for _ in range(num_iter):
            v = b / (torch.bmm(u.unsqueeze(1), K).squeeze(1) + stab)
            u = a / (torch.bmm(v.unsqueeze(1), Kt).squeeze(1) + stab)
        W = (torch.bmm(u.unsqueeze(1), KM).squeeze(1) * v).sum(1)
    if not return_plan:
        return W if batched else W[0]
    return unbatch(W, u.unsqueeze(2) * K * v.unsqueeze(1), batched)


def sinkhorn_masked(a, b, cost, reg, num_iter, mask, stab=1e-8, kernel=None, return_plan=False):
    """Fixed-iteration Sinkhorn on each sample's support ``mask``, with one shared cost.

    For every sample with support S = {i : mask[i]} this returns exactly (in
    exact arithmetic) what :func:`sinkhorn_fixed` returns on the
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
