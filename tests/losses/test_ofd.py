"""OFD's margins (truncated-Gaussian means) and partial L2 against independent computations."""
import pytest
import torch
from scipy.stats import truncnorm

from mdistiller.losses.ofd import ofd_loss, ofd_margin


def test_margin_is_the_mean_of_the_negative_part():
    gamma = torch.tensor([1.0, 0.5, -2.0, 0.3, 0.1])
    beta = torch.tensor([0.0, 0.4, -1.0, 0.2, 1.0])  # last channel: P(x < 0) = Φ(-10) < 0.001 → fallback
    m = ofd_margin(gamma, beta)
    assert m.shape == (1, 5, 1, 1) and m.dtype == torch.float32
    for c in range(4):
        s, mu = abs(gamma[c].item()), beta[c].item()
        expected = truncnorm.mean(-float("inf"), (0 - mu) / s, loc=mu, scale=s)  # E[x | x < 0], x ~ N(β, γ²)
        assert m[0, c, 0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert m[0, 4, 0, 0].item() == pytest.approx(-3 * 0.1, rel=1e-6)
    assert m[0, 0, 0, 0].item() == pytest.approx(-(2 / torch.pi) ** 0.5, rel=1e-6)  # standard normal: -√(2/π)


def _reference(s, t, m):
    """d_p(max(t, m), s): zero where s ≤ target ≤ 0, squared difference elsewhere; Σ over c,h,w, mean over n."""
    target = torch.maximum(t, m.expand_as(t))
    skip = (s <= target) & (target <= 0)
    return torch.where(skip, torch.zeros_like(s), (target - s) ** 2).sum((1, 2, 3)).mean()


def test_partial_l2_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64)
    m = -torch.rand(1, 4, 1, 1, generator=g, dtype=torch.float64)
    s_ref = s.detach().clone().requires_grad_(True)
    got, expected = ofd_loss(s, t, m), _reference(s_ref, t, m)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    (g_got,) = torch.autograd.grad(got, s)
    (g_ref,) = torch.autograd.grad(expected, s_ref)
    assert torch.allclose(g_got, g_ref, rtol=1e-12)


def test_partial_l2_cases():
    m = torch.full((1, 1, 1, 1), -1.0)
    t = torch.tensor([-2.0, -2.0, -0.5, -0.5, 1.0, 1.0]).view(1, 1, 1, 6)
    s = torch.tensor([-3.0, 0.0, -0.7, 0.5, 3.0, -1.0]).view(1, 1, 1, 6)
    # t ≤ m: target m (= -1): s=-3 below → 0; s=0 → 1.  m < t ≤ 0: s=-0.7 below → 0; s=0.5 → 1.  t > 0: 4 and 4.
    assert ofd_loss(s, t, m).item() == pytest.approx(0 + 1 + 0 + 1 + 4 + 4)


def _three_case_sum(s, t, m):
    """The authors' and mdistiller's form of d_p: one masked term per case, summed."""
    loss = (
        (s - m) ** 2 * ((s > m) & (t <= m)).float()
        + (s - t) ** 2 * ((s > t) & (t > m) & (t <= 0)).float()
        + (s - t) ** 2 * (t > 0).float()
    )
    return torch.abs(loss).mean(dim=0).sum()


def test_partial_l2_is_bitwise_the_three_case_sum_in_float32():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(8, 16, 6, 6, generator=g, requires_grad=True)
    t = torch.randn(8, 16, 6, 6, generator=g)
    m = -torch.rand(1, 16, 1, 1, generator=g)
    t[0, 0, 0, :3] = m[0, 0, 0, 0]  # ties with the margin
    s_ref = s.detach().clone().requires_grad_(True)
    got, expected = ofd_loss(s, t, m), _three_case_sum(s_ref, t, m)
    assert torch.equal(got, expected)
    assert torch.equal(torch.autograd.grad(got, s)[0], torch.autograd.grad(expected, s_ref)[0])
