"""Feature-distribution distances of KD²M (Montesuma, "KD²M: An unifying framework for feature knowledge
distillation", 2025, arXiv:2504.01757; released code github.com/eddardd/kddm, ``src/utils.py``).

Every distance compares the batch's student features ``x`` (B, d) with the
teacher features ``y`` (B, d) of the same images (student i, teacher j — never a
network with itself); labels are the batch's ground-truth classes. Gaussians are
fitted by maximum likelihood (biased moments, KD²M Sec. 2) plus a ridge ``ridge``
on the variances / covariance diagonal; :func:`kd2m_distance` sets that ridge
relative to the teacher's feature scale (:func:`variance_floor`).
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
    "DISTANCES", "COVARIANCES", "CLASS_REDUCTIONS", "LABEL_COSTS",
    "empirical_w2", "class_conditional_w2", "label_cost_matrix", "joint_cost", "joint_w2",
    "batch_gaussian", "class_gaussians", "variance_floor", "active_units",
    "gaussian_w2", "class_conditional_gaussian_w2", "gaussian_kl",
    "kd2m_distance",
]

# "gw2" is the Gaussian W2 of Table 1's W2(G) row; the released command line's ``--distance gw2`` is
# Gromov-Wasserstein (feature_distillation.py:131), which the paper does not use and this project does not offer.
DISTANCES = ("w2", "cw2", "jw2", "gw2", "cgw2", "gkl")
COVARIANCES = ("diag", "full")
# Class-conditional terms (cw2, cgw2): "sum" over the classes present (the released code) or "mean" = the sum
# divided by the number of classes n_c (Eq. 3).
CLASS_REDUCTIONS = ("sum", "mean")
# JW2 label costs L(h(z_i), h(z_j)) of Eq. (4): the released code's two ("logit_sqeuclidean", its default,
# and "kl", its 'cce'), and two on the predicted distributions ("prob_sqeuclidean", "ce").
LABEL_COSTS = ("logit_sqeuclidean", "kl", "prob_sqeuclidean", "ce")


def empirical_w2(x, y):
    r"""W2(E): :math:`W_2^2(\hat P, \hat Q) = \min_{\gamma \in \Gamma} \sum_{ij} \gamma_{ij} \lVert x_i - y_j\rVert^2`.

    KD²M Eq. (2), between the uniform empirical measures of ``x`` (n, d) and
    ``y`` (m, d); exact OT (:func:`mdistiller.ot.emd`), plan held constant
    (the gradient of Eq. 2 by the envelope theorem, as the released code:
    ``ot.emd`` under ``no_grad``, then ``Σ γ ⊙ C``).
    """
    cost = pairwise_sqeuclidean(x, y)
    return emd(None, None, cost)


def class_conditional_w2(x, y, labels, num_classes=None):
    r"""CW2(E): :math:`\sum_c W_2^2(\hat P(Z|Y=c), \hat Q(Z|Y=c))` over the classes present in ``labels``, divided
    by ``num_classes`` when it is given.

    With ``num_classes`` = n_c, the number of classes of the task, KD²M Eq. (3)
    (a class absent from the batch has no samples and no term); without it, the
    released code's sum (``empirical_conditional_w2``, ``src/utils.py:198-211``),
    n_c times Eq. (3). One cost matrix for the batch; each class's problem is its
    diagonal block (solved on CPU); the plans are assembled block-diagonally and
    the value is ``Σ P ⊙ C``. A one-sample class contributes the squared distance
    between its two points.

    Args:
        x, y: (B, d) student and teacher features.
        labels: (B,) classes.
        num_classes: n_c of Eq. (3), or None for the released code's sum.
    """
    cost = pairwise_sqeuclidean(x, y)
    cost_cpu = cost.detach().double().cpu()
    labels_cpu = labels.detach().cpu()
    plan = torch.zeros_like(cost_cpu)
    for c in labels_cpu.unique():
        idx = (labels_cpu == c).nonzero().squeeze(1)
        block = cost_cpu[idx][:, idx]
        _, block_plan = emd(None, None, block, return_plan=True)
        plan[idx.unsqueeze(1), idx.unsqueeze(0)] = block_plan if num_classes is None else block_plan / num_classes
    return (plan.to(device=cost.device, dtype=cost.dtype) * cost).sum()


def label_cost_matrix(logits_x, logits_y, label_cost="logit_sqeuclidean"):
    r"""Pairwise label cost :math:`L_{ij} = L(h(z_i), h(z_j))` of KD²M Eq. (4), student i vs teacher j.

    With :math:`l` the logits and :math:`p = \mathrm{softmax}(l_x)`, :math:`q = \mathrm{softmax}(l_y)`:

    * ``"logit_sqeuclidean"``: :math:`\lVert l_{x,i} - l_{y,j}\rVert^2` (released code, default
      ``label_metric='sqeuclidean'``, ``src/utils.py:466-468``);
    * ``"kl"``: :math:`\mathrm{KL}(p_i \,\|\, q_j) = \sum_k p_{ik}(\log p_{ik} - \log q_{jk})`
      (released code, ``label_metric='cce'``, ``pairwise_kl_div_logits``, ``src/utils.py:340-376``);
    * ``"prob_sqeuclidean"``: :math:`\lVert p_i - q_j\rVert^2` (the Euclidean label distance of the
      paper's ref. [11] on predicted distributions: bounded by 2, invariant to a shift of the logits);
    * ``"ce"``: :math:`-\sum_k q_{jk}\log p_{ik}` (the cross-entropy of the paper's ref. [2], JDOT,
      with the teacher's prediction as the label).

    Args:
        logits_x, logits_y: (B, C) student and teacher logits.
        label_cost: one of :data:`LABEL_COSTS`.
    """
    if label_cost == "logit_sqeuclidean":
        return pairwise_sqeuclidean(logits_x, logits_y)
    log_p = F.log_softmax(logits_x, dim=1)
    log_q = F.log_softmax(logits_y, dim=1)
    if label_cost == "kl":
        p = log_p.exp()
        return (p * log_p).sum(1, keepdim=True) - p @ log_q.t()
    if label_cost == "prob_sqeuclidean":
        return pairwise_sqeuclidean(log_p.exp(), log_q.exp())
    if label_cost == "ce":
        return -log_p @ log_q.exp().t()
    raise ValueError("label_cost must be one of {}, got {!r}".format(LABEL_COSTS, label_cost))


def joint_cost(x, y, logits_x, logits_y, beta=1.0, label_cost="logit_sqeuclidean", normalize=True, feature_grad=True):
    r"""Ground cost of JW2(E): :math:`C_{ij} = \lVert x_i - y_j\rVert^2 / \max_{kl}\lVert x_k - y_l\rVert^2 + \beta\, L_{ij}`.

    KD²M Eq. (4), student i vs teacher j (the released code's feature term
    compares the student with itself, ``src/utils.py:464``; here it is the
    student against the teacher, as Eq. 4). The feature term is divided by its
    (detached) maximum when ``normalize`` (released code, ``src/utils.py:476-477``);
    the label term :math:`L` is :func:`label_cost_matrix`. ``feature_grad=False``
    detaches the whole feature term, as the released code does (it divides by
    the maximum inside ``torch.no_grad()``, lines 476-477): the features then
    only shape the plan and the gradient comes from the label term alone.

    Args:
        x, y: (B, d) student and teacher features.
        logits_x, logits_y: (B, C) student and teacher logits.
        beta: weight β of the label term (the released code: 1).
        label_cost: one of :data:`LABEL_COSTS`.
        normalize: divide the feature term by its detached maximum.
        feature_grad: False detaches the feature term (the released code's gradient).
    """
    label = label_cost_matrix(logits_x, logits_y, label_cost)
    cost = pairwise_sqeuclidean(x, y)
    if normalize:
        cost = cost / cost.detach().max().clamp_min(torch.finfo(cost.dtype).tiny)
    if not feature_grad:
        cost = cost.detach()
    return cost + beta * label


def joint_w2(x, y, logits_x, logits_y, beta=1.0, label_cost="logit_sqeuclidean", normalize=True, feature_grad=True):
    """JW2(E): exact OT (uniform masses, plan held constant) under :func:`joint_cost` (KD²M Eq. 4)."""
    return emd(None, None, joint_cost(x, y, logits_x, logits_y, beta, label_cost, normalize, feature_grad))


def batch_gaussian(x, diagonal=True, ridge=0.0):
    r"""Gaussian fitted to ``x`` (N, d): ``(μ, σ)`` (std vector) when ``diagonal``, else ``(μ, Σ)``.

    Biased moments :math:`\mu = \frac1N\sum_i x_i`, :math:`\Sigma = \frac1N\sum_i (x_i-\mu)(x_i-\mu)^\top + rI`
    (KD²M Sec. 2, maximum likelihood; the released code's ``std(correction=0)``), r = ``ridge``.
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


def variance_floor(y, eps):
    r"""The ridge :math:`r = \varepsilon\,\bar v_T`, :math:`\bar v_T = \frac1d\sum_k \mathrm{Var}_{batch}(y_{\cdot k})`.

    ``eps`` times the teacher's mean per-unit (biased) batch variance, detached:
    the same ridge for student and teacher, so the Gaussian distances stay
    invariant when both features are rescaled together, a one-sample class
    still contributes only its mean term, and no unit's precision exceeds
    :math:`1/(\varepsilon\bar v_T)`. 0 when ``eps`` is 0; at least the dtype's
    smallest normal number otherwise (a teacher constant over the batch).

    Args:
        y: (B, d) teacher features.
        eps: ε, relative to the teacher's feature scale.
    """
    if not eps:
        return 0.0
    scale = y.detach().var(0, unbiased=False).mean()
    return (eps * scale).clamp_min(torch.finfo(scale.dtype).tiny)


def active_units(y, floor):
    """(d,) bool: teacher units whose biased batch variance exceeds ``floor`` (the units KL(G) compares)."""
    return y.detach().var(0, unbiased=False) > floor


def _gaussian_w2(mu_a, m_a, mu_b, m_b, diagonal):
    if diagonal:
        return gaussian_w2_diag(mu_a, m_a, mu_b, m_b)
    return gaussian_w2_full(mu_a, m_a, mu_b, m_b)


def gaussian_w2(x, y, diagonal=True, ridge=0.0):
    r"""W2(G): :math:`\lVert\mu_x - \mu_y\rVert^2 + \mathcal B(\Sigma_x, \Sigma_y)` between the batch Gaussians.

    KD²M Eq. (5); diagonal: :math:`\lVert\mu_x-\mu_y\rVert^2 + \lVert\sigma_x-\sigma_y\rVert^2`
    (Sec. 2.2, the released code's ``gaussian_w2``, ``src/utils.py:98-107``).

    Args:
        x, y: (B, d) student and teacher features.
        diagonal: diagonal covariances (else full, Bures term).
        ridge: added to the variances / covariance diagonals.
    """
    return _gaussian_w2(*batch_gaussian(x, diagonal, ridge), *batch_gaussian(y, diagonal, ridge), diagonal)


def class_conditional_gaussian_w2(x, y, labels, diagonal=True, ridge=0.0, num_classes=None):
    r"""CW2(G): sum over the classes present in ``labels`` of :func:`gaussian_w2` between the class-conditional
    Gaussians, divided by ``num_classes`` when it is given.

    KD²M Eqs. (3) and (5): ``num_classes`` = n_c gives Eq. (3)'s 1/n_c; None the
    released code's sum (``gaussian_conditional_w2``, ``src/utils.py:301-314``).
    """
    mu_x, m_x = class_gaussians(x, labels, diagonal, ridge)
    mu_y, m_y = class_gaussians(y, labels, diagonal, ridge)
    total = _gaussian_w2(mu_x, m_x, mu_y, m_y, diagonal).sum()
    return total if num_classes is None else total / num_classes


def gaussian_kl(x, y, diagonal=True, ridge=0.0, units=None):
    r"""KL(G): :math:`\mathrm{KL}(\mathcal N(\mu_x, \Sigma_x)\,\|\,\mathcal N(\mu_y, \Sigma_y))` between the batch Gaussians.

    KD²M Eq. (6) (with its factor ½ also in the diagonal case, as Eq. 6 and the
    released code's ``__gaussian_kl``, ``src/utils.py:84-95``); student first.
    ``units`` restricts both Gaussians to those coordinates (their marginals).

    Args:
        x, y: (B, d) student and teacher features.
        diagonal: diagonal covariances (else full).
        ridge: added to the variances / covariance diagonals.
        units: optional (d,) bool mask of the coordinates compared.
    """
    if units is not None:
        x, y = x[:, units], y[:, units]
    mu_x, m_x = batch_gaussian(x, diagonal, ridge)
    mu_y, m_y = batch_gaussian(y, diagonal, ridge)
    if diagonal:
        return gaussian_kl_diag(mu_x, m_x, mu_y, m_y)
    return gaussian_kl_full(mu_x, m_x, mu_y, m_y)


def kd2m_distance(distance, x, y, labels=None, logits_x=None, logits_y=None, covariance="diag",
                  label_cost="logit_sqeuclidean", beta=1.0, var_floor=1e-3, jw2_normalize=True,
                  jw2_feature_grad=True, class_reduction="sum", num_classes=None):
    r"""D(P_S, P_T) of KD²M Eq. (1) for ``distance`` in :data:`DISTANCES`.

    Gaussian distances (``gw2``, ``cgw2``, ``gkl``) fit every Gaussian with the
    ridge :math:`r = \varepsilon\bar v_T` of :func:`variance_floor`
    (ε = ``var_floor``; the class-conditional fits share the batch's r). ``gkl``
    compares only the teacher units whose batch variance exceeds r
    (:func:`active_units`): on a unit the teacher leaves constant over the batch
    its Gaussian is degenerate and Eq. (6) is infinite for any student that is
    not constant there too.

    Args:
        distance: ``"w2"``, ``"cw2"``, ``"jw2"``, ``"gw2"``, ``"cgw2"`` or ``"gkl"``.
        x, y: (B, d) student and teacher features.
        labels: (B,) classes (``cw2``, ``cgw2``).
        logits_x, logits_y: (B, C) student and teacher logits (``jw2``).
        covariance: ``"diag"`` or ``"full"`` (Gaussian distances).
        label_cost, beta, jw2_normalize: as in :func:`joint_cost`; ``jw2_feature_grad`` is its ``feature_grad``.
        var_floor: ε of :func:`variance_floor`.
        class_reduction: ``"sum"`` (released code) or ``"mean"`` (Eq. 3: the sum / ``num_classes``) for
            ``cw2``, ``cgw2``.
        num_classes: n_c, needed by ``class_reduction="mean"``.
    """
    if covariance not in COVARIANCES:
        raise ValueError("covariance must be one of {}, got {!r}".format(COVARIANCES, covariance))
    if class_reduction not in CLASS_REDUCTIONS:
        raise ValueError("class_reduction must be one of {}, got {!r}".format(CLASS_REDUCTIONS, class_reduction))
    if class_reduction == "mean" and not num_classes:
        raise ValueError("class_reduction 'mean' divides by the number of classes: pass num_classes")
    n_c = num_classes if class_reduction == "mean" else None
    diagonal = covariance == "diag"
    if distance == "w2":
        return empirical_w2(x, y)
    if distance == "cw2":
        return class_conditional_w2(x, y, labels, n_c)
    if distance == "jw2":
        return joint_w2(x, y, logits_x, logits_y, beta, label_cost, jw2_normalize, jw2_feature_grad)
    if distance not in DISTANCES:
        raise ValueError("distance must be one of {}, got {!r}".format(DISTANCES, distance))
    ridge = variance_floor(y, var_floor)
    if distance == "gw2":
        return gaussian_w2(x, y, diagonal, ridge)
    if distance == "cgw2":
        return class_conditional_gaussian_w2(x, y, labels, diagonal, ridge, n_c)
    return gaussian_kl(x, y, diagonal, ridge, units=active_units(y, ridge))
