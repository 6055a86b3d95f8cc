"""Logit standardization (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024)."""


def standardize_logits(logits, eps=1e-7):
    """Per-sample z-score ``(z − mean(z)) / (std(z) + eps)`` over the classes (unbiased std).

    Sun et al. 2024, Eq. (9) and Algorithm 1; the released code (built on
    mdistiller) applies it to teacher and student logits before the softmaxes
    of KD and DKD, at the configured temperature, with ``eps = 1e-7``.
    """
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (eps + std)
