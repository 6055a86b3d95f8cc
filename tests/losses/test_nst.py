"""NST's loss equals the polynomial-kernel MMD² closed form (Huang & Wang 2017, Section 3.3) in value and gradient.

With ``k(x, y) = (xᵀy)² = ⟨x xᵀ, y yᵀ⟩_F`` the squared MMD between the sets of
normalised channel maps is the squared Frobenius distance between their mean
second-moment matrices: ``‖(1/C_t) Σ_i t_i t_iᵀ − (1/C_s) Σ_j s_j s_jᵀ‖²_F``.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdistiller.losses.nst import nst_loss


def _pool_to(f, size):
    return F.avg_pool2d(f, f.shape[2] // size) if f.shape[2] > size else f


def nst_reference_torch(feats_s, feats_t):
    """Σ_stages mean_b ‖M_t − M_s‖²_F with M = (1/C) Σ_c x̂_c x̂_cᵀ (x̂_c: channel c's unit H·W vector)."""
    total = 0.0
    for f_s, f_t in zip(feats_s, feats_t):
        size = min(f_s.shape[2], f_t.shape[2])
        moments = []
        for f in (_pool_to(f_s, size), _pool_to(f_t, size)):
            x = f.flatten(2)
            x = x / x.norm(dim=2, keepdim=True).clamp_min(1e-12)  # an all-zero map stays 0
            moments.append(torch.einsum("bci,bcj->bij", x, x) / x.shape[1])
        total = total + ((moments[1] - moments[0]) ** 2).sum(dim=(1, 2)).mean()
    return total


def nst_reference_numpy(feats_s, feats_t):
    """The MMD² with explicit kernel sums over channel pairs (numpy, float64)."""
    total = 0.0
    for f_s, f_t in zip(feats_s, feats_t):
        size = min(f_s.shape[2], f_t.shape[2])
        f_s, f_t = _pool_to(f_s, size).numpy(), _pool_to(f_t, size).numpy()
        per_sample = []
        for b in range(f_s.shape[0]):
            s = f_s[b].reshape(f_s.shape[1], -1)
            t = f_t[b].reshape(f_t.shape[1], -1)
            s = s / np.linalg.norm(s, axis=1, keepdims=True)
            t = t / np.linalg.norm(t, axis=1, keepdims=True)
            k = lambda a, c: np.mean([(x @ y) ** 2 for x in a for y in c])  # noqa: E731
            per_sample.append(k(t, t) + k(s, s) - 2 * k(s, t))
        total += np.mean(per_sample)
    return total


def _feats(seed):
    g = torch.Generator().manual_seed(seed)
    shapes_s = [(2, 3, 8, 8), (2, 5, 2, 2), (2, 4, 4, 4)]
    shapes_t = [(2, 6, 4, 4), (2, 2, 4, 4), (2, 7, 4, 4)]
    return ([torch.randn(s, generator=g, dtype=torch.float64) for s in shapes_s],
            [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes_t])


def test_value_equals_kernel_sums_and_moment_closed_form():
    f_s, f_t = _feats(0)
    got = float(nst_loss(f_s, f_t))
    assert got == pytest.approx(nst_reference_numpy(f_s, f_t), rel=1e-12)
    assert got == pytest.approx(float(nst_reference_torch(f_s, f_t)), rel=1e-12)


def test_gradient_equals_closed_form():
    f_s, f_t = _feats(1)
    f_s = [f.requires_grad_() for f in f_s]
    grads = torch.autograd.grad(nst_loss(f_s, f_t), f_s)
    ref = torch.autograd.grad(nst_reference_torch(f_s, f_t), f_s)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-13)


def test_gradcheck():
    f_s, f_t = _feats(2)
    f_s = [f.requires_grad_() for f in f_s]
    assert torch.autograd.gradcheck(lambda *s: nst_loss(s, f_t), tuple(f_s))


def test_zero_for_the_same_channel_set_and_nonnegative():
    f = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    assert float(nst_loss([f], [f[:, torch.tensor([3, 1, 0, 2])]])) == pytest.approx(0.0, abs=1e-14)
    f_s, f_t = _feats(3)
    assert float(nst_loss(f_s, f_t)) > 0


def test_second_moment_form_equals_kernel_form_in_value_and_gradients():
    """More channels than positions: the (H·W, H·W) second moments replace the (C, C) kernel matrices; the
    value, the student's gradient and the teacher's (only through the cross term) are unchanged."""
    from mdistiller.losses.nst import _use_moments, nst_loss_stage, poly_kernel_mean

    g = torch.Generator().manual_seed(3)
    f_s = torch.randn(3, 12, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(3, 10, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert _use_moments(12, 10, 4) and not _use_moments(3, 6, 16)

    def kernel_form(a, b):
        a = F.normalize(a.flatten(2), dim=2)
        b = F.normalize(b.flatten(2), dim=2)
        return poly_kernel_mean(b, b).detach() + poly_kernel_mean(a, a) - 2 * poly_kernel_mean(a, b)

    got, want = nst_loss_stage(f_s, f_t), kernel_form(f_s, f_t)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    for g_got, g_want in zip(torch.autograd.grad(got, (f_s, f_t)), torch.autograd.grad(want, (f_s, f_t))):
        torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-13)
