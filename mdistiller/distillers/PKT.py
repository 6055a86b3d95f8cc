from ..losses.pkt import pkt_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import at_least_fp32


@register_distiller("PKT")
class PKT(Distiller):
    """Probabilistic knowledge transfer: KL between cosine-kernel affinity distributions (Passalis & Tefas ECCV 2018).

    Loss dict (mdistiller's keys): ``loss_ce``, ``loss_kd`` =
    ``FEAT_WEIGHT · mean_{i,j} P_t log((P_t + ε)/(P_s + ε))`` on ``pooled_feat``.
    """

    DEFAULTS = {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 30000.0}}
    SEARCH_SPACE = {"PKT.LOSS.FEAT_WEIGHT": {"factor": 10.0}}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.ce_weight = cfg.PKT.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.PKT.LOSS.FEAT_WEIGHT

    def distill_losses(self, student, teacher, target, epoch, **batch):
        loss = pkt_loss(at_least_fp32(student.feats["pooled_feat"]), at_least_fp32(teacher.feats["pooled_feat"]))
        return {"loss_kd": self.feat_loss_weight * loss}
