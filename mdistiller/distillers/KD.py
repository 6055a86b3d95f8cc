from ..losses.kd import kd_loss
from ..registry import register_distiller
from ._base import Distiller
from ._detection import RCNNDistiller


@register_distiller("KD")
class KD(Distiller):
    """Knowledge distillation: CE + T²·KL of softened logits (Hinton et al. 2015)."""

    # TEMPERATURE is 4 in mdistiller (an int); a float here so that e.g. `KD.TEMPERATURE 3.5` (the logit-
    # standardization release sets fractional base temperatures) merges; mdistiller's integer values merge as floats.
    DEFAULTS = {"TEMPERATURE": 4.0, "LOSS": {"CE_WEIGHT": 0.1, "KD_WEIGHT": 0.9}}
    # Temperatures 1-8 span those of the KD literature (mdistiller 4, the WKD release 8); the weights within 10x.
    SEARCH_SPACE = {"KD.TEMPERATURE": {"low": 1.0, "high": 8.0}, "KD.LOSS.CE_WEIGHT": {"factor": 10.0},
                    "KD.LOSS.KD_WEIGHT": {"factor": 10.0}}

    LOGIT_STANDARDIZATION = True

    @classmethod
    def logit_temperature(cls, cfg):
        return float(cfg.KD.TEMPERATURE), "KD.TEMPERATURE"

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.temperature = cfg.KD.TEMPERATURE
        self.ce_weight = cfg.KD.LOSS.CE_WEIGHT
        self.kd_loss_weight = cfg.KD.LOSS.KD_WEIGHT

    def logit_loss(self, logits_student, logits_teacher, target, epoch):
        logits_student, logits_teacher = self.distillation_logits(logits_student, logits_teacher)
        return self.kd_loss_weight * kd_loss(logits_student, logits_teacher, self.temperature)

    def distill_losses(self, student, teacher, target, epoch, **batch):
        return {"loss_kd": self.logit_loss(student.logits, teacher.logits, target, epoch)}


@register_distiller("KD", task="detection")
class DetectionKD(RCNNDistiller, KD):
    """KD on the RoI classification logits of the student's sampled proposals (background last), teacher's box head
    on the same RoIs (this project's detection KD; ``KD.TEMPERATURE``, ``KD.LOSS.KD_WEIGHT``)."""
