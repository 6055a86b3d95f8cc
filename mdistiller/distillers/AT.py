from ..losses.at import at_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import at_least_fp32


@register_distiller("AT")
class AT(Distiller):
    """Attention transfer: match L2-normalised spatial attention maps of every stage (Zagoruyko & Komodakis ICLR 2017).

    Loss dict (mdistiller's keys): ``loss_ce``, ``loss_kd`` =
    ``FEAT_WEIGHT · Σ_j mean (q_s^j − q_t^j)²`` over ``feats[1:]`` (the stages
    after the stem), ``q = normalize(vec(mean_c A^P))``.
    """

    DEFAULTS = {"P": 2, "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 1000.0}}
    SEARCH_SPACE = {"AT.LOSS.FEAT_WEIGHT": {"factor": 10.0}}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.p = cfg.AT.P
        self.ce_weight = cfg.AT.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.AT.LOSS.FEAT_WEIGHT

    def distill_losses(self, student, teacher, target, epoch, **batch):
        feats_s = [at_least_fp32(f) for f in student.feats["feats"][1:]]
        feats_t = [at_least_fp32(f) for f in teacher.feats["feats"][1:]]
        return {"loss_kd": self.feat_loss_weight * at_loss(feats_s, feats_t, self.p)}
