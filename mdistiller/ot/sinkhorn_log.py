"""Converged entropic OT in the log domain."""
import torch

from ._utils import batch_problem, unbatch


def sinkhorn_log(a, b, cost, reg, num_iter=1000, tol=1e-9, detach_plan=False, return_plan=False):
    r"""Entropic optimal transport solved by Sinkhorn's algorithm in the log domain.

    Solves :math:`P^\varepsilon = \arg\min_{P \in U(a, b)} \langle P, C\rangle - \varepsilon H(P)`
    (Cuturi, "Sinkhorn Distances", NeurIPS 2013) with the dual updates of
    Peyré & Cuturi, *Computational Optimal Transport* (2019), Remark 4.23:

    .. math::
        g_j \leftarrow \varepsilon \log b_j - \varepsilon \operatorname{LSE}_i\big((f_i - C_{ij})/\varepsilon\big),\quad
        f_i \leftarrow \varepsilon \log a_i - \varepsilon \operatorname{LSE}_j\big((g_j - C_{ij})/\varepsilon\big),

    :math:`P_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)`. The update order
    (g, then f, from f = 0) is that of POT's ``sinkhorn_knopp`` (v then u), so
    with ``tol=0`` the result equals ``ot.sinkhorn(a, b, C, reg,
    numItermax=num_iter, stopThr=0)`` — but never under- or overflows for small
    ``reg``. Stops early once every problem's column-marginal error
    :math:`\lVert P^\top 1 - b\rVert_1` is below ``tol`` (checked every 10
    iterations, as POT does); ``tol=0`` runs exactly ``num_iter`` iterations.

    Gradients flow by unrolling the iterations; with ``detach_plan=True`` the
    plan is computed without gradient and ``value = Σ P.detach() ⊙ C`` (gradient
    ``P`` w.r.t. the cost, the envelope-theorem gradient of the regularised
    objective), which saves the memory of the unrolled graph.

    Args:
        a: (n,) or (B, n) source histograms; None = uniform ``1/n``.
        b: (m,) or (B, m) target histograms; None = uniform ``1/m``.
        cost: (n, m) shared or (B, n, m) per-problem ground cost ``C``.
        reg: entropic regulariser ``ε`` > 0.
        num_iter: maximum number of (g, f) updates.
        tol: column-marginal tolerance of the early stop; 0 runs ``num_iter`` updates.
        detach_plan: compute the plan without gradient.
        return_plan: also return the plan.

    Returns:
        ``value`` :math:`= \sum_{ij} P_{ij} C_{ij}` (the transport cost of the
        entropic plan, what ``ot.sinkhorn2`` returns), shape (B,) or () for one
        unbatched problem; ``(value, plan)`` with ``return_plan=True``.
    """
    a, b, cost, batched = batch_problem(a, b, cost)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_plan):
        log_a, log_b = a.log(), b.log()
        scaled = cost / reg
        f = torch.zeros_like(log_a, dtype=cost.dtype)
        g = torch.zeros_like(log_b, dtype=cost.dtype)
        for it in range(num_iter):
            g = reg * (log_b - torch.logsumexp(f.unsqueeze(2) / reg - scaled, dim=1))
            f = reg * (log_a - torch.logsumexp(g.unsqueeze(1) / reg - scaled, dim=2))
            if tol > 0 and it % 10 == 0:
                with torch.no_grad():
                    col = torch.exp(f.unsqueeze(2) / reg + g.unsqueeze(1) / reg - scaled).sum(1)
                    if (col - b).abs().sum(-1).max() < tol:
                        break
        plan = torch.exp(f.unsqueeze(2) / reg + g.unsqueeze(1) / reg - scaled)
    if detach_plan:
        plan = plan.detach()
    value = (plan * cost).sum((-2, -1))
    value, plan = unbatch(value, plan, batched)
    return (value, plan) if return_plan else value
