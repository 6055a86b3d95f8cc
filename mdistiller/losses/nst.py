"""Neuron selectivity transfer (Huang & Wang, "Like What You Like: Knowledge Distill via Neuron
Selectivity Transfer", arXiv:1707.01219, 2017)."""
import torch.nn.functional as F

from .at import match_spatial


def poly_kernel_mean(a, b):
    """``mean_{b,i,j} (a[b, i] · b[b, j])²``: mean of the degree-2 polynomial kernel (c = 0) over all pairs.

    Args:
        a: (B, N, D), b: (B, M, D) sets of vectors, one set per sample.
    """
    return a.bmm(b.transpose(1, 2)).pow(2).mean()


def second_moment(x):
    """``M = (1/N) Σ_i x_i x_iᵀ``: the (B, D, D) mean second-moment matrix of each sample's set of N vectors.

    Args:
        x: (B, N, D) sets of vectors, one set per sample.
    """
    return x.transpose(1, 2).bmm(x) / x.shape[1]


def _use_moments(c_s, c_t, d):
    """Whether the (D, D) second moments are cheaper than the (C, C) kernel matrices (multiply-adds of the
    forward and the student's backward: ``D²(3C_s + C_t)`` against ``D(3C_s² + 2C_sC_t + C_t²)``)."""
    return d * (3 * c_s + c_t) < 3 * c_s * c_s + 2 * c_s * c_t + c_t * c_t


def nst_loss_stage(f_s, f_t):
    """Squared MMD of one stage between the student's and the teacher's channel-wise selectivity patterns.

    Each channel's H·W map, L2-normalised, is one sample (Huang & Wang, Section 3.3);
    with ``k(x, y) = (xᵀy)²``:
    ``MMD² = mean k(t, t') + mean k(s, s') − 2 mean k(s, t)``, averaged over the batch
    (the teacher term is a constant of the student). Maps of different size are
    first pooled to the smaller (:func:`mdistiller.losses.at.match_spatial`).

    Two evaluations of the same sums: the (C, C) kernel matrices
    (:func:`poly_kernel_mean`), or, since ``mean_{ij} (a_iᵀb_j)² = ⟨M_a, M_b⟩_F``,
    the (H·W, H·W) second moments (:func:`second_moment`) when they are the
    smaller (more channels than positions, e.g. the last stage of a CIFAR ResNet).
    """
    f_s, f_t = match_spatial(f_s, f_t)
    f_s = F.normalize(f_s.reshape(f_s.shape[0], f_s.shape[1], -1), dim=2)
    f_t = F.normalize(f_t.reshape(f_t.shape[0], f_t.shape[1], -1), dim=2)
    if _use_moments(f_s.shape[1], f_t.shape[1], f_s.shape[2]):
        m_s, m_t = second_moment(f_s), second_moment(f_t)
        tt = m_t.pow(2).sum((1, 2)).mean().detach()
        return tt + m_s.pow(2).sum((1, 2)).mean() - 2 * (m_s * m_t).sum((1, 2)).mean()
    return poly_kernel_mean(f_t, f_t).detach() + poly_kernel_mean(f_s, f_s) - 2 * poly_kernel_mean(f_s, f_t)


def nst_loss(feats_student, feats_teacher):
    """NST loss summed over paired stages: ``Σ_j MMD²_poly(F_s^j, F_t^j)`` (:func:`nst_loss_stage`).

    Huang & Wang 2017, Section 3.3 (MMD with the polynomial kernel d = 2, c = 0, the
    paper's choice for its CIFAR/ImageNet results), in mdistiller's form; the weight
    (λ/2 of the paper, ``NST.LOSS.FEAT_WEIGHT``) is applied by the caller.

    Args:
        feats_student, feats_teacher: sequences of (B, C, H, W) stage maps paired by
            position (``zip``); channel counts may differ.
    """
    return sum(nst_loss_stage(f_s, f_t) for f_s, f_t in zip(feats_student, feats_teacher))
