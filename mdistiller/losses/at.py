"""Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017)."""
import torch.nn.functional as F


def match_spatial(f_s, f_t):
    """Average-pool the spatially larger of two (B, C, H, W) maps to the other's height (square output).

    mdistiller's AT and NST compare stages of different resolutions this way
    (``adaptive_avg_pool2d`` to ``(H, H)`` of the smaller map).
    """
    s_h, t_h = f_s.shape[2], f_t.shape[2]
    if s_h > t_h:
        f_s = F.adaptive_avg_pool2d(f_s, (t_h, t_h))
    elif s_h < t_h:
        f_t = F.adaptive_avg_pool2d(f_t, (s_h, s_h))
    return f_s, f_t


def attention_map(feat, p=2):
    """``Q / ‖Q‖₂`` with ``Q = vec(mean_c A_c^p)`` of a (B, C, H, W) map: (B, H·W).

    Zagoruyko & Komodakis, Section 3.1: the spatial attention map
    ``F^p_sum(A) = Σ_c |A_c|^p`` (the mean differs by 1/C, which the
    normalisation removes), vectorised and L2-normalised (``F.normalize``,
    ε = 1e-12). As in mdistiller, ``A^p`` is taken without ``|·|`` (equal for even p).
    """
    return F.normalize(feat.pow(p).mean(1).reshape(feat.shape[0], -1))


def at_loss_stage(f_s, f_t, p=2):
    """``mean_{b,i} (q_s[b, i] − q_t[b, i])²`` of one stage, q = :func:`attention_map` after :func:`match_spatial`."""
    f_s, f_t = match_spatial(f_s, f_t)
    return (attention_map(f_s, p) - attention_map(f_t, p)).pow(2).mean()


def at_loss(feats_student, feats_teacher, p=2):
    """Attention-transfer loss summed over paired stages: ``Σ_j mean_{b,i} (q_s^j − q_t^j)²``.

    Zagoruyko & Komodakis, ICLR 2017, Section 3.1, Eq. (2) (``β/2 Σ_j ‖q_s^j − q_t^j‖_p``),
    in mdistiller's form: squared differences averaged over the batch and the
    H·W positions instead of a norm, β = ``AT.LOSS.FEAT_WEIGHT`` applied by the caller.

    Args:
        feats_student, feats_teacher: sequences of (B, C, H, W) stage maps, paired
            by position (``zip``: the shorter sequence decides the number of stages);
            channels may differ, the larger spatial map is pooled to the smaller.
        p: exponent of the attention map (``AT.P``).
    """
    return sum(at_loss_stage(f_s, f_t, p) for f_s, f_t in zip(feats_student, feats_teacher))
