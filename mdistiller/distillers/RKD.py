"""Relational knowledge distillation on the pooled features (Park et al. CVPR 2019), as in mdistiller."""
from ..losses.rkd import rkd_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import at_least_fp32


@register_distiller("RKD")
class RKD(Distiller):
    """Relational KD: distance- and angle-wise potentials of the pooled features (Park et al. CVPR 2019)."""

    DEFAULTS = {
        "DISTANCE_WEIGHT": 25,
        "ANGLE_WEIGHT": 50,
        "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 1.0},
        "PDIST": {"EPSILON": 1e-12, "SQUARED": False},
    }
    SEARCH_SPACE = {"RKD.DISTANCE_WEIGHT": {"factor": 10.0}, "RKD.ANGLE_WEIGHT": {"factor": 10.0}}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.ce_weight = cfg.RKD.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.RKD.LOSS.FEAT_WEIGHT
        self.distance_weight = cfg.RKD.DISTANCE_WEIGHT
        self.angle_weight = cfg.RKD.ANGLE_WEIGHT
        self.eps = cfg.RKD.PDIST.EPSILON
        self.squared = cfg.RKD.PDIST.SQUARED

    def distill_losses(self, student, teacher, target, epoch, **batch):
        loss = rkd_loss(
            at_least_fp32(student.feats["pooled_feat"]),
            at_least_fp32(teacher.feats["pooled_feat"]),
            self.squared,
            self.eps,
            self.distance_weight,
            self.angle_weight,
        )
        return {"loss_kd": self.feat_loss_weight * loss}
