"""Exact optimal transport (POT's network simplex), its relaxed lower bound, and a cost helper."""
import warnings

import numpy as np
import torch

from ._utils import batch_problem, fill_uniform, unbatch


def pairwise_sqeuclidean(x, y):
    r"""Squared Euclidean cost :math:`C_{ij} = \lVert x_i - y_j\rVert_2^2` for ``x`` (..., n, d), ``y`` (..., m, d).

    Computed as :math:`\lVert x_i\rVert^2 + \lVert y_j\rVert^2 - 2 x_i^\top y_j`
    (memory O(nm), not O(nmd)), clamped at 0 against round-off.
    """
    sq = (x * x).sum(-1).unsqueeze(-1) + (y * y).sum(-1).unsqueeze(-2) - 2.0 * x @ y.transpose(-1, -2)
    return sq.clamp_min(0.0)


def relaxed_emd(a, b, cost, return_plan=False):
    r"""Relaxed Earth Mover's Distance (REMD), a lower bound of the EMD.

    Kusner, Sun, Kolkin & Weinberger, "From Word Embeddings To Document
    Distances" (ICML 2015), Sec. 4.2: dropping one of the two marginal
    constraints makes the OT problem solvable in closed form (every point sends
    its mass to its nearest neighbour); each relaxation is a lower bound, so is
    their maximum (the form used by Kolkin et al., STROTSS, CVPR 2019):

    .. math::
        \mathrm{REMD}(C) = \max\Big(\sum_i a_i \min_j C_{ij},\ \sum_j b_j \min_i C_{ij}\Big),

    i.e. :math:`\max(\mathrm{mean}_i \min_j C_{ij}, \mathrm{mean}_j \min_i C_{ij})`
    for uniform masses. Differentiable (sub-gradient through the min and max).

    Args:
        a: (..., n) source histograms; None = uniform ``1/n``.
        b: (..., m) target histograms; None = uniform ``1/m``.
        cost: (..., n, m) ground cost ``C``.
        return_plan: also return the plan of the larger relaxation (each row's
            mass ``a_i`` at its nearest column, or each column's mass ``b_j`` at
            its nearest row; it satisfies only one marginal).

    Returns:
        ``value`` of shape (...); ``(value, plan)`` with ``return_plan=True``.
    """
    row_min, row_arg = cost.min(dim=-1)
    col_min, col_arg = cost.min(dim=-2)
    r1 = row_min.mean(-1) if a is None else (a * row_min).sum(-1)
    r2 = col_min.mean(-1) if b is None else (b * col_min).sum(-1)
    value = torch.maximum(r1, r2)
    if not return_plan:
        return value
    with torch.no_grad():
        a, b = fill_uniform(a, b, cost.shape[-2], cost.shape[-1], cost)
        mass_rows = a.to(cost.dtype).expand(row_arg.shape).unsqueeze(-1)
        mass_cols = b.to(cost.dtype).expand(col_arg.shape).unsqueeze(-2)
        rows = torch.zeros_like(cost).scatter_(-1, row_arg.unsqueeze(-1), mass_rows)
        cols = torch.zeros_like(cost).scatter_(-2, col_arg.unsqueeze(-2), mass_cols)
        plan = torch.where((r1 >= r2)[..., None, None], rows, cols)
    return value, plan


def emd(a, b, cost, num_iter=100000, return_plan=False):
    r"""Exact optimal transport (Earth Mover's Distance) with POT's ``ot.emd``.

    .. math::
        P^\star = \arg\min_{P \ge 0,\ P\mathbf 1 = a,\ P^\top\mathbf 1 = b} \langle P, C\rangle,
        \qquad \mathrm{EMD} = \sum_{ij} P^\star_{ij} C_{ij}

    (Kantorovich's problem; network simplex of Bonneel et al. 2011, as wrapped by
    Flamary et al., POT, JMLR 2021). Each problem of the batch is solved on
    detached float64 numpy arrays (``b`` is rescaled to ``a``'s total mass, as POT
    does); the plan is returned as a constant. The value is differentiable:
    by the envelope theorem (Danskin), ``∂EMD/∂C = P*``, ``∂EMD/∂a = u``,
    ``∂EMD/∂b = v`` (POT's centred dual potentials) — so
    ``value = Σ P* ⊙ C (+ Σ (a − a.detach()) u + Σ (b − b.detach()) v when a or b
    need a gradient)``, the same rule as ``ot.emd2`` with the torch backend.

    Args:
        a: (n,) or (B, n) source histograms; None = uniform ``1/n`` (float64).
        b: (m,) or (B, m) target histograms; None = uniform ``1/m`` (float64).
        cost: (n, m) shared or (B, n, m) per-problem ground cost ``C``.
        num_iter: maximum number of network-simplex iterations (POT's
            ``numItermax``); a warning is raised when it is reached (the plan is
            then approximate).
        return_plan: also return the plan (a constant).

    Returns:
        ``value`` of shape (B,) or () for one unbatched problem; ``(value, plan)``
        with ``return_plan=True``.
    """
    import ot  # POT: imported here so that the rest of the toolbox does not need it

    a, b, cost, batched = batch_problem(a, b, cost, dtype=torch.float64)
    a_np = a.detach().cpu().double().numpy()
    b_np = b.detach().cpu().double().numpy()
    c_np = cost.detach().cpu().double().numpy()
    plans, us, vs = [], [], []
    for k in range(c_np.shape[0]):
        ak, bk = np.ascontiguousarray(a_np[k]), np.ascontiguousarray(b_np[k])
        bk = bk * (ak.sum() / bk.sum())
        plan, log = ot.emd(ak, bk, np.ascontiguousarray(c_np[k]), numItermax=num_iter, log=True)
        if log.get("warning"):
            warnings.warn("emd: {} (problem {} of the batch)".format(log["warning"], k))
        plans.append(plan)
        us.append(log["u"])
        vs.append(log["v"])
    plan = torch.from_numpy(np.stack(plans)).to(device=cost.device, dtype=cost.dtype)
    value = (plan * cost).sum((-2, -1))
    if a.requires_grad:
        u = torch.from_numpy(np.stack(us)).to(device=a.device, dtype=a.dtype)
        value = value + ((a - a.detach()) * u).sum(-1).to(value.dtype)
    if b.requires_grad:
        v = torch.from_numpy(np.stack(vs)).to(device=b.device, dtype=b.dtype)
        value = value + ((b - b.detach()) * v).sum(-1).to(value.dtype)
    value, plan = unbatch(value, plan, batched)
    return (value, plan) if return_plan else value
