from ..losses.nst import nst_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import at_least_fp32


@register_distiller("NST")
class NST(Distiller):
    """Neuron selectivity transfer: polynomial-kernel MMD between channel activation maps (Huang & Wang 2017).

    Loss dict (mdistiller's keys): ``loss_ce``, ``loss_kd`` =
    ``FEAT_WEIGHT · Σ_j MMD²(F_s^j, F_t^j)`` over ``feats[1:]`` with
    ``k(x, y) = (xᵀy)²`` on the L2-normalised H·W map of each channel.
    """

    DEFAULTS = {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 50.0}}
    SEARCH_SPACE = {"NST.LOSS.FEAT_WEIGHT": {"factor": 10.0}}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.ce_weight = cfg.NST.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.NST.LOSS.FEAT_WEIGHT

    def distill_losses(self, student, teacher, target, epoch, **batch):
        feats_s = [at_least_fp32(f) for f in student.feats["feats"][1:]]
        feats_t = [at_least_fp32(f) for f in teacher.feats["feats"][1:]]
        return {"loss_kd": self.feat_loss_weight * nst_loss(feats_s, feats_t)}
