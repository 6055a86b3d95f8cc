import torch
import torch.nn.functional as F

from ._base import Distiller, fp32_losses
from .registry import register_distiller

# DKD's released code removes the target class from the non-target softmax by
# subtracting this constant from its logit; exp(-1000/T) is exactly 0 in fp32.
_MASK_OFFSET = 1000.0


def dkd_parts(logits_student, logits_teacher, target, temperature):
    """The two terms of Decoupled KD (Zhao et al. CVPR 2022, Eq. 6), each times T².

    TCKD = KL(b_t ‖ b_s) with b = [p_target, 1 − p_target];
    NCKD = KL(p̂_t ‖ p̂_s) over the non-target classes renormalized.
    Both are summed over the batch and divided by its size.
    """
    batch = target.shape[0]
    gt_mask = torch.zeros_like(logits_student, dtype=torch.bool).scatter_(1, target.unsqueeze(1), True)
    p_student = F.softmax(logits_student / temperature, dim=1)
    p_teacher = F.softmax(logits_teacher / temperature, dim=1)
    b_student = torch.stack([(p_student * gt_mask).sum(1), (p_student * ~gt_mask).sum(1)], dim=1)
    b_teacher = torch.stack([(p_teacher * gt_mask).sum(1), (p_teacher * ~gt_mask).sum(1)], dim=1)
    tckd = F.kl_div(torch.log(b_student), b_teacher, reduction="sum") * temperature**2 / batch
    offset = _MASK_OFFSET * gt_mask
    log_q_student = F.log_softmax(logits_student / temperature - offset, dim=1)
    q_teacher = F.softmax(logits_teacher / temperature - offset, dim=1)
    nckd = F.kl_div(log_q_student, q_teacher, reduction="sum") * temperature**2 / batch
    return tckd, nckd


def dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature):
    tckd, nckd = dkd_parts(logits_student, logits_teacher, target, temperature)
    return alpha * tckd + beta * nckd


@register_distiller("DKD")
class DKD(Distiller):
    """Decoupled Knowledge Distillation (Zhao et al. CVPR 2022), with its linear warm-up."""

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.ce_loss_weight = cfg.DKD.CE_WEIGHT
        self.alpha = cfg.DKD.ALPHA
        self.beta = cfg.DKD.BETA
        self.temperature = cfg.DKD.T
        self.warmup = cfg.DKD.WARMUP

    def logit_loss(self, logits_student, logits_teacher, target, epoch):
        """The distillation term as a function of the logits (also used by the diagnostics)."""
        warmup = min(epoch / self.warmup, 1.0) if self.warmup > 0 else 1.0
        return warmup * dkd_loss(logits_student, logits_teacher, target, self.alpha, self.beta, self.temperature)

    def forward_train(self, image, target, epoch, **kwargs):
        logits_student, _ = self.student(image)
        logits_teacher, _ = self.teacher_forward(image)
        with fp32_losses(logits_student):
            s, t = logits_student.float(), logits_teacher.float()
            loss_ce = self.ce_loss_weight * F.cross_entropy(s, target)
            loss_dkd = self.logit_loss(s, t, target, epoch)
        return logits_student, {"loss_ce": loss_ce, "loss_kd": loss_dkd}
