"""AT's loss equals the attention-map closed form (Zagoruyko & Komodakis 2017, Section 3.1) in value and gradient."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdistiller.losses.at import at_loss, attention_map


def _block_mean(x, size):
    """(B, C, H, W) -> (B, C, size, size) by averaging non-overlapping blocks (H divisible by size)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, size, h // size, size, w // size).mean(axis=(3, 5))


def at_reference_numpy(feats_s, feats_t, p=2):
    """Σ_j mean_{b,i} (q_s − q_t)², q = Σ_c A_c^p / ‖Σ_c A_c^p‖₂ (numpy, float64)."""
    total = 0.0
    for f_s, f_t in zip(feats_s, feats_t):
        f_s, f_t = np.asarray(f_s, dtype=np.float64), np.asarray(f_t, dtype=np.float64)
        size = min(f_s.shape[2], f_t.shape[2])
        f_s, f_t = _block_mean(f_s, size), _block_mean(f_t, size)
        q = []
        for f in (f_s, f_t):
            m = (f ** p).sum(axis=1).reshape(f.shape[0], -1)
            q.append(m / np.linalg.norm(m, axis=1, keepdims=True))
        total += ((q[0] - q[1]) ** 2).mean()
    return total


def at_reference_torch(feats_s, feats_t, p=2):
    """The same closed form with autograd: sums over channels, block pooling, explicit norms (floored at 1e-12)."""
    total = 0.0
    for f_s, f_t in zip(feats_s, feats_t):
        size = min(f_s.shape[2], f_t.shape[2])
        f_s = F.avg_pool2d(f_s, f_s.shape[2] // size) if f_s.shape[2] > size else f_s
        f_t = F.avg_pool2d(f_t, f_t.shape[2] // size) if f_t.shape[2] > size else f_t
        q_s = f_s.pow(p).sum(1).flatten(1)
        q_t = f_t.pow(p).sum(1).flatten(1)
        q_s = q_s / q_s.norm(dim=1, keepdim=True).clamp_min(1e-12)
        q_t = q_t / q_t.norm(dim=1, keepdim=True).clamp_min(1e-12)
        total = total + ((q_s - q_t) ** 2).sum() / q_s.numel()
    return total


def _feats(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    # stage 1: student larger; stage 2: teacher larger; stage 3: equal; channels differ throughout
    shapes_s = [(3, 4, 8, 8), (3, 6, 2, 2), (3, 5, 4, 4)]
    shapes_t = [(3, 7, 4, 4), (3, 2, 4, 4), (3, 9, 4, 4)]
    f_s = [torch.randn(s, generator=g, dtype=dtype) for s in shapes_s]
    f_t = [torch.randn(s, generator=g, dtype=dtype) for s in shapes_t]
    return f_s, f_t


def test_attention_map_is_the_normalised_channel_sum_of_squares():
    f = torch.randn(2, 5, 3, 3, dtype=torch.float64)
    q = (f ** 2).sum(1).reshape(2, -1)
    torch.testing.assert_close(attention_map(f, 2), q / q.norm(dim=1, keepdim=True))
    assert torch.allclose(attention_map(f, 2).norm(dim=1), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("p", [2, 4])
def test_value_equals_closed_form(p):
    f_s, f_t = _feats(0)
    got = at_loss(f_s, f_t, p)
    assert float(got) == pytest.approx(at_reference_numpy([f.numpy() for f in f_s], [f.numpy() for f in f_t], p),
                                       rel=1e-12)


def test_gradient_equals_closed_form():
    f_s, f_t = _feats(1)
    f_s = [f.requires_grad_() for f in f_s]
    grads = torch.autograd.grad(at_loss(f_s, f_t, 2), f_s)
    ref = torch.autograd.grad(at_reference_torch(f_s, f_t, 2), f_s)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-14)


def test_gradcheck():
    f_s, f_t = _feats(2)
    f_s = [f.requires_grad_() for f in f_s]
    assert torch.autograd.gradcheck(lambda *s: at_loss(s, f_t, 2), tuple(f_s))


def test_identical_maps_give_zero_and_channel_count_does_not_matter():
    f = torch.rand(2, 4, 4, 4, dtype=torch.float64)
    assert float(at_loss([f], [torch.cat([f, f], 1)], 2)) == pytest.approx(0.0, abs=1e-15)
