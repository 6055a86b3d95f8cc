"""Converged entropic OT in the log domain (plus the batching helper of the toolbox).

Shapes used throughout ``sinkhorn_log``, ``ipot`` and ``emd``: marginals
``a`` (B, n) or (n,), ``b`` (B, m) or (m,), cost (n, m) or (B, n, m). One
unbatched problem (every input unbatched) returns an unbatched plan (n, m) and a
0-d value; otherwise the batch size is taken from whichever input is batched
and the others are broadcast.
"""
import torch


def _batch_problem(a, b, cost):
    """Broadcast ``a``, ``b``, ``cost`` to (B, n), (B, m), (B, n, m); also returns whether any was batched."""
    if cost.dim() not in (2, 3):
        raise ValueError("cost must be (n, m) or (B, n, m), got shape {}".format(tuple(cost.shape)))
    if a.dim() not in (1, 2) or b.dim() not in (1, 2):
        raise ValueError("a and b must be (n,) / (B, n), got {} and {}".format(tuple(a.shape), tuple(b.shape)))
    batched = cost.dim() == 3 or a.dim() == 2 or b.dim() == 2
    sizes = {t.shape[0] for t, d in ((a, 2), (b, 2), (cost, 3)) if t.dim() == d}
    if len(sizes) > 1:
        raise ValueError("inconsistent batch sizes {}".format(sorted(sizes)))
    batch = sizes.pop() if sizes else 1
    n, m = cost.shape[-2], cost.shape[-1]
    if a.shape[-1] != n or b.shape[-1] != m:
        raise ValueError("a has {} and b {} entries, cost is {}x{}".format(a.shape[-1], b.shape[-1], n, m))
    a = a.expand(batch, n) if a.dim() == 1 else a
    b = b.expand(batch, m) if b.dim() == 1 else b
    cost = cost.expand(batch, n, m) if cost.dim() == 2 else cost
    return a, b, cost, batched


def _unbatch(plan, value, batched):
    return (plan, value) if batched else (plan[0], value[0])


def sinkhorn_log(a, b, cost, reg, num_iter=1000, tol=1e-9, return_plan=True, detach_plan=False):
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

    Returns ``(plan, value)`` with ``value`` :math:`= \sum_{ij} P_{ij} C_{ij}`
    (the transport cost of the entropic plan, what ``ot.sinkhorn2`` returns),
    or only ``value`` when ``return_plan=False``. Gradients flow by unrolling the
    iterations; with ``detach_plan=True`` the plan is computed without gradient
    and ``value = Σ P.detach() ⊙ C`` (gradient ``P`` w.r.t. the cost, the
    envelope-theorem gradient of the regularised objective), which saves the
    memory of the unrolled graph.
    """
    a, b, cost, batched = _batch_problem(a, b, cost)
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
    plan, value = _unbatch(plan, value, batched)
    return (plan, value) if return_plan else value
