"""KD²M: knowledge distillation through distribution matching (Montesuma, 2025, arXiv:2504.01757)."""
import torch
import torch.nn as nn

from ..losses.kd2m import CLASS_REDUCTIONS, COVARIANCES, DISTANCES, LABEL_COSTS, kd2m_distance
from ..registry import register_distiller
from ._base import Distiller
from ._common import at_least_fp32, parse_stage, probe_features, probe_input_size, stage_vectors

PROJECTORS = ("orthogonal", "learned", "none")


class FixedProjection(nn.Module):
    r"""``f ↦ f Pᵀ`` with a fixed random semi-orthogonal ``P`` (dim_out × dim_in, :math:`PP^\top = I`), never trained.

    ``P`` = the transposed Q factor of a Gaussian (dim_in × dim_out) matrix
    (QR), drawn from torch's RNG at construction and kept as the buffer
    ``weight`` (saved with the checkpoint). It maps the wider feature onto a
    random dim_out-dimensional subspace isometrically (distances within the
    subspace are kept), so a distance between projected distributions is a
    random marginal of the full one and cannot be lowered by the projection.
    """

    def __init__(self, dim_in, dim_out):
        super().__init__()
        if dim_out > dim_in:
            raise ValueError("FixedProjection maps a wider feature to a narrower one, got {} -> {}".format(dim_in, dim_out))
        q, _ = torch.linalg.qr(torch.randn(dim_in, dim_out))
        self.register_buffer("weight", q.t().contiguous())

    def forward(self, x):
        return x @ self.weight.t().to(x.dtype)


@register_distiller("KD2M")
class KD2M(Distiller):
    """Feature distribution matching (W2 empirical / class-conditional / joint, Gaussian W2, Gaussian KL).

    ``loss = CE_WEIGHT · CE + LAMBDA · D(g_S#P, g_T#P)`` (KD²M Eq. 1, Algorithm 1)
    between the batch's student and teacher feature vectors at ``FEATURE``
    (``"pooled"``: the pooled penultimate feature, as the paper's code; or
    ``"feats<i>"``, maps global-average-pooled); ``D`` = ``DISTANCE``
    (:func:`mdistiller.losses.kd2m.kd2m_distance`). Equal widths (the paper's
    ResNet34 → ResNet18, 512 → 512) are compared as they are. Different widths
    need ``PROJECTOR``: ``"orthogonal"`` (default) maps the wider feature to the
    narrower width with a fixed random semi-orthogonal matrix
    (:class:`FixedProjection`, no parameters); ``"learned"`` maps the student to
    the teacher's width with a trained linear layer (state ``projector.*``),
    which can lower every distance without the student's features changing;
    ``"none"`` refuses different widths.
    """

    DEFAULTS = {
        "LOSS": {
            "CE_WEIGHT": 1.0,
            "LAMBDA": 1e-4,  # not in the paper's text; the released code's default (--coef 1e-4) for every distance
        },
        # "w2" | "cw2" | "jw2" | "gw2" | "cgw2" | "gkl"  (Table 1: W2/CW2/JW2 (E), W2/CW2 (G), KL (G)). "gw2" is the
        # Gaussian W2 (W2(G)); the released command line's "--distance gw2" is Gromov-Wasserstein, not offered here.
        "DISTANCE": "w2",
        # cw2/cgw2: "sum" over the classes in the batch (the released code, for which LAMBDA 1e-4 is the default) |
        # "mean": the sum / number of classes n_c (Eq. 3); "mean" with LAMBDA·n_c is the same loss as "sum".
        "CLASS_REDUCTION": "sum",
        "FEATURE": "pooled",  # "pooled" (pooled_feat) | "feats<i>" ("feats2", "feats-1"): feats[i], GAP-ed to vectors
        "PROJECTOR": "orthogonal",  # different widths only: "orthogonal" (fixed) | "learned" (trainable linear) | "none"
        "COVARIANCE": "diag",  # Gaussian variants: "diag" (the paper's code) | "full" (Bures W2 / full KL)
        "BETA": 1.0,  # jw2: weight β of the label cost (Eq. 4; the released code: 1)
        "LABEL_COST": "logit_sqeuclidean",  # jw2: "logit_sqeuclidean" | "kl" (released code) | "prob_sqeuclidean" | "ce"
        "JW2_NORMALIZE": True,  # jw2: feature cost / its detached max (released code)
        # jw2: True = the gradient of Eq. (4) through the feature cost too; False = the feature cost detached, the
        # released code's gradient (it normalises inside torch.no_grad(), so its features only shape the plan)
        "JW2_FEATURE_GRAD": True,
        "VAR_FLOOR": 1e-3,  # Gaussian variants: ε, ridge ε·(teacher's mean batch variance); gkl skips units below it
    }
    SEARCH_SPACE = {"KD2M.LOSS.LAMBDA": {"factor": 10.0}}

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
        self.var_floor = k.VAR_FLOOR
        self.jw2_normalize = k.JW2_NORMALIZE
        self.jw2_feature_grad = bool(k.JW2_FEATURE_GRAD)
        self.class_reduction = str(k.CLASS_REDUCTION).lower()
        self.feature = parse_stage(k.FEATURE, "KD2M.FEATURE")
        projector = str(k.PROJECTOR).lower()
        if self.distance not in DISTANCES:
            raise ValueError(
                "KD2M.DISTANCE must be one of {} (gw2: Gaussian W2, Table 1's W2(G); the released code's "
                "--distance gw2, Gromov-Wasserstein, is not offered), got {!r}".format(DISTANCES, k.DISTANCE)
            )
        if self.covariance not in COVARIANCES:
            raise ValueError("KD2M.COVARIANCE must be one of {}, got {!r}".format(COVARIANCES, k.COVARIANCE))
        if self.class_reduction not in CLASS_REDUCTIONS:
            raise ValueError(
                "KD2M.CLASS_REDUCTION must be one of {}, got {!r}".format(CLASS_REDUCTIONS, k.CLASS_REDUCTION)
            )
        if self.label_cost not in LABEL_COSTS:
            raise ValueError("KD2M.LABEL_COST must be one of {}, got {!r}".format(LABEL_COSTS, k.LABEL_COST))
        if projector not in PROJECTORS:
            raise ValueError("KD2M.PROJECTOR must be one of {}, got {!r}".format(PROJECTORS, k.PROJECTOR))
        if self.var_floor < 0:
            raise ValueError("KD2M.VAR_FLOOR must be >= 0, got {}".format(self.var_floor))
        size = probe_input_size(cfg)
        s_dim = stage_vectors(probe_features(student, size), self.feature, "KD2M.FEATURE").shape[1]
        t_dim = stage_vectors(probe_features(teacher, size), self.feature, "KD2M.FEATURE").shape[1]
        self.projector, self.teacher_projector = nn.Identity(), nn.Identity()
        if s_dim == t_dim:
            pass
        elif projector == "none":
            raise ValueError(
                "KD2M.PROJECTOR none: the student's feature has {} dimensions and the teacher's {}; "
                "set KD2M.PROJECTOR orthogonal (fixed) or learned".format(s_dim, t_dim)
            )
        elif projector == "learned":
            self.projector = nn.Linear(s_dim, t_dim)
        elif s_dim > t_dim:
            self.projector = FixedProjection(s_dim, t_dim)
        else:
            self.teacher_projector = FixedProjection(t_dim, s_dim)

    def distill_losses(self, student, teacher, target, epoch, **batch):
        feat_s = self.projector(at_least_fp32(stage_vectors(student.feats, self.feature, "KD2M.FEATURE")))
        feat_t = self.teacher_projector(at_least_fp32(stage_vectors(teacher.feats, self.feature, "KD2M.FEATURE")))
        distance = kd2m_distance(
            self.distance, feat_s, feat_t, target, student.logits, teacher.logits, covariance=self.covariance,
            label_cost=self.label_cost, beta=self.beta, var_floor=self.var_floor, jw2_normalize=self.jw2_normalize,
            jw2_feature_grad=self.jw2_feature_grad, class_reduction=self.class_reduction,
            num_classes=student.logits.shape[1],
        )
        return {"loss_kd": self.kd_loss_weight * distance}
