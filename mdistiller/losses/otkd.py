"""Optimal-transport feature loss of Lohit & Jones, "Model Compression Using Optimal Transport" (WACV 2022)."""
import torch

from ..ot import cosine_cost, ipot, relaxed_emd

__all__ = ["SOLVERS", "ot_stage_loss", "otkd_loss"]

SOLVERS = ("ipot", "remd")


def _stage_cost(feat_student, feat_teacher):
    """Eq. (3): the (B, B) cosine cost between the flattened student (rows) and teacher (columns) features."""
    return cosine_cost(
        feat_student.reshape(feat_student.shape[0], -1), feat_teacher.reshape(feat_teacher.shape[0], -1)
    )


def _solve(cost, solver, beta, num_iter, detach_plan):
    """The OT cost of each problem of ``cost`` ((B, B) or (L, B, B)) under ``solver``."""
    if solver == "remd":
        return relaxed_emd(None, None, cost)
    return ipot(None, None, cost, beta=beta, num_iter=num_iter, detach_plan=detach_plan)


def ot_stage_loss(feat_student, feat_teacher, solver="ipot", beta=20.0, num_iter=50, detach_plan=False):
    r"""OT cost between the batch's student and teacher features of one stage, under the cosine cost.

    .. math::
        L_{OT} = \sum_{ij} T^\star_{ij} C_{ij},\qquad
        C_{ij} = 1 - \frac{s_i^\top t_j}{\lVert s_i\rVert\,\lVert t_j\rVert}

    with a uniform mass 1/b on each of the b samples of the batch (Lohit &
    Jones 2022, Sec. 3, Eqs. (2)-(3); rows are students, columns teachers; the
    features are flattened per sample).

    ``solver="ipot"``: :math:`T^\star` from IPOT (Sec. 3.1, Algorithm 1, after
    Xie et al.): :math:`G = e^{-C/\beta}`, :math:`T^{(0)} = \mathbf 1\mathbf 1^\top`,
    :math:`v = \mathbf 1/b`, then N times :math:`Q = G \odot T`,
    :math:`u = \mu \oslash Qv`, :math:`v = \nu \oslash Q^\top u`,
    :math:`T = \operatorname{diag}(u)\,Q\,\operatorname{diag}(v)`. The gradient is
    automatic differentiation through the N unrolled iterations — this project's
    choice (Sec. 3.1 says only that OT solvers are "easy to integrate … with deep
    learning toolboxes with automatic differentiation"); with ``detach_plan`` the
    plan is a constant and the gradient is the envelope-theorem one,
    :math:`\partial L/\partial C = T^\star`. Maps are flattened per sample (one
    point of Eq. (3) per image, C×H×W): also this project's reading.

    ``solver="remd"``: the relaxed EMD (Sec. 3.2, Eqs. (5)-(8)),
    :math:`\frac1b \max(\sum_i \min_j C_{ij}, \sum_j \min_i C_{ij})`.

    Args:
        feat_student: (B, ...) student features.
        feat_teacher: (B, ...) teacher features of the same flattened width.
        solver: ``"ipot"`` or ``"remd"``.
        beta: IPOT proximal step β (paper: 20).
        num_iter: IPOT iterations N (paper: 50).
        detach_plan: IPOT plan held constant (envelope gradient) instead of unrolled.
    """
    if solver not in SOLVERS:
        raise ValueError("solver must be one of {}, got {!r}".format(SOLVERS, solver))
    return _solve(_stage_cost(feat_student, feat_teacher), solver, beta, num_iter, detach_plan)


def otkd_loss(feats_student, feats_teacher, solver="ipot", beta=20.0, num_iter=50, detach_plan=False):
    r"""``Σ_l L_OT(X^(l), Y^(l))`` over the given stages: the OT term of Lohit & Jones 2022, Eq. (1), without α.

    Each stage's (B, B) cosine cost is computed from its own features; the L
    costs are stacked into one (L, B, B) problem batch solved by a single solver
    call (the IPOT iterations run once for all stages), and the per-stage values
    are summed in stage order. Stages of different batch sizes or dtypes are
    solved one by one. The result is that of :func:`ot_stage_loss` summed over stages.

    Args:
        feats_student: sequence of (B, ...) student stage features.
        feats_teacher: sequence of (B, ...) teacher stage features, each of its student feature's width.
        solver, beta, num_iter, detach_plan: as in :func:`ot_stage_loss`.
    """
    if solver not in SOLVERS:
        raise ValueError("solver must be one of {}, got {!r}".format(SOLVERS, solver))
    costs = [_stage_cost(f_s, f_t) for f_s, f_t in zip(feats_student, feats_teacher)]
    if len({(c.shape, c.dtype, c.device) for c in costs}) == 1:
        values = _solve(torch.stack(costs), solver, beta, num_iter, detach_plan).unbind(0)
    else:
        values = [_solve(c, solver, beta, num_iter, detach_plan) for c in costs]
    total = 0.0
    for value in values:
        total = total + value
    return total
