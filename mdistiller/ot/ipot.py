"""Inexact Proximal point method for exact Optimal Transport (IPOT)."""
import math

import torch

from ._utils import batch_problem, unbatch


def ipot(a, b, cost, beta=0.1, num_iter=50, inner_iter=1, init="ones", detach_plan=False, return_plan=False):
    r"""IPOT, Algorithm 1 of Xie, Wang, Wang & Zha, "A Fast Proximal Point Method for
    Computing Exact Wasserstein Distance" (UAI 2019), as used by Lohit & Jones,
    "Model Compression Using Optimal Transport" (WACV 2022).

    Proximal point iterations :math:`T^{(t+1)} = \arg\min_{T\in U(a,b)} \langle C, T\rangle
    + \beta\, \mathrm{KL}(T \,\|\, T^{(t)})`, each solved inexactly by
    ``inner_iter`` Sinkhorn sweeps:

    .. math::
        G = e^{-C/\beta},\quad T^{(1)} = \mathbf 1\mathbf 1^\top \ (\text{or } a b^\top),\quad
        \sigma = \tfrac1m \mathbf 1_m; \qquad
        \text{loop: } Q = G \odot T,\ \
        [\delta = a \oslash (Q\sigma),\ \sigma = b \oslash (Q^\top\delta)]^{\times L},\ \
        T = \operatorname{diag}(\delta)\, Q\, \operatorname{diag}(\sigma).

    ``σ`` carries over between outer iterations, as in the paper. The
    recursion is run on logarithms (``log Q = log T − C/β``, the scalings by
    log-sum-exp) — the same iterates, without the underflow of ``e^{-C/β}`` for
    small ``β``. Unlike Sinkhorn, the plan converges to the *exact* (unregularised)
    OT plan as ``num_iter`` grows, for any ``β``; small ``β`` converges faster.

    Args:
        a: (n,) or (B, n) source histograms; None = uniform ``1/n``.
        b: (m,) or (B, m) target histograms; None = uniform ``1/m``.
        cost: (n, m) shared or (B, n, m) per-problem ground cost ``C``.
        beta: proximal step ``β`` > 0.
        num_iter: number of outer (proximal) iterations.
        inner_iter: ``L``, Sinkhorn sweeps per outer iteration.
        init: ``"ones"`` (``T = 1 1ᵀ``, the paper) or ``"product"`` (``T = a bᵀ``).
        detach_plan: compute the plan without gradient (the value's gradient
            w.r.t. the cost is then ``T``); otherwise gradients unroll the iterations.
        return_plan: also return the plan.

    Returns:
        ``value = Σ T ⊙ C``, shape (B,) or () for one unbatched problem;
        ``(value, T)`` with ``return_plan=True``.
    """
    if init not in ("ones", "product"):
        raise ValueError("init must be 'ones' or 'product', got {!r}".format(init))
    if num_iter < 1 or inner_iter < 1:
        raise ValueError("num_iter and inner_iter must be >= 1")
    a, b, cost, batched = batch_problem(a, b, cost)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_plan):
        log_a, log_b = a.log().to(cost.dtype), b.log().to(cost.dtype)
        log_g = -cost / beta
        if init == "ones":
            log_t = torch.zeros_like(cost)
        else:
            log_t = log_a.unsqueeze(2) + log_b.unsqueeze(1)
        log_sigma = torch.full_like(log_b, -math.log(cost.shape[-1]))
        for _ in range(num_iter):
            log_q = log_g + log_t
            for _ in range(inner_iter):
                log_delta = log_a - torch.logsumexp(log_q + log_sigma.unsqueeze(1), dim=2)
                log_sigma = log_b - torch.logsumexp(log_q + log_delta.unsqueeze(2), dim=1)
            log_t = log_delta.unsqueeze(2) + log_q + log_sigma.unsqueeze(1)
        plan = log_t.exp()
    if detach_plan:
        plan = plan.detach()
    value = (plan * cost).sum((-2, -1))
    value, plan = unbatch(value, plan, batched)
    return (value, plan) if return_plan else value
