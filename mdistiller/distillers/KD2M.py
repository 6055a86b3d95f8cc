"""KD²M: knowledge distillation through distribution matching (Montesuma, 2025, arXiv:2504.01757)."""
from ..losses.kd2m import COVARIANCES, DISTANCES, LABEL_COSTS, kd2m_distance
from ..registry import register_distiller
from ._base import Distiller
from ._common import linear_projector, parse_stage, probe_features, probe_input_size, stage_vectors


@register_distiller("KD2M")
class KD2M(Distiller):
    """Feature distribution matching (W2 empirical / class-conditional / joint, Gaussian W2, Gaussian KL).

    ``loss_kd = LAMBDA · D(P_S, P_T)`` (KD²M Eq. 1) between the batch's student
    and teacher feature vectors at ``FEATURE`` (``"pooled"`` or ``"feats<i>"``,
    maps global-average-pooled), ``D`` = ``DISTANCE``
    (:func:`mdistiller.losses.kd2m.kd2m_distance`). When the dimensions differ, a
    linear projector (state ``projector.*``) maps the student's vector to the
    teacher's dimension.
    """

    DEFAULTS = {
        "LOSS": {
            "CE_WEIGHT": 1.0,
            "LAMBDA": 1e-4,  # not in the paper's text; the reference code's default (--coef 1e-4)
        },
        "DISTANCE": "w2",  # "w2" | "cw2" | "jw2" | "gw2" | "cgw2" | "gkl"
        "FEATURE": "pooled",  # "pooled" (pooled_feat) | "feats<i>" ("feats2", "feats-1"): feats[i], GAP-ed to vectors
        "COVARIANCE": "diag",  # Gaussian variants: "diag" | "full" (Bures W2 / full KL)
        "BETA": 1.0,  # jw2: weight of the label cost
        "LABEL_COST": "sqeuclidean",  # jw2: "sqeuclidean" (softmax outputs) | "ce" (teacher-target cross-entropy)
        "JW2_NORMALIZE": True,  # jw2: feature cost / its detached max (reference code)
        "EPS": 1e-5,  # Gaussian variants: ridge added to the (biased) variances / covariances
    }

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
        self.feature = parse_stage(k.FEATURE, "KD2M.FEATURE")
        if self.distance not in DISTANCES:
            raise ValueError("KD2M.DISTANCE must be one of {}, got {!r}".format(DISTANCES, k.DISTANCE))
        if self.covariance not in COVARIANCES:
            raise ValueError("KD2M.COVARIANCE must be one of {}, got {!r}".format(COVARIANCES, k.COVARIANCE))
        if self.label_cost not in LABEL_COSTS:
            raise ValueError("KD2M.LABEL_COST must be one of {}, got {!r}".format(LABEL_COSTS, k.LABEL_COST))
        if self.eps < 0:
            raise ValueError("KD2M.EPS must be >= 0, got {}".format(self.eps))
        size = probe_input_size(cfg)
        s_dim = stage_vectors(probe_features(student, size), self.feature, "KD2M.FEATURE").shape[1]
        t_dim = stage_vectors(probe_features(teacher, size), self.feature, "KD2M.FEATURE").shape[1]
        self.projector = linear_projector(s_dim, t_dim)

    def distill_losses(self, student, teacher, target, epoch, **batch):
        feat_s = self.projector(stage_vectors(student.feats, self.feature, "KD2M.FEATURE").float())
        feat_t = stage_vectors(teacher.feats, self.feature, "KD2M.FEATURE").float()
        distance = kd2m_distance(
            self.distance, feat_s, feat_t, target, student.logits, teacher.logits, covariance=self.covariance,
            label_cost=self.label_cost, beta=self.beta, ridge=self.eps, jw2_normalize=self.jw2_normalize,
        )
        return {"loss_kd": self.kd_loss_weight * distance}
