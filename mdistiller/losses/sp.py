"""Similarity-preserving knowledge distillation (Tung & Mori, "Similarity-Preserving Knowledge Distillation",
ICCV 2019)."""
import torch.nn.functional as F


def similarity_matrix(feat):
    """``G = normalize_rows(A Aᵀ)`` with ``A`` the batch's features flattened to b × (c·h·w).

    The b × b Gram matrix of the batch, each row divided by its L2 norm
    (``F.normalize``, eps 1e-12). Tung & Mori 2019, Sec. 3, Eqs. (1)-(2).
    """
    flat = feat.reshape(feat.shape[0], -1)
    return F.normalize(flat @ flat.t())


def sp_loss(feat_student, feat_teacher):
    """``(1/b²) · ‖G_t − G_s‖_F²`` for one pair of feature maps (batch size b).

    Tung & Mori 2019, Sec. 3, Eq. (3) with :func:`similarity_matrix` for G.
    The teacher's features are used as given (the caller passes them detached).
    """
    batch = feat_student.shape[0]
    diff = similarity_matrix(feat_teacher) - similarity_matrix(feat_student)
    return (diff * diff).sum() / (batch * batch)
