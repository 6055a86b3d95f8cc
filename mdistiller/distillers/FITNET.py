from ..losses.fitnet import hint_loss
from ..registry import register_distiller
from ._base import Distiller
from ._detection import RCNNDistiller, fpn_projectors
from ._common import ConvReg, at_least_fp32, probe_features, probe_input_size


@register_distiller("FITNET")
class FitNet(Distiller):
    """FitNets: MSE between a regressed student stage and the teacher's (Romero et al. ICLR 2015).

    Loss dict (mdistiller's keys): ``loss_ce``, ``loss_kd`` =
    ``FEAT_WEIGHT · mean((ConvReg(f_s) − f_t)²)`` on ``feats[HINT_LAYER]``,
    trained jointly with the student (one stage, as mdistiller does). The
    regressor ``conv_reg`` (conv → BN → ReLU) is built from the feature shapes of
    one eval-mode dry forward at ``probe_input_size(cfg, FITNET.INPUT_SIZE)``.
    """

    DEFAULTS = {"HINT_LAYER": 2, "INPUT_SIZE": (32, 32), "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 100.0}}
    SEARCH_SPACE = {"FITNET.LOSS.FEAT_WEIGHT": {"factor": 10.0}}

    @classmethod
    def label(cls, cfg):
        return "FitNet"

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.ce_weight = cfg.FITNET.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.FITNET.LOSS.FEAT_WEIGHT
        self.hint_layer = int(cfg.FITNET.HINT_LAYER)
        input_size = probe_input_size(cfg, cfg.FITNET.INPUT_SIZE)
        feats_s = probe_features(student, input_size)["feats"]
        feats_t = probe_features(teacher, input_size)["feats"]
        depth = min(len(feats_s), len(feats_t))
        if not -depth <= self.hint_layer < depth:
            raise ValueError(
                "FITNET.HINT_LAYER {} is out of range: the student has {} and the teacher {} `feats` entries".format(
                    self.hint_layer, len(feats_s), len(feats_t)
                )
            )
        self.conv_reg = ConvReg(feats_s[self.hint_layer].shape, feats_t[self.hint_layer].shape)

    def distill_losses(self, student, teacher, target, epoch, **batch):
        f_s = self.conv_reg(at_least_fp32(student.feats["feats"][self.hint_layer]))
        f_t = at_least_fp32(teacher.feats["feats"][self.hint_layer])
        return {"loss_kd": self.feat_loss_weight * hint_loss(f_s, f_t)}


@register_distiller("FITNET", task="detection")
class DetectionFitNet(RCNNDistiller, FitNet):
    """FitNets on the FPN maps P2–P6: ``FEAT_WEIGHT · Σ_levels mean((conv1×1(p_s) − p_t)²)`` (this project's
    detection FitNet: one 1×1 adaptation conv per level; ``FITNET.HINT_LAYER`` is not used)."""

    ROI_LOGITS = False

    def __init__(self, student, teacher, cfg):
        Distiller.__init__(self, student, teacher)
        self.feat_loss_weight = cfg.FITNET.LOSS.FEAT_WEIGHT
        self.regressors = fpn_projectors(student, teacher)

    def distill_losses(self, student, teacher, target, epoch, **batch):
        loss = sum(hint_loss(regressor(f_s), f_t)
                   for regressor, f_s, f_t in zip(self.regressors, student.feats["fpn"], teacher.feats["fpn"]))
        return {"loss_kd": self.feat_loss_weight * loss}
