"""Knowledge distillation with singular value decomposition (Lee, Kim & Song, "Self-supervised
Knowledge Distillation Using Singular Value Decomposition", ECCV 2018)."""
import torch
import torch.nn.functional as F


def _finite(x):
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _inverse_gaps(s, n):
    """``F_ij = 1 / (s_j² − s_i²)``; 0 on the diagonal and between two discarded values (i, j ≥ n)."""
    k = s.shape[-1]
    s2 = s * s
    diff = s2.unsqueeze(-2) - s2.unsqueeze(-1)
    inside = torch.ones(k, k, dtype=torch.bool, device=s.device)
    inside[n:, n:] = False
    inside.fill_diagonal_(False)
    return torch.where(inside, 1.0 / torch.where(inside, diff, torch.ones_like(diff)), torch.zeros_like(diff))


def _pad_columns(g, like, n):
    """``g`` (..., rows, n) as the first n columns of a zero (..., rows, k) matrix shaped like ``like``."""
    full = like.new_zeros(like.shape)
    if g is not None:
        full[..., :n] = g
    return full


def _singular_values_and_right_vectors(x):
    """``(S, V)`` of ``torch.linalg.svd(x, full_matrices=False)``, without forming U.

    LAPACK's gesdd decomposes a tall matrix (rows ≥ 11/6 · columns) by factoring
    ``x = QR`` and decomposing the square R (x and R have the same S and V); this
    takes the same route and leaves out the product U = Q·U_R (so S and V,
    signs included, are the ones ``torch.linalg.svd`` returns, up to rounding).
    Other shapes are decomposed directly.
    """
    rows, cols = x.shape[-2:]
    if 6 * rows >= 11 * cols:
        x = torch.linalg.qr(x, mode="r").R
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    return s, vh.transpose(-2, -1)


class _TopSingularTriplets(torch.autograd.Function):
    """``(U[..., :n], S[..., :n], V[..., :n])`` of ``torch.linalg.svd(x, full_matrices=False)``.

    The values are ``torch.linalg.svd``'s. The backward is the SVD derivative
    (Townsend 2016, "Differentiating the Singular Value Decomposition") in which
    the pairs of two discarded singular values are left out: their coefficients
    multiply zero gradients, but ``torch.linalg.svd``'s backward evaluates them
    as 0/0 = NaN when discarded singular values repeat (rank-deficient maps).
    Elsewhere the two agree (up to rounding); a repeated value among the kept
    ones, or at the cut, has no derivative in either.
    """

    @staticmethod
    def forward(ctx, x, n):
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        v = vh.transpose(-2, -1)
        ctx.save_for_backward(u, s, v)
        ctx.n = n
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None
        return u[..., :n], s[..., :n], v[..., :n]

    @staticmethod
    def backward(ctx, g_u, g_s, g_v):
        u, s, v = ctx.saved_tensors
        n = ctx.n
        k = s.shape[-1]
        f = _inverse_gaps(s, n)
        inner = s.new_zeros(s.shape[:-1] + (k, k))
        extra = 0
        u_n, s_n, v_n = u[..., :n], s[..., :n], v[..., :n]
        if g_u is not None:
            j = u.transpose(-2, -1) @ _pad_columns(g_u, u, n)
            inner = inner + (f * (j - j.transpose(-2, -1))) * s.unsqueeze(-2)
            proj = g_u - u @ (u.transpose(-2, -1) @ g_u)
            extra = extra + (proj / s_n.unsqueeze(-2)) @ v_n.transpose(-2, -1)
        if g_v is not None:
            kk = v.transpose(-2, -1) @ _pad_columns(g_v, v, n)
            inner = inner + s.unsqueeze(-1) * (f * (kk - kk.transpose(-2, -1)))
            proj = g_v - v @ (v.transpose(-2, -1) @ g_v)
            extra = extra + (u_n / s_n.unsqueeze(-2)) @ proj.transpose(-2, -1)
        if g_s is not None:
            inner = inner + torch.diag_embed(torch.cat([g_s, s.new_zeros(s.shape[:-1] + (k - n,))], -1))
        return u @ inner @ v.transpose(-2, -1) + extra, None


class _TopSingularPairs(torch.autograd.Function):
    """``(S[..., :n], V[..., :n])``: :class:`_TopSingularTriplets` without U.

    Same values and the same derivative: with no gradient on U every term of
    the derivative that contains U contains ``U·diag(S) = x·V``, so the
    gradient is ``x·G`` with G a (columns × columns) matrix.
    """

    @staticmethod
    def forward(ctx, x, n):
        s, v = _singular_values_and_right_vectors(x)
        ctx.save_for_backward(x, s, v)
        ctx.n = n
        ctx.set_materialize_grads(False)
        return s[..., :n], v[..., :n]

    @staticmethod
    def backward(ctx, g_s, g_v):
        x, s, v = ctx.saved_tensors
        n = ctx.n
        s_n, v_n = s[..., :n], v[..., :n]
        g = s.new_zeros(s.shape[:-1] + (v.shape[-2], v.shape[-2]))
        if g_v is not None:
            kk = v.transpose(-2, -1) @ _pad_columns(g_v, v, n)
            g = g + v @ (_inverse_gaps(s, n) * (kk - kk.transpose(-2, -1))) @ v.transpose(-2, -1)
            proj = g_v - v @ (v.transpose(-2, -1) @ g_v)
            g = g + (v_n / (s_n * s_n).unsqueeze(-2)) @ proj.transpose(-2, -1)
        if g_s is not None:
            g = g + (v_n * (g_s / s_n).unsqueeze(-2)) @ v_n.transpose(-2, -1)
        return x @ g, None


def truncated_svd(feat, n=1, compute_u=True):
    """The first ``n`` singular triplets of each sample's feature matrix, unit-normalised: ``(u, s, v)``.

    The (B, C, H, W) map is read as a (B, C·H, W) matrix per sample (mdistiller's
    reshape of the NCHW tensor) and decomposed, ``X = U diag(S) Vᵀ``; non-finite
    entries become 0; then ``u`` (B, C·H, n) and ``v`` (B, W, n) keep their first
    ``n`` columns, each normalised to unit length over its rows, and ``s`` (B, n)
    is normalised to unit length. ``n <= 0`` returns the full, unnormalised factors.
    ``compute_u=False`` returns ``u = None`` and never forms U (same ``s`` and ``v``).
    Computed in the input's dtype (mdistiller casts to float32 first). The
    gradient ignores the discarded singular triplets (:class:`_TopSingularTriplets`).

    Lee et al., Section 3.1 (truncated SVD of the feature map).
    """
    batch, channels, height, width = feat.shape
    x = feat.reshape(batch, channels * height, width)
    keep = min(x.shape[-2:]) if n <= 0 else min(n, *x.shape[-2:])
    if compute_u:
        u, s, v = _TopSingularTriplets.apply(x, keep)
        u = _finite(u)
    else:
        u = None
        s, v = _TopSingularPairs.apply(x, keep)
    s, v = _finite(s), _finite(v)
    if n > 0:
        u = None if u is None else F.normalize(u, dim=1)
        s = F.normalize(s, dim=1)
        v = F.normalize(v, dim=1)
    return u, s, v


def align_signs(v_student, v_teacher):
    """The student's singular vectors matched to the teacher's: (B, W, k).

    For each teacher vector j, the student vector i with the largest ``|cos(v_s^i, v_t^j)|``
    (cosine = dot product of the unit vectors), multiplied by the sign of that
    cosine: ``v_s · M`` with ``M[i, j] = sign(cos_ij)`` where ``|cos_ij| = max_i' |cos_i'j|``, else 0.
    Lee et al., Section 3.2 (post-processing: sign ambiguity removed by alignment
    with the teacher).

    Args:
        v_student: (B, W, k_s) student vectors (k_s ≥ k), v_teacher: (B, W, k).
    """
    cosine = v_student.transpose(-2, -1).matmul(v_teacher)
    best = cosine.abs().max(dim=1, keepdim=True)[0]
    mask = torch.where(best == cosine.abs(), torch.sign(cosine), torch.zeros_like(cosine))
    return v_student.matmul(mask)


def _rbf(v, v_prev):
    """``exp(−(v[b, i, c] − v_prev[b, j, c])² / 8)``: (B, W_l, W_{l−1}, k)."""
    return torch.exp(-(v.unsqueeze(2) - v_prev.unsqueeze(1)).pow(2) / 8)


def kdsvd_loss(feats_student, feats_teacher, k=1):
    """KD-SVD loss: ``(1/B) Σ_{l≥1} Σ (G_s^l − G_t^l)²`` over consecutive stage pairs (l−1, l).

    Per stage l: the teacher's top-k right singular vectors ``v_t`` and the
    student's top-(k+3) (:func:`truncated_svd`), the student's aligned to the
    teacher's (:func:`align_signs`); both scaled by the teacher's normalised
    singular values. ``G^l = exp(−(v^l_i − v^{l−1}_j)²/8)`` element-wise between
    the vectors of stage l and of stage l−1 (the RBF "distillation feature
    vector" correlation of Lee et al., Section 3.3); squared differences (the
    teacher's detached, non-finite terms zeroed) are summed and divided by the
    batch size, then summed over stage pairs. mdistiller's form of the released
    TensorFlow code; the weight ``KDSVD.LOSS.FEAT_WEIGHT`` is applied by the caller.

    Args:
        feats_student, feats_teacher: sequences of (B, C, H, W) stage maps paired
            by position (``zip``); each pair must have the same width W (the
            singular vectors live in R^W). Channels and heights may differ.
        k: number of teacher singular vectors (``KDSVD.K``).

    Raises:
        ValueError: a stage pair whose widths differ.
    """
    losses = []
    v_s_prev = v_t_prev = None
    for stage, (f_s, f_t) in enumerate(zip(feats_student, feats_teacher)):
        if f_s.shape[3] != f_t.shape[3]:
            raise ValueError(
                "KDSVD compares right singular vectors in R^W: stage {} has student width {} and teacher width {} "
                "(use a teacher/student pair whose stages have equal spatial sizes)".format(
                    stage, f_s.shape[3], f_t.shape[3]
                )
            )
        _, s_t, v_t = truncated_svd(f_t, k, compute_u=False)
        _, _, v_s = truncated_svd(f_s, k + 3, compute_u=False)
        v_s = align_signs(v_s, v_t)
        s_t = s_t.unsqueeze(1)
        v_t = v_t * s_t
        v_s = v_s * s_t
        if stage > 0:
            diff = (_rbf(v_s, v_s_prev) - _rbf(v_t, v_t_prev).detach()).pow(2)
            losses.append(_finite(diff).sum())
        v_s_prev, v_t_prev = v_s, v_t
    batch = feats_student[0].shape[0]
    return sum(loss / batch for loss in losses)
