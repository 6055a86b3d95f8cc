"""Logit distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015)."""
import torch.nn.functional as F


def kd_loss(logits_student, logits_teacher, temperature):
    """``T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))``, summed over classes, mean over the batch.

    Hinton et al. 2015, Section 2 (the T² factor keeps the gradient scale
    independent of T); mdistiller's ``kd_loss``.
    """
    log_p_student = F.log_softmax(logits_student / temperature, dim=1)
    p_teacher = F.softmax(logits_teacher / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="none").sum(1).mean() * temperature**2
