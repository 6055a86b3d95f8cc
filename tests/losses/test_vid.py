"""VID's Gaussian negative log-likelihood against torch.distributions."""
import math

import pytest
import torch
import torch.nn.functional as F

from mdistiller.losses.vid import match_spatial, softplus_inverse, vid_loss, vid_variance


def test_softplus_inverse_and_variance():
    alpha = softplus_inverse(5.0 - 1e-5)
    assert math.log1p(math.exp(alpha)) == pytest.approx(5.0 - 1e-5, rel=1e-14)
    log_scale = torch.full((3,), alpha, dtype=torch.float64)
    assert torch.allclose(vid_variance(log_scale, 1e-5), torch.full((3,), 5.0, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(vid_variance(log_scale, 0.0), F.softplus(log_scale))


def test_vid_loss_is_the_gaussian_nll_without_its_constant():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64)
    log_scale = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    got = vid_loss(mean, target, log_scale, eps=1e-3)

    mean_ref = mean.detach().clone().requires_grad_(True)
    scale_ref = log_scale.detach().clone().requires_grad_(True)
    std = torch.sqrt(F.softplus(scale_ref) + 1e-3).view(1, -1, 1, 1)
    nll = -torch.distributions.Normal(mean_ref, std).log_prob(target) - 0.5 * math.log(2 * math.pi)
    expected = nll.mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    g_mean, g_scale = torch.autograd.grad(got, (mean, log_scale))
    r_mean, r_scale = torch.autograd.grad(expected, (mean_ref, scale_ref))
    assert torch.allclose(g_mean, r_mean, rtol=1e-10) and torch.allclose(g_scale, r_scale, rtol=1e-10)


def test_vid_loss_minimum_at_the_mean():
    target = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    log_scale = torch.zeros(3, dtype=torch.float64)
    var = math.log(2.0) + 1e-5
    assert vid_loss(target, target, log_scale).item() == pytest.approx(0.5 * math.log(var), rel=1e-12)


@pytest.mark.numerics
def test_match_spatial_pools_the_larger_map():
    big, small = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)
    s, t = match_spatial(big, small)
    assert s.shape == (2, 3, 4, 4) and t is small
    assert torch.allclose(s, big.reshape(2, 3, 4, 2, 4, 2).mean((3, 5)), atol=1e-6)
    s, t = match_spatial(small, big)
    assert s is small and t.shape == (2, 3, 4, 4)
    s, t = match_spatial(small, small)
    assert s is small and t is small
