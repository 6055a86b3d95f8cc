"""WCoRD's local (primal) term (Chen et al., "Wasserstein Contrastive Representation Distillation", CVPR 2021).

Only the abstract of the paper is available to this project: the form below
(cost, regulariser, iterations, detached plan) is this project's
reconstruction, documented in ``docs/methods.md (WCORD)``. The global (dual)
term is CRD's objective, :func:`mdistiller.losses.crd.crd_loss`.
"""
from ..ot import cosine_cost, sinkhorn_log

__all__ = ["wcord_local_loss"]


def wcord_local_loss(v_student, v_teacher, reg, num_iter):
    r"""Entropic OT cost between the batch's student and teacher embeddings.

    .. math::
        L_{local} = \sum_{ij} P^\varepsilon_{ij} C_{ij},\qquad C_{ij} = 1 - \cos(v^s_i, v^t_j),

    :math:`P^\varepsilon` the entropic plan between uniform masses 1/B after
    ``num_iter`` log-domain Sinkhorn iterations (no early stop), held constant
    (the gradient w.r.t. C is :math:`P^\varepsilon`). Chen et al. 2021, abstract
    ("primal form ... within a mini-batch"); the value equals
    ``ot.sinkhorn2(1/B, 1/B, C, reg, numItermax=num_iter, stopThr=0)``.

    Args:
        v_student: (B, d) student embeddings.
        v_teacher: (B, d) teacher embeddings.
        reg: ε, the entropic regulariser (``WCORD.SINKHORN.LAMBDA``).
        num_iter: number of Sinkhorn iterations.
    """
    cost = cosine_cost(v_student, v_teacher)
    return sinkhorn_log(None, None, cost, reg, num_iter=num_iter, tol=0, detach_plan=True)
