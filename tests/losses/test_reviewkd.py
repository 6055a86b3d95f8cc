"""ReviewKD's hierarchical context loss against explicit pooling and weights."""
import pytest
import torch

from mdistiller.losses.reviewkd import hcl_level_loss, hcl_loss


def _pool(x, size):
    n, c, h, w = x.shape
    return x.reshape(n, c, size, h // size, size, w // size).mean((3, 5))


def _mse(a, b):
    return ((a - b) ** 2).mean()


@pytest.mark.parametrize(
    "height, weights", [(8, [1, 1 / 2, 1 / 4, 1 / 8]), (4, [1, 1 / 2, 1 / 4]), (2, [1, 1 / 2]), (1, [1])]
)
def test_level_loss_matches_explicit_pyramid(height, weights):
    g = torch.Generator().manual_seed(height)
    s = torch.randn(2, 3, height, height, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, height, height, generator=g, dtype=torch.float64)
    sizes = [height] + [l for l in (4, 2, 1) if l < height]
    s_ref = s.detach().clone().requires_grad_(True)
    expected = sum(w * _mse(_pool(s_ref, k), _pool(t, k)) for w, k in zip(weights, sizes)) / sum(weights)
    got = hcl_level_loss(s, t)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    (g_got,) = torch.autograd.grad(got, s)
    (g_ref,) = torch.autograd.grad(expected, s_ref)
    assert torch.allclose(g_got, g_ref, rtol=1e-12)


def test_hcl_loss_sums_the_levels():
    pairs = [(torch.randn(2, 4, h, h), torch.randn(2, 4, h, h)) for h in (8, 4, 1)]
    total = hcl_loss([p[0] for p in pairs], [p[1] for p in pairs])
    assert total.item() == pytest.approx(sum(hcl_level_loss(a, b).item() for a, b in pairs), rel=1e-6)
