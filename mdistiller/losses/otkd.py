"""Optimal-transport feature loss of Lohit & Jones, "Model Compression Using Optimal Transport" (WACV 2022)."""
from ..ot import cosine_cost, ipot, relaxed_emd

__all__ = ["SOLVERS", "ot_stage_loss", "otkd_loss"]

SOLVERS = ("ipot", "remd")


def ot_stage_loss(feat_student, feat_teacher, solver="ipot", beta=20.0, num_iter=50, detach_plan=True):
    r"""OT cost between the batch's student and teacher features of one stage, under the cosine cost.

    .. math::
        L_{OT} = \sum_{ij} T^\star_{ij} C_{ij},\qquad C_{ij} = 1 - \frac{s_i^\top t_j}{\lVert s_i\rVert\,\lVert t_j\rVert}

    with uniform masses 1/B (Lohit & Jones 2022, Eqs. 2-3; rows are students,
    columns teachers). ``solver="ipot"``: :math:`T^\star` from IPOT (Sec. 3.1,
    Algorithm 1; ``beta`` = β, ``num_iter`` = N outer iterations, one Sinkhorn
    sweep each, :math:`T^{(1)} = 1 1^\top`), held constant when ``detach_plan``.
    ``solver="remd"``: the relaxed EMD :math:`\max(\mathrm{mean}_i \min_j C_{ij},
    \mathrm{mean}_j \min_i C_{ij})` (Sec. 3.2, Eqs. 7-8).

    Args:
        feat_student: (B, ...) student features (flattened per sample).
        feat_teacher: (B, ...) teacher features, already mapped to the student's shape.
        solver: ``"ipot"`` or ``"remd"``.
        beta: IPOT proximal step β.
        num_iter: IPOT outer iterations N.
        detach_plan: IPOT plan without gradient (else the iterations are unrolled).
    """
    if solver not in SOLVERS:
        raise ValueError("solver must be one of {}, got {!r}".format(SOLVERS, solver))
    cost = cosine_cost(feat_student.reshape(feat_student.shape[0], -1), feat_teacher.reshape(feat_teacher.shape[0], -1))
    if solver == "remd":
        return relaxed_emd(None, None, cost)
    return ipot(None, None, cost, beta=beta, num_iter=num_iter, detach_plan=detach_plan)


def otkd_loss(feats_student, feats_teacher, solver="ipot", beta=20.0, num_iter=50, detach_plan=True):
    r"""``Σ_l L_OT(s^(l), t^(l))`` over the selected stages (Lohit & Jones 2022, Eq. 1 without α).

    Args:
        feats_student: sequence of (B, ...) student stage features.
        feats_teacher: sequence of (B, ...) teacher stage features, each in the student's shape.
        solver, beta, num_iter, detach_plan: as in :func:`ot_stage_loss`.
    """
    total = 0.0
    for f_s, f_t in zip(feats_student, feats_teacher):
        total = total + ot_stage_loss(f_s, f_t, solver, beta, num_iter, detach_plan)
    return total
