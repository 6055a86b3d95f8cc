"""KD-SVD's loss equals an independent computation (Lee, Kim & Song 2018, Section 3) in value and gradient.

The reference takes the right singular vectors from the eigen-decomposition of
XᵀX (``torch.linalg.eigh``) instead of an SVD. A singular vector's sign is
arbitrary; the student's is removed by the alignment, but the teacher's is part
of the loss as defined (the RBF compares the vectors of consecutive stages), so
the reference adopts the sign of each teacher vector from ``torch.linalg.svd``
— the only thing it borrows. The truncated SVD's backward is checked against
``torch.linalg.svd``'s and, where that one is NaN (repeated discarded singular
values), against finite differences.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdistiller.losses.kdsvd import _TopSingularPairs, _TopSingularTriplets, align_signs, kdsvd_loss, truncated_svd


def _right_vectors(feat, n):
    """Top-n right singular vectors (B, W, n) and singular values (B, n) of feat read as (B, C·H, W), via eigh(XᵀX)."""
    x = feat.reshape(feat.shape[0], -1, feat.shape[3])
    evals, evecs = torch.linalg.eigh(x.transpose(1, 2) @ x)  # ascending
    order = torch.arange(x.shape[2] - 1, x.shape[2] - 1 - n, -1)
    return evecs[:, :, order], evals[:, order].clamp_min(0).sqrt()


def kdsvd_reference(feats_s, feats_t, k=1, sign_dtype=None):
    """The loss from eigh(XᵀX); the teacher's signs from ``torch.linalg.svd`` in ``sign_dtype`` (default: the input's)."""
    total = 0.0
    prev = None
    for stage, (f_s, f_t) in enumerate(zip(feats_s, feats_t)):
        v_t, s_t = _right_vectors(f_t, k)
        with torch.no_grad():  # the teacher's sign convention (see the module docstring)
            x_t = f_t.reshape(f_t.shape[0], -1, f_t.shape[3]).to(sign_dtype or f_t.dtype)
            torch_v = torch.linalg.svd(x_t, full_matrices=False)[2].transpose(1, 2)[:, :, :k].to(v_t.dtype)
            v_t = v_t * torch.sign((v_t * torch_v).sum(1, keepdim=True))
        v_s, _ = _right_vectors(f_s, k + 3)
        # alignment: for teacher vector j, the student vector of largest |cos|, times the sign of that cosine
        cos = torch.einsum("bwi,bwj->bij", v_s, v_t)
        best = cos.abs().argmax(dim=1)  # (B, k)
        picked = torch.stack([v_s[b][:, best[b]] for b in range(v_s.shape[0])])  # (B, W, k)
        signs = torch.sign(torch.gather(cos, 1, best.unsqueeze(1)))  # (B, 1, k)
        v_s = picked * signs
        scale = (s_t / s_t.norm(dim=1, keepdim=True)).unsqueeze(1)
        v_s, v_t = v_s * scale, v_t * scale
        if stage > 0:
            g_s = torch.exp(-((v_s[:, :, None, :] - prev[0][:, None, :, :]) ** 2) / 8)
            g_t = torch.exp(-((v_t[:, :, None, :] - prev[1][:, None, :, :]) ** 2) / 8)
            total = total + ((g_s - g_t.detach()) ** 2).sum() / f_s.shape[0]
        prev = (v_s, v_t)
    return total


def _feats(seed, widths=(6, 6, 6)):
    g = torch.Generator().manual_seed(seed)
    f_s = [torch.randn(3, 2, 4, w, generator=g, dtype=torch.float64) for w in widths]
    f_t = [torch.randn(3, 3, 5, w, generator=g, dtype=torch.float64) for w in widths]
    return f_s, f_t


def test_truncated_svd_matches_numpy():
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    u, s, v = truncated_svd(f, 2)
    for b in range(2):
        nu, ns, nvh = np.linalg.svd(f[b].reshape(12, 5).numpy(), full_matrices=False)
        np.testing.assert_allclose(s[b].numpy(), ns[:2] / np.linalg.norm(ns[:2]), rtol=1e-12)
        for j in range(2):  # equal up to sign, unit length
            sign = np.sign(v[b, :, j].numpy() @ nvh[j])
            np.testing.assert_allclose(v[b, :, j].numpy(), sign * nvh[j], atol=1e-12)
            np.testing.assert_allclose(u[b, :, j].numpy(), sign * nu[:, j], atol=1e-12)


def test_align_signs_undoes_permutation_and_sign_flips():
    q, _ = torch.linalg.qr(torch.randn(2, 7, 7, dtype=torch.float64))
    v_t = q[:, :, :2]
    # the student's vectors: the teacher's two in another order, one flipped, among others
    v_s = torch.stack([q[:, :, 4], -q[:, :, 1], q[:, :, 5], q[:, :, 0]], dim=2)
    torch.testing.assert_close(align_signs(v_s, v_t), v_t)


@pytest.mark.parametrize("k", [1, 2])
def test_value_equals_eigen_reference(k):
    f_s, f_t = _feats(0)
    assert float(kdsvd_loss(f_s, f_t, k)) == pytest.approx(float(kdsvd_reference(f_s, f_t, k)), rel=1e-9)


def test_gradient_equals_eigen_reference():
    f_s, f_t = _feats(1)
    f_s = [f.requires_grad_() for f in f_s]
    grads = torch.autograd.grad(kdsvd_loss(f_s, f_t, 1), f_s)
    ref = torch.autograd.grad(kdsvd_reference(f_s, f_t, 1), f_s)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, rtol=1e-7, atol=1e-10)


def test_gradcheck():
    f_s, f_t = _feats(2, widths=(5, 5))
    f_s = [f.requires_grad_() for f in f_s]
    assert torch.autograd.gradcheck(lambda *s: kdsvd_loss(s, f_t, 1), tuple(f_s))


def test_student_sign_invariance():
    f_s, f_t = _feats(3)
    flipped = [-f for f in f_s]  # negates every singular vector pair (u, v) of the student
    assert float(kdsvd_loss(flipped, f_t, 1)) == pytest.approx(float(kdsvd_loss(f_s, f_t, 1)), rel=1e-12)


def test_width_mismatch_is_an_error():
    f_s, f_t = _feats(4)
    f_t[1] = F.avg_pool2d(f_t[1], 2)
    with pytest.raises(ValueError, match="stage 1 has student width 6 and teacher width 3"):
        kdsvd_loss(f_s, f_t, 1)


@pytest.mark.parametrize("rows,width,n", [(12, 5, 2), (30, 8, 4), (4, 6, 2), (12, 5, 5)])
def test_truncated_svd_backward_equals_torch_svd_backward(rows, width, n):
    g = torch.Generator().manual_seed(rows + width + n)
    x = torch.randn(3, rows, width, generator=g, dtype=torch.float64, requires_grad=True)
    w_u, w_s, w_v = (torch.randn(shape, generator=g, dtype=torch.float64)
                     for shape in ((3, rows, n), (3, n), (3, width, n)))

    def loss(u, s, v):  # invariant to the singular vectors' signs
        return ((u * w_u).sum(1) ** 2).sum() + (s * w_s).sum() + ((v * w_v).sum(1) ** 2).sum()

    (got,) = torch.autograd.grad(loss(*_TopSingularTriplets.apply(x, n)), x)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    (ref,) = torch.autograd.grad(loss(u[..., :n], s[..., :n], vh.transpose(1, 2)[..., :n]), x)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rows,width,n", [(40, 6, 3), (12, 5, 2), (4, 6, 2), (6, 6, 6), (30, 8, 4)])
def test_pairs_equal_triplets_without_u(rows, width, n):
    """(S, V) without U (through x = QR when x is tall): torch.linalg.svd's values and signs, the same derivative."""
    g = torch.Generator().manual_seed(rows * width + n)
    x = torch.randn(3, rows, width, generator=g, dtype=torch.float64, requires_grad=True)
    w_s, w_v = torch.randn(3, n, generator=g, dtype=torch.float64), torch.randn(3, width, n, generator=g, dtype=torch.float64)

    def loss(s, v):  # depends on the signs of v
        return (s * w_s).sum() + ((v * w_v).sum(1) ** 3).sum()

    s, v = _TopSingularPairs.apply(x, n)
    _, s_ref, v_ref = _TopSingularTriplets.apply(x, n)
    torch.testing.assert_close(s, s_ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-12)
    (got,) = torch.autograd.grad(loss(s, v), x)
    (ref,) = torch.autograd.grad(loss(s_ref, v_ref), x)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


def test_pairs_of_a_tall_rank_deficient_map_have_a_finite_gradient():
    g = torch.Generator().manual_seed(8)
    x = torch.cat([torch.randn(2, 40, 4, generator=g, dtype=torch.float64),
                   torch.zeros(2, 40, 3, dtype=torch.float64)], -1).requires_grad_()
    w_v = torch.randn(2, 7, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: ((_TopSingularPairs.apply(x, 3)[1] * w_v).sum(1) ** 2).sum(), (x,))


def test_right_vectors_have_torch_svds_signs_at_feature_scale():
    """float32 post-ReLU maps of resnet8x4's stage sizes (C·H = 2048 rows): the teacher's vectors keep their signs."""
    g = torch.Generator().manual_seed(5)
    for width in (32, 16, 8):
        x = torch.randn(16, 2048, width, generator=g).clamp_min(0)
        s, v = _TopSingularPairs.apply(x, 4)
        _, s_ref, vh_ref = torch.linalg.svd(x, full_matrices=False)
        v_ref = vh_ref.transpose(1, 2)[..., :4]
        torch.testing.assert_close(s, s_ref[:, :4], rtol=1e-5, atol=0)
        assert ((v * v_ref).sum(1) > 0).all()
        torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-4)


def test_rank_deficient_map_has_a_finite_gradient():
    """Repeated (zero) discarded singular values: torch.linalg.svd's backward is NaN, the truncated one is not."""
    g = torch.Generator().manual_seed(6)
    f_s = [torch.cat([torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64),
                      torch.zeros(2, 2, 4, 3, dtype=torch.float64)], -1).requires_grad_() for _ in range(2)]
    f_t = [torch.randn(2, 3, 2, 7, generator=g, dtype=torch.float64) for _ in range(2)]
    x = f_s[0].reshape(2, 8, 7)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    assert (s[:, 4:] == 0).all()
    (torch_grad,) = torch.autograd.grad((vh[:, :4].sum(-1) ** 2).sum(), f_s[0])
    assert not torch.isfinite(torch_grad).all()
    grads = torch.autograd.grad(kdsvd_loss(f_s, f_t, 1), f_s)
    assert all(torch.isfinite(gr).all() for gr in grads)
    assert torch.autograd.gradcheck(lambda *s: kdsvd_loss(s, f_t, 1), tuple(f_s))
