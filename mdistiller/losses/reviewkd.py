"""Knowledge review (Chen, Liu, Zhao & Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021)."""
import torch.nn.functional as F

# Pyramid levels of the hierarchical context loss: average-pooled grids of 4x4, 2x2 and 1x1.
HCL_LEVELS = (4, 2, 1)


def hcl_level_loss(feat_student, feat_teacher, levels=HCL_LEVELS):
    """Hierarchical context loss of one pair of maps (n × c × h × w each).

    ``(MSE(s, t) + Σ_k 2^{-k} · MSE(pool_{l_k}(s), pool_{l_k}(t))) / (1 + Σ_k 2^{-k})``
    where ``l_1, l_2, … = levels`` skipping every ``l ≥ h`` (so ``k`` counts the
    levels actually used), ``pool_l`` is adaptive average pooling to l × l and
    MSE is the mean squared error over all elements. Chen et al. 2021, Sec. 3.3
    (hierarchical context loss: spatial pyramid pooling, lower weights for
    coarser levels).
    """
    height = feat_student.shape[2]
    loss = F.mse_loss(feat_student, feat_teacher, reduction="mean")
    weight, total = 1.0, 1.0
    for size in levels:
        if size >= height:
            continue
        weight /= 2.0
        pooled_s = F.adaptive_avg_pool2d(feat_student, (size, size))
        pooled_t = F.adaptive_avg_pool2d(feat_teacher, (size, size))
        loss = loss + F.mse_loss(pooled_s, pooled_t, reduction="mean") * weight
        total += weight
    return loss / total


def hcl_loss(feats_student, feats_teacher, levels=HCL_LEVELS):
    """Sum of :func:`hcl_level_loss` over paired lists of maps (the student's fused maps and the teacher's)."""
    total = 0.0
    for feat_s, feat_t in zip(feats_student, feats_teacher):
        total = total + hcl_level_loss(feat_s, feat_t, levels)
    return total
