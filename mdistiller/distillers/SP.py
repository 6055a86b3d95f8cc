"""Similarity-preserving distillation of the last feature map (Tung & Mori ICCV 2019), as in mdistiller."""
from ..losses.sp import sp_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import at_least_fp32


@register_distiller("SP")
class SP(Distiller):
    """Similarity-preserving KD: row-normalized batch Gram matrices of the last feature map (Tung & Mori ICCV 2019)."""

    DEFAULTS = {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 3000.0}}
    SEARCH_SPACE = {"SP.LOSS.FEAT_WEIGHT": {"factor": 10.0}}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.ce_weight = cfg.SP.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.SP.LOSS.FEAT_WEIGHT

    def distill_losses(self, student, teacher, target, epoch, **batch):
        loss = sp_loss(at_least_fp32(student.feats["feats"][-1]), at_least_fp32(teacher.feats["feats"][-1]))
        return {"loss_kd": self.feat_loss_weight * loss}
