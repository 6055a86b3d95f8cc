from ..losses.dkd import dkd_loss
from ..losses.schedules import linear_warmup
from ..registry import register_distiller
from ._base import Distiller
from ._detection import RCNNDistiller


@register_distiller("DKD")
class DKD(Distiller):
    """Decoupled KD: α·TCKD + β·NCKD with a linear warm-up (Zhao et al. CVPR 2022)."""

    DEFAULTS = {"CE_WEIGHT": 1.0, "ALPHA": 1.0, "BETA": 8.0, "T": 4.0, "WARMUP": 20}
    # α and β log-uniform around the config's (they scale together with logit standardization, whose configs
    # multiply them by the KD weight); the temperatures of the KD literature.
    SEARCH_SPACE = {"DKD.ALPHA": {"factor": 4.0}, "DKD.BETA": {"factor": 8.0}, "DKD.T": {"low": 1.0, "high": 8.0}}

    LOGIT_STANDARDIZATION = True

    @classmethod
    def logit_temperature(cls, cfg):
        return float(cfg.DKD.T), "DKD.T"

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.ce_weight = cfg.DKD.CE_WEIGHT
        self.alpha = cfg.DKD.ALPHA
        self.beta = cfg.DKD.BETA
        self.temperature = cfg.DKD.T
        self.warmup = cfg.DKD.WARMUP

    def logit_loss(self, logits_student, logits_teacher, target, epoch):
        warmup = linear_warmup(epoch, self.warmup)
        logits_student, logits_teacher = self.distillation_logits(logits_student, logits_teacher)
        return warmup * dkd_loss(logits_student, logits_teacher, target, self.alpha, self.beta, self.temperature)

    def distill_losses(self, student, teacher, target, epoch, **batch):
        return {"loss_kd": self.logit_loss(student.logits, teacher.logits, target, epoch)}


@register_distiller("DKD", task="detection")
class DetectionDKD(RCNNDistiller, DKD):
    """DKD on the RoI classification logits, background last: mdistiller's detection ``rcnn_dkd_loss``
    (``DKD.ALPHA``/``BETA``/``T``; its configs: 1, 0.25, 1, no warm-up)."""
