"""KD²M: Knowledge Distillation through Distribution Matching.

Montesuma, "KD²M: An unifying framework for feature knowledge distillation"
(GSI 2025, arXiv:2504.01757; reference code github.com/eddardd/kddm). The
student is trained with ``CE_WEIGHT · CE + LAMBDA · D(P_S, P_T)``, ``D`` a
distance between the distributions of the batch's student and teacher features
(``KD2M.DISTANCE``):

* ``w2``   — empirical 2-Wasserstein: exact OT (``mdistiller.ot.emd``) between
  the uniform empirical measures of the batch, squared-Euclidean cost,
  value ``Σ P* ⊙ C`` (the paper's W2(E));
* ``cw2``  — class-conditional: the mean, over the classes present in the batch
  (ground-truth labels), of ``w2`` between that class's student and teacher
  features (CW2(E));
* ``jw2``  — joint: ``w2`` with cost ``C_ij = C^feat_ij + BETA · C^label_ij``
  between (student feature, student prediction)_i and (teacher feature,
  teacher prediction)_j (JW2(E)); ``LABEL_COST`` ``sqeuclidean`` (squared
  distance between softmax outputs) or ``ce`` (``−Σ_k p^T_jk log p^S_ik``);
* ``gw2``  — Gaussians fitted to the batch, closed-form W2 (W2(G)):
  ``COVARIANCE`` ``diag`` (``‖Δμ‖² + ‖Δσ‖²``) or ``full`` (Bures);
* ``cgw2`` — class-conditional ``gw2``, mean over the classes present (CW2(G));
* ``gkl``  — ``KL(N_S ‖ N_T)`` between the batch Gaussians (KL(G)), diag or full.

Choices where the paper is silent (or where this file departs from the code):

* Features: ``FEATURE`` ``"pooled"`` (the penultimate ``pooled_feat``, as the
  reference code's ``fc = Identity`` ResNets) or ``"feats<i>"`` (``"feats2"``,
  ``"feats-1"``): stage ``feats[i]`` of both networks, global-average-pooled
  to vectors (in the CIFAR ResNets ``feats[0]`` is the stem). A bare integer
  cannot be used in a config: yacs keeps the default's type (str) and
  re-parses ``"2"`` into an int.
  When the student's and teacher's dimensions differ, a linear projector
  (``nn.Linear``, with bias, trained with the student) maps the student's
  feature to the teacher's dimension; no projector when they are equal.
* Class-conditional terms are *averaged* over the classes present (the
  reference code sums them), so ``LAMBDA`` does not scale with the number of
  classes in a batch.
* A class with one sample in the batch: ``cw2`` is then the squared distance
  between the two points (OT between two Diracs). The Gaussian variants fit
  *biased* (maximum-likelihood, ``1/N``) moments, as the reference code
  (``std(correction=0)``) — zero covariance for a single sample — and always
  add the ridge ``EPS`` to the variances (``diag``) / ``EPS·I`` to the
  covariances (``full``): for one sample on both sides the covariance terms of
  W2 cancel exactly (``(√EPS − √EPS)² = 0``), leaving the mean term only — the
  same value as ``cw2``. The ridge also keeps ``gkl`` finite and the Bures square
  root differentiable when the batch is smaller than the feature dimension
  (then the full-covariance variants are ill-conditioned: prefer ``diag``).
* ``jw2``: the feature cost is student-vs-teacher (the reference code compares
  the student's features with themselves); with ``JW2_NORMALIZE`` it is divided
  by its (detached) maximum, as the reference code does, which makes ``BETA``
  independent of the features' scale.
* ``gkl`` direction KL(student ‖ teacher), as the reference code.
* ``LAMBDA`` default 1e-4: the paper does not state it in the text we could
  access; 1e-4 is the reference code's default (``feature_distillation.py
  --coef``, with ``coef_clf = 1``).

Loss dict ``{"loss_ce", "loss_kd"}``; all loss math (and the projector) in fp32.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ot.emd import emd, pairwise_sqeuclidean
from ..ot.gaussian import empirical_gaussian, gaussian_kl_diag, gaussian_kl_full, gaussian_w2_diag, gaussian_w2_full
from ._base import Distiller, fp32_losses
from ._common import probe_features, probe_input_size
from ..registry import register_distiller

DISTANCES = ("w2", "cw2", "jw2", "gw2", "cgw2", "gkl")
COVARIANCES = ("diag", "full")
LABEL_COSTS = ("sqeuclidean", "ce")


def parse_feature(value):
    """``"pooled"`` -> ``"pooled"``; ``"feats<i>"`` (or an int ``i``) -> the ``feats`` index ``i``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "pooled":
        return "pooled"
    if text.startswith("feats"):
        try:
            return int(text[len("feats"):])
        except ValueError:
            pass
    raise ValueError("KD2M.FEATURE must be 'pooled' or 'feats<i>' (e.g. 'feats2', 'feats-1'), got {!r}".format(value))


def select_feature(features, which):
    """The batch's feature vectors (B, d): ``pooled_feat`` or ``feats[which]`` global-average-pooled."""
    if which == "pooled":
        feat = features["pooled_feat"]
    else:
        feats = features["feats"]
        if not -len(feats) <= which < len(feats):
            raise ValueError("KD2M.FEATURE {} is out of range for a model with {} feats".format(which, len(feats)))
        feat = feats[which]
        if feat.dim() == 4:
            feat = F.adaptive_avg_pool2d(feat, 1)
    return feat.reshape(feat.shape[0], -1)


def empirical_w2(x, y):
    """W2² between the uniform empirical measures of ``x`` (n, d) and ``y`` (m, d): exact OT, ``Σ P* ⊙ C``."""
    cost = pairwise_sqeuclidean(x, y)
    return emd(None, None, cost)


def class_conditional_w2(x, y, labels):
    """Mean over the classes present in ``labels`` of W2² between ``x[labels == c]`` and ``y[labels == c]``.

    One cost matrix for the batch; each class's OT problem is its diagonal
    block (solved on CPU from one transfer); the plans are assembled
    block-diagonally, weighted by 1/#classes, and the value is ``Σ P ⊙ C``.
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


def _class_moments(x, labels, diagonal, ridge):
    """Per-class biased mean and variance (diag: (K, d), vectorised) or covariance (full: (K, d, d))."""
    classes, inverse, counts = labels.unique(return_inverse=True, return_counts=True)
    if not diagonal:
        moments = [empirical_gaussian(x[labels == c], diagonal=False, ridge=ridge) for c in classes]
        return torch.stack([m for m, _ in moments]), torch.stack([s for _, s in moments])
    weights = F.one_hot(inverse, len(classes)).to(x.dtype).t() / counts.unsqueeze(1).to(x.dtype)
    mean = weights @ x
    var = weights @ (x - mean[inverse]).pow(2) + ridge
    return mean, var


@register_distiller("KD2M")
class KD2M(Distiller):
    """Feature distribution matching (W2 empirical / class-conditional / joint, Gaussian W2, Gaussian KL)."""

    # KD2M.DISTANCE -> the name used in the paper's Table 1 (E: empirical, G: Gaussian)
    TABLE_NAMES = {"w2": "W2(E)", "cw2": "CW2(E)", "jw2": "JW2(E)", "gw2": "W2(G)", "cgw2": "CW2(G)", "gkl": "KL(G)"}

    @classmethod
    def label(cls, cfg):
        distance = str(cfg.KD2M.DISTANCE).lower()
        return "KD2M-" + cls.TABLE_NAMES.get(distance, distance.upper())

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        k = cfg.KD2M
        self.ce_weight = k.LOSS.CE_WEIGHT
        self.kd_loss_weight = k.LOSS.LAMBDA
        self.distance = str(k.DISTANCE).lower()
        self.covariance = str(k.COVARIANCE).lower()
        self.label_cost = str(k.LABEL_COST).lower()
        self.beta = k.BETA
        self.eps = k.EPS
        self.jw2_normalize = k.JW2_NORMALIZE
        self.feature = parse_feature(k.FEATURE)
        if self.distance not in DISTANCES:
            raise ValueError("KD2M.DISTANCE must be one of {}, got {!r}".format(DISTANCES, k.DISTANCE))
        if self.covariance not in COVARIANCES:
            raise ValueError("KD2M.COVARIANCE must be one of {}, got {!r}".format(COVARIANCES, k.COVARIANCE))
        if self.label_cost not in LABEL_COSTS:
            raise ValueError("KD2M.LABEL_COST must be one of {}, got {!r}".format(LABEL_COSTS, k.LABEL_COST))
        if self.eps < 0:
            raise ValueError("KD2M.EPS must be >= 0, got {}".format(self.eps))
        size = probe_input_size(cfg)
        s_dim = select_feature(probe_features(student, size), self.feature).shape[1]
        t_dim = select_feature(probe_features(teacher, size), self.feature).shape[1]
        self.projector = nn.Linear(s_dim, t_dim) if s_dim != t_dim else nn.Identity()

    # -- distances -----------------------------------------------------------------------------

    def _gaussian(self, x, diagonal):
        """Biased batch moments plus the ridge EPS: (mean, std) for diag, (mean, cov) for full."""
        mean, second = empirical_gaussian(x, diagonal=diagonal, ridge=self.eps)
        return (mean, second.sqrt()) if diagonal else (mean, second)

    def _gaussian_w2(self, mu_s, m_s, mu_t, m_t, diagonal):
        if diagonal:
            return gaussian_w2_diag(mu_s, m_s, mu_t, m_t)
        return gaussian_w2_full(mu_s, m_s, mu_t, m_t)

    def joint_cost(self, feat_s, feat_t, logits_s, logits_t):
        """``C_ij = C^feat_ij (/ max, detached) + BETA · C^label_ij``, student i vs teacher j."""
        cost = pairwise_sqeuclidean(feat_s, feat_t)
        if self.jw2_normalize:
            cost = cost / cost.detach().max().clamp_min(torch.finfo(cost.dtype).tiny)
        if self.label_cost == "sqeuclidean":
            label = pairwise_sqeuclidean(F.softmax(logits_s, dim=1), F.softmax(logits_t, dim=1))
        else:
            label = -F.log_softmax(logits_s, dim=1) @ F.softmax(logits_t, dim=1).t()
        return cost + self.beta * label

    def distribution_distance(self, feat_s, feat_t, target, logits_s, logits_t):
        """D(P_S, P_T) for ``KD2M.DISTANCE`` on (already projected) fp32 features (B, d)."""
        diagonal = self.covariance == "diag"
        if self.distance == "w2":
            return empirical_w2(feat_s, feat_t)
        if self.distance == "cw2":
            return class_conditional_w2(feat_s, feat_t, target)
        if self.distance == "jw2":
            cost = self.joint_cost(feat_s, feat_t, logits_s, logits_t)
            return emd(None, None, cost)
        if self.distance == "gw2":
            return self._gaussian_w2(*self._gaussian(feat_s, diagonal), *self._gaussian(feat_t, diagonal), diagonal)
        if self.distance == "cgw2":
            mu_s, m_s = _class_moments(feat_s, target, diagonal, self.eps)
            mu_t, m_t = _class_moments(feat_t, target, diagonal, self.eps)
            if diagonal:
                m_s, m_t = m_s.sqrt(), m_t.sqrt()
            return self._gaussian_w2(mu_s, m_s, mu_t, m_t, diagonal).mean()
        # gkl
        mu_s, m_s = self._gaussian(feat_s, diagonal)
        mu_t, m_t = self._gaussian(feat_t, diagonal)
        if diagonal:
            return gaussian_kl_diag(mu_s, m_s, mu_t, m_t)
        return gaussian_kl_full(mu_s, m_s, mu_t, m_t)

    # -- training ------------------------------------------------------------------------------

    def distill_losses(self, student, teacher, target, epoch, **batch):
        feat_s = self.projector(select_feature(student.feats, self.feature).float())
        feat_t = select_feature(teacher.feats, self.feature).float()
        distance = self.distribution_distance(feat_s, feat_t, target, student.logits, teacher.logits)
        return {"loss_kd": self.kd_loss_weight * distance}
