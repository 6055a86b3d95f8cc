"""Feature-distribution distances of KD²M (Montesuma, "KD²M: An unifying framework for feature knowledge
distillation", 2025, arXiv:2504.01757; reference code github.com/eddardd/kddm).

Every distance compares the batch's student features ``x`` (B, d) with the
teacher features ``y`` (B, d) of the same images; labels are the batch's
ground-truth classes. Gaussian moments are the biased (maximum-likelihood)
ones plus a ridge ``ridge`` on the variances / covariances.
"""
import torch
import torch.nn.functional as F

from ..ot import (
    emd,
    empirical_gaussian,
    gaussian_kl_diag,
    gaussian_kl_full,
    gaussian_w2_diag,
    gaussian_w2_full,
    pairwise_sqeuclidean,
)

__all__ = [
    "DISTANCES", "COVARIANCES", "LABEL_COSTS",
    "empirical_w2", "class_conditional_w2", "joint_cost", "joint_w2",
    "batch_gaussian", "class_gaussians", "gaussian_w2", "class_conditional_gaussian_w2", "gaussian_kl",
    "kd2m_distance",
]

DISTANCES = ("w2", "cw2", "jw2", "gw2", "cgw2", "gkl")
COVARIANCES = ("diag", "full")
LABEL_COSTS = ("sqeuclidean", "ce")


def empirical_w2(x, y):
    r"""W2(E): :math:`W_2^2(\hat P, \hat Q) = \min_{\gamma \in \Gamma} \sum_{ij} \gamma_{ij} \lVert x_i - y_j\rVert^2`.

    KD²M Eq. (2), between the uniform empirical measures of ``x`` (n, d) and
    ``y`` (m, d); exact OT (:func:`mdistiller.ot.emd`), plan held constant.
    """
    cost = pairwise_sqeuclidean(x, y)
    return emd(None, None, cost)


def class_conditional_w2(x, y, labels):
    r"""CW2(E): :math:`\frac1{n_c}\sum_c W_2^2(\hat P(Z|Y=c), \hat Q(Z|Y=c))` over the n_c classes present in ``labels``.

    KD²M Eq. (3). One cost matrix for the batch; each class's problem is its
    diagonal block (solved on CPU); the plans are assembled block-diagonally,
    weighted by 1/n_c, and the value is ``Σ P ⊙ C``.

    Args:
        x, y: (B, d) student and teacher features.
        labels: (B,) classes.
    """
    cost = pairwise_sqeuclidean(x, y)
    cost_cpu = cost.detach().double().cpu()
    labels_cpu = labels.detach().cpu()
    classes = labels_cpu.unique()
    plan = torch.zeros_like(cost_cpu)
    for c in classes:
        idx = (labels_cpu == c).nonzero().squeeze(1)
        block = cost_cpu[idx][:, idx]
        _, block_plan = emd(None, None, block, return_plan=True)
        plan[idx.unsqueeze(1), idx.unsqueeze(0)] = block_plan / len(classes)
    return (plan.to(device=cost.device, dtype=cost.dtype) * cost).sum()


def joint_cost(x, y, logits_x, logits_y, beta=1.0, label_cost="sqeuclidean", normalize=True):
    r"""Ground cost of JW2(E): :math:`C_{ij} = \lVert x_i - y_j\rVert^2 / \max(\cdot) + \beta\, L(p_i, q_j)`.

    KD²M Eq. (4), student i vs teacher j. The feature term is divided by its
    (detached) maximum when ``normalize``. ``label_cost``: ``"sqeuclidean"``
    :math:`\lVert p_i - q_j\rVert^2` between softmax outputs, or ``"ce"``
    :math:`-\sum_k q_{jk}\log p_{ik}`.

    Args:
        x, y: (B, d) student and teacher features.
        logits_x, logits_y: (B, C) student and teacher logits.
        beta: weight β of the label term.
        label_cost: ``"sqeuclidean"`` or ``"ce"``.
        normalize: divide the feature term by its detached maximum.
    """
    cost = pairwise_sqeuclidean(x, y)
    if normalize:
        cost = cost / cost.detach().max().clamp_min(torch.finfo(cost.dtype).tiny)
    if label_cost == "sqeuclidean":
        label = pairwise_sqeuclidean(F.softmax(logits_x, dim=1), F.softmax(logits_y, dim=1))
    elif label_cost == "ce":
        label = -F.log_softmax(logits_x, dim=1) @ F.softmax(logits_y, dim=1).t()
    else:
        raise ValueError("label_cost must be one of {}, got {!r}".format(LABEL_COSTS, label_cost))
    return cost + beta * label


def joint_w2(x, y, logits_x, logits_y, beta=1.0, label_cost="sqeuclidean", normalize=True):
    """JW2(E): exact OT (uniform masses, plan held constant) under :func:`joint_cost` (KD²M Eq. 4)."""
    return emd(None, None, joint_cost(x, y, logits_x, logits_y, beta, label_cost, normalize))


def batch_gaussian(x, diagonal=True, ridge=0.0):
    r"""Gaussian fitted to ``x`` (N, d): ``(μ, σ)`` (std vector) when ``diagonal``, else ``(μ, Σ)``.

    Biased moments :math:`\mu = \frac1N\sum_i x_i`, :math:`\Sigma = \frac1N\sum_i (x_i-\mu)(x_i-\mu)^\top + rI`
    (KD²M Sec. 2, maximum likelihood), r = ``ridge``.
    """
    mean, second = empirical_gaussian(x, diagonal=diagonal, ridge=ridge)
    return (mean, second.sqrt()) if diagonal else (mean, second)


def class_gaussians(x, labels, diagonal=True, ridge=0.0):
    """Per-class :func:`batch_gaussian` for the classes present in ``labels``, stacked: (K, d) and (K, d) or (K, d, d).

    Classes in ascending order (``labels.unique()``).
    """
    classes, inverse, counts = labels.unique(return_inverse=True, return_counts=True)
    if not diagonal:
        moments = [empirical_gaussian(x[labels == c], diagonal=False, ridge=ridge) for c in classes]
        return torch.stack([m for m, _ in moments]), torch.stack([s for _, s in moments])
    weights = F.one_hot(inverse, len(classes)).to(x.dtype).t() / counts.unsqueeze(1).to(x.dtype)
    mean = weights @ x
    var = weights @ (x - mean[inverse]).pow(2) + ridge
    return mean, var.sqrt()


def _gaussian_w2(mu_a, m_a, mu_b, m_b, diagonal):
    if diagonal:
        return gaussian_w2_diag(mu_a, m_a, mu_b, m_b)
    return gaussian_w2_full(mu_a, m_a, mu_b, m_b)


def gaussian_w2(x, y, diagonal=True, ridge=0.0):
    r"""W2(G): :math:`\lVert\mu_x - \mu_y\rVert^2 + \mathcal B(\Sigma_x, \Sigma_y)` between the batch Gaussians.

    KD²M Eq. (5); diagonal: :math:`\lVert\mu_x-\mu_y\rVert^2 + \lVert\sigma_x-\sigma_y\rVert^2`.

    Args:
        x, y: (B, d) student and teacher features.
        diagonal: diagonal covariances (else full, Bures term).
        ridge: added to the variances / covariance diagonals.
    """
    return _gaussian_w2(*batch_gaussian(x, diagonal, ridge), *batch_gaussian(y, diagonal, ridge), diagonal)


def class_conditional_gaussian_w2(x, y, labels, diagonal=True, ridge=0.0):
    r"""CW2(G): mean over the classes present in ``labels`` of :func:`gaussian_w2` between the class-conditional Gaussians.

    KD²M Eqs. (3) and (5).
    """
    mu_x, m_x = class_gaussians(x, labels, diagonal, ridge)
    mu_y, m_y = class_gaussians(y, labels, diagonal, ridge)
    return _gaussian_w2(mu_x, m_x, mu_y, m_y, diagonal).mean()


def gaussian_kl(x, y, diagonal=True, ridge=0.0):
    r"""KL(G): :math:`\mathrm{KL}(\mathcal N(\mu_x, \Sigma_x)\,\|\,\mathcal N(\mu_y, \Sigma_y))` between the batch Gaussians.

    KD²M Eq. (6) (with its factor ½ also in the diagonal case); student first.

    Args:
        x, y: (B, d) student and teacher features.
        diagonal: diagonal covariances (else full).
        ridge: added to the variances / covariance diagonals.
    """
    mu_x, m_x = batch_gaussian(x, diagonal, ridge)
    mu_y, m_y = batch_gaussian(y, diagonal, ridge)
    if diagonal:
        return gaussian_kl_diag(mu_x, m_x, mu_y, m_y)
    return gaussian_kl_full(mu_x, m_x, mu_y, m_y)


def kd2m_distance(distance, x, y, labels=None, logits_x=None, logits_y=None, covariance="diag",
                  label_cost="sqeuclidean", beta=1.0, ridge=0.0, jw2_normalize=True):
    """D(P_S, P_T) of KD²M Eq. (1) for ``distance`` in :data:`DISTANCES`.

    Args:
        distance: ``"w2"``, ``"cw2"``, ``"jw2"``, ``"gw2"``, ``"cgw2"`` or ``"gkl"``.
        x, y: (B, d) student and teacher features.
        labels: (B,) classes (``cw2``, ``cgw2``).
        logits_x, logits_y: (B, C) logits (``jw2``).
        covariance: ``"diag"`` or ``"full"`` (Gaussian distances).
        label_cost, beta, jw2_normalize: as in :func:`joint_cost`.
        ridge: as in :func:`batch_gaussian`.
    """
    if covariance not in COVARIANCES:
        raise ValueError("covariance must be one of {}, got {!r}".format(COVARIANCES, covariance))
    diagonal = covariance == "diag"
    if distance == "w2":
        return empirical_w2(x, y)
    if distance == "cw2":
        return class_conditional_w2(x, y, labels)
    if distance == "jw2":
        return joint_w2(x, y, logits_x, logits_y, beta, label_cost, jw2_normalize)
    if distance == "gw2":
        return gaussian_w2(x, y, diagonal, ridge)
    if distance == "cgw2":
        return class_conditional_gaussian_w2(x, y, labels, diagonal, ridge)
    if distance == "gkl":
        return gaussian_kl(x, y, diagonal, ridge)
    raise ValueError("distance must be one of {}, got {!r}".format(DISTANCES, distance))
