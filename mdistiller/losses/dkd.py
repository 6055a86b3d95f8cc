"""Decoupled knowledge distillation (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022)."""
import torch
import torch.nn.functional as F

# The released DKD code removes the target class from the non-target softmax by
# subtracting this constant from its logit; exp(-1000/T) is exactly 0 in fp32.
_MASK_OFFSET = 1000.0


def dkd_parts(logits_student, logits_teacher, target, temperature):
    """``(TCKD, NCKD)`` of Zhao et al. 2022, Eq. (6), each times T².

    TCKD = KL(b_t ‖ b_s) with b = [p_target, 1 − p_target];
    NCKD = KL(p̂_t ‖ p̂_s) over the non-target classes renormalized.
    Both are summed over the batch and divided by its size.

    ``log b_s`` is taken in log space (the target's log-softmax and the log-sum-exp of the others'), where the
    release takes ``torch.log`` of the summed probabilities: equal to rounding wherever the release's is finite, and
    finite where a student's probability mass underflows to 0 in float32 (the release's TCKD is then inf).
    """
    batch = target.shape[0]
    gt_mask = torch.zeros_like(logits_student, dtype=torch.bool).scatter_(1, target.unsqueeze(1), True)
    log_p_student = F.log_softmax(logits_student / temperature, dim=1)
    p_teacher = F.softmax(logits_teacher / temperature, dim=1)
    log_b_student = torch.stack([log_p_student.gather(1, target.unsqueeze(1)).squeeze(1),
                                 torch.logsumexp(log_p_student.masked_fill(gt_mask, float("-inf")), dim=1)], dim=1)
    b_teacher = torch.stack([(p_teacher * gt_mask).sum(1), (p_teacher * ~gt_mask).sum(1)], dim=1)
    tckd = F.kl_div(log_b_student, b_teacher, reduction="sum") * temperature**2 / batch
    offset = _MASK_OFFSET * gt_mask
    log_q_student = F.log_softmax(logits_student / temperature - offset, dim=1)
    q_teacher = F.softmax(logits_teacher / temperature - offset, dim=1)
    nckd = F.kl_div(log_q_student, q_teacher, reduction="sum") * temperature**2 / batch
    return tckd, nckd


def dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature):
    """``α·TCKD + β·NCKD`` (Zhao et al. 2022, Eq. 7)."""
    tckd, nckd = dkd_parts(logits_student, logits_teacher, target, temperature)
    return alpha * tckd + beta * nckd
