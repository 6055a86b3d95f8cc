import torch.nn.functional as F

from ._base import Distiller, fp32_losses
from .registry import register_distiller


def kd_loss(logits_student, logits_teacher, temperature):
    """Hinton et al. 2015: T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)), summed over classes, batch mean."""
    log_p_student = F.log_softmax(logits_student / temperature, dim=1)
    p_teacher = F.softmax(logits_teacher / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="none").sum(1).mean() * temperature**2


@register_distiller("KD")
class KD(Distiller):
    """Distilling the Knowledge in a Neural Network (Hinton et al. 2015)."""

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.temperature = cfg.KD.TEMPERATURE
        self.ce_loss_weight = cfg.KD.LOSS.CE_WEIGHT
        self.kd_loss_weight = cfg.KD.LOSS.KD_WEIGHT

    def logit_loss(self, logits_student, logits_teacher, target, epoch):
        """The distillation term as a function of the logits (also used by the diagnostics)."""
        return self.kd_loss_weight * kd_loss(logits_student, logits_teacher, self.temperature)

    def forward_train(self, image, target, epoch=0, **kwargs):
        logits_student, _ = self.student(image)
        logits_teacher, _ = self.teacher_forward(image)
        with fp32_losses(logits_student):
            s, t = logits_student.float(), logits_teacher.float()
            loss_ce = self.ce_loss_weight * F.cross_entropy(s, target)
            loss_kd = self.logit_loss(s, t, target, epoch)
        return logits_student, {"loss_ce": loss_ce, "loss_kd": loss_kd}
