from ..losses.kdsvd import kdsvd_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import at_least_fp32


@register_distiller("KDSVD")
class KDSVD(Distiller):
    """KD-SVD: match RBF correlations of consecutive stages' truncated singular vectors (Lee, Kim & Song ECCV 2018).

    Loss dict (mdistiller's keys): ``loss_ce``, ``loss_kd`` =
    ``FEAT_WEIGHT · kdsvd_loss(feats[1:], K)``. Teacher and student stages
    must have equal widths (singular vectors in R^W): a pair such as
    resnet32x4 → resnet8x4 or wrn_40_2 → resnet8x4, not wrn_40_2 → ShuffleV1.
    """

    DEFAULTS = {"K": 1, "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 1.0}}
    SEARCH_SPACE = {"KDSVD.LOSS.FEAT_WEIGHT": {"factor": 10.0}}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.k = cfg.KDSVD.K
        self.ce_weight = cfg.KDSVD.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.KDSVD.LOSS.FEAT_WEIGHT

    def distill_losses(self, student, teacher, target, epoch, **batch):
        feats_s = [at_least_fp32(f) for f in student.feats["feats"][1:]]
        feats_t = [at_least_fp32(f) for f in teacher.feats["feats"][1:]]
        return {"loss_kd": self.feat_loss_weight * kdsvd_loss(feats_s, feats_t, self.k)}
