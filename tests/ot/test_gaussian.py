"""Closed forms between Gaussians (``mdistiller.ot.gaussian``) against POT and ``torch.distributions`` (float64)."""
import math

import numpy as np
import ot
import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from mdistiller.ot import (
    empirical_gaussian,
    gaussian_kl_diag,
    gaussian_kl_full,
    gaussian_w2_diag,
    gaussian_w2_full,
    sqrtm_psd,
)
from tests.ot.problems import DT, to_np as _np



def _spd(d, gen, batch=()):
    m = torch.randn(*batch, d, d, generator=gen, dtype=DT)
    return m @ m.transpose(-1, -2) + 0.1 * torch.eye(d, dtype=DT)


def test_gaussian_w2_full_matches_pot_bures():
    gen = torch.Generator().manual_seed(14)
    d, batch = 6, 4
    mu_a, mu_b = torch.randn(batch, d, generator=gen, dtype=DT), torch.randn(batch, d, generator=gen, dtype=DT)
    cov_a, cov_b = _spd(d, gen, (batch,)), _spd(d, gen, (batch,))
    w2 = gaussian_w2_full(mu_a, cov_a, mu_b, cov_b)
    assert w2.shape == (batch,)
    for k in range(batch):
        w = ot.gaussian.bures_wasserstein_distance(_np(mu_a[k]), _np(mu_b[k]), _np(cov_a[k]), _np(cov_b[k]))
        assert w2[k].item() == pytest.approx(float(w) ** 2, rel=1e-9)  # POT returns W, not W²


def test_gaussian_w2_diag_matches_pot_and_mean_weight():
    gen = torch.Generator().manual_seed(15)
    d = 8
    mu_a, mu_b = torch.randn(d, generator=gen, dtype=DT), torch.randn(d, generator=gen, dtype=DT)
    s_a, s_b = torch.rand(d, generator=gen, dtype=DT) + 0.1, torch.rand(d, generator=gen, dtype=DT) + 0.1
    w = ot.gaussian.bures_wasserstein_distance(_np(mu_a), _np(mu_b), np.diag(_np(s_a) ** 2), np.diag(_np(s_b) ** 2))
    assert gaussian_w2_diag(mu_a, s_a, mu_b, s_b).item() == pytest.approx(float(w) ** 2, rel=1e-9)
    full = gaussian_w2_full(mu_a, torch.diag(s_a**2), mu_b, torch.diag(s_b**2))
    assert full.item() == pytest.approx(float(w) ** 2, rel=1e-9)
    weighted = gaussian_w2_diag(mu_a, s_a, mu_b, s_b, mean_weight=2.0)
    expected = 2.0 * (mu_a - mu_b).pow(2).sum() + (s_a - s_b).pow(2).sum()
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-12)


def test_gaussian_kl_closed_forms_match_torch_distributions():
    gen = torch.Generator().manual_seed(16)
    d, batch = 5, 3
    mu_a, mu_b = torch.randn(batch, d, generator=gen, dtype=DT), torch.randn(batch, d, generator=gen, dtype=DT)
    cov_a, cov_b = _spd(d, gen, (batch,)), _spd(d, gen, (batch,))
    ref = kl_divergence(MultivariateNormal(mu_a, cov_a), MultivariateNormal(mu_b, cov_b))
    torch.testing.assert_close(gaussian_kl_full(mu_a, cov_a, mu_b, cov_b), ref)
    s_a = torch.rand(batch, d, generator=gen, dtype=DT) + 0.1
    s_b = torch.rand(batch, d, generator=gen, dtype=DT) + 0.1
    ref_d = kl_divergence(Independent(Normal(mu_a, s_a), 1), Independent(Normal(mu_b, s_b), 1))
    torch.testing.assert_close(gaussian_kl_diag(mu_a, s_a, mu_b, s_b), ref_d)
    torch.testing.assert_close(gaussian_kl_full(mu_a, torch.diag_embed(s_a**2), mu_b, torch.diag_embed(s_b**2)), ref_d)
    assert gaussian_kl_full(mu_a, cov_a, mu_a, cov_a).abs().max() < 1e-10


def test_empirical_gaussian_biased_and_unbiased():
    gen = torch.Generator().manual_seed(17)
    x = torch.randn(2, 30, 4, generator=gen, dtype=DT)
    mean, cov = empirical_gaussian(x, diagonal=False)
    _, var = empirical_gaussian(x, diagonal=True)
    for k in range(2):
        np.testing.assert_allclose(_np(mean[k]), _np(x[k]).mean(0))
        np.testing.assert_allclose(_np(cov[k]), np.cov(_np(x[k]), rowvar=False, bias=True), rtol=1e-10)
        np.testing.assert_allclose(_np(var[k]), _np(x[k]).var(0), rtol=1e-10)
    _, cov_u = empirical_gaussian(x, diagonal=False, unbiased=True)
    np.testing.assert_allclose(_np(cov_u[0]), np.cov(_np(x[0]), rowvar=False), rtol=1e-10)
    # one sample: zero covariance (biased), plus the ridge
    m1, v1 = empirical_gaussian(x[0, :1], diagonal=True, ridge=1e-3)
    torch.testing.assert_close(m1, x[0, 0])
    torch.testing.assert_close(v1, torch.full((4,), 1e-3, dtype=DT))
    with pytest.raises(ValueError):
        empirical_gaussian(x[0, :1], unbiased=True)


def test_sqrtm_psd_gradients_finite_with_repeated_eigenvalues():
    gen = torch.Generator().manual_seed(18)
    a = torch.randn(5, 5, generator=gen, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: sqrtm_psd(m @ m.T + 0.1 * torch.eye(5, dtype=DT)), (a,))
    # W2 between N(0, s I) and N(0, 2 I): d/ds = d (1 - sqrt(2 / s)) / d... per diagonal entry 1 - sqrt(2/s)
    cov = torch.eye(5, dtype=DT).requires_grad_(True)
    zero = torch.zeros(5, dtype=DT)
    gaussian_w2_full(zero, cov, zero, 2.0 * torch.eye(5, dtype=DT)).backward()
    torch.testing.assert_close(cov.grad, (1.0 - math.sqrt(2.0)) * torch.eye(5, dtype=DT))
