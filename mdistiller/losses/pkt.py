"""Probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with
Probabilistic Knowledge Transfer", ECCV 2018)."""
import torch


def _unit_rows(x, eps):
    """``x / (‖x‖₂ + eps)`` row-wise, NaNs replaced by 0."""
    x = x / (torch.sqrt((x ** 2).sum(dim=1, keepdim=True)) + eps)
    return torch.where(torch.isnan(x), torch.zeros_like(x), x)


def cosine_kernel_probabilities(feat, eps=1e-7):
    """``P[i, j] = K(x_i, x_j) / Σ_k K(x_i, x_k)`` with the cosine kernel ``K(a, b) = (cos(a, b) + 1) / 2``.

    Passalis & Tefas, Section 3 (conditional probabilities estimated with the
    cosine-similarity kernel); as in mdistiller, the sums include ``k = i``.

    Args:
        feat: (B, D) representations; the norms get ``eps`` added.
    """
    x = _unit_rows(feat, eps)
    similarity = (x.mm(x.t()) + 1.0) / 2.0
    return similarity / similarity.sum(dim=1, keepdim=True)


def pkt_loss(feat_student, feat_teacher, eps=1e-7):
    """``mean_{i,j} P_t[i, j] · log((P_t[i, j] + eps) / (P_s[i, j] + eps))``: KL between the kernels' probabilities.

    Passalis & Tefas, ECCV 2018, Section 3: the student matches the teacher's
    conditional-probability distribution by minimising KL(P_t ‖ P_s); in
    mdistiller's form (the mean over the B² pairs, i.e. the row-summed KL divided
    by B², with ``eps`` inside the log; the weight ``PKT.LOSS.FEAT_WEIGHT`` is applied by the caller).

    Args:
        feat_student: (B, D_s) student representations (mdistiller: ``pooled_feat``).
        feat_teacher: (B, D_t) teacher representations; D_s and D_t may differ.
        eps: added to the norms and inside the log.
    """
    p_s = cosine_kernel_probabilities(feat_student, eps)
    p_t = cosine_kernel_probabilities(feat_teacher, eps)
    return torch.mean(p_t * torch.log((p_t + eps) / (p_s + eps)))
