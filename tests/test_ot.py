"""The OT toolbox (mdistiller.ot: sinkhorn_log, ipot, emd, relaxed_emd, gaussian) against POT and closed forms.

Float64, small problems (n, m <= 40, batch <= 4). POT's own batched proximal
solver is not used as an oracle (it oscillates in 0.9.7).
"""
import math

import numpy as np
import ot
import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from mdistiller.ot import (
    emd,
    empirical_gaussian,
    gaussian_kl_diag,
    gaussian_kl_full,
    gaussian_w2_diag,
    gaussian_w2_full,
    ipot,
    pairwise_sqeuclidean,
    relaxed_emd,
    sinkhorn_log,
    sqrtm_psd,
)

DT = torch.float64




def _simplex(*shape, gen):
    x = torch.rand(*shape, generator=gen, dtype=DT) + 0.05
    return x / x.sum(-1, keepdim=True)


def _problem(batch=3, n=12, m=15, seed=0, shared_cost=False):
    gen = torch.Generator().manual_seed(seed)
    a = _simplex(batch, n, gen=gen)
    b = _simplex(batch, m, gen=gen)
    x = torch.randn(batch, n, 2, generator=gen, dtype=DT)
    y = torch.randn(batch, m, 2, generator=gen, dtype=DT) + 0.5
    cost = pairwise_sqeuclidean(x, y)
    if shared_cost:
        cost = cost[0]
    return a, b, cost


def _np(t):
    return t.detach().numpy()


def _cost_k(cost, k):
    return cost[k] if cost.dim() == 3 else cost


# ----------------------------------------------------------------------------- cost helper


def test_pairwise_sqeuclidean_matches_ot_dist():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 5, generator=gen, dtype=DT)
    y = torch.randn(9, 5, generator=gen, dtype=DT)
    np.testing.assert_allclose(_np(pairwise_sqeuclidean(x, y)), ot.dist(_np(x), _np(y)), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- Sinkhorn (log domain)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")  # POT warns when stopThr=0 stops it by count
@pytest.mark.parametrize("shared_cost", [False, True])
@pytest.mark.parametrize("num_iter", [1, 7, 30])
def test_sinkhorn_log_fixed_iterations_matches_pot(num_iter, shared_cost):
    a, b, cost = _problem(shared_cost=shared_cost)
    reg = 0.2
    plan, value = sinkhorn_log(a, b, cost, reg, num_iter=num_iter, tol=0)
    for k in range(a.shape[0]):
        ck = _np(_cost_k(cost, k))
        ref_plan = ot.sinkhorn(_np(a[k]), _np(b[k]), ck, reg, numItermax=num_iter, stopThr=0)
        ref_value = ot.sinkhorn2(_np(a[k]), _np(b[k]), ck, reg, numItermax=num_iter, stopThr=0)
        np.testing.assert_allclose(_np(plan[k]), ref_plan, rtol=1e-10, atol=1e-14)
        assert value[k].item() == pytest.approx(float(ref_value), rel=1e-10)


def test_sinkhorn_log_converged_matches_pot():
    a, b, cost = _problem(seed=2)
    reg = 0.1
    plan, value = sinkhorn_log(a, b, cost, reg, num_iter=5000, tol=1e-11)
    np.testing.assert_allclose(_np(plan.sum(2)), _np(a), atol=1e-9)
    np.testing.assert_allclose(_np(plan.sum(1)), _np(b), atol=1e-9)
    for k in range(a.shape[0]):
        ref = ot.sinkhorn2(_np(a[k]), _np(b[k]), _np(cost[k]), reg, numItermax=100000, stopThr=1e-13)
        assert value[k].item() == pytest.approx(float(ref), rel=1e-7)


def test_sinkhorn_log_small_reg_stays_finite_and_unbatched_shapes():
    a, b, cost = _problem(batch=1, seed=3)
    plan, value = sinkhorn_log(a[0], b[0], cost[0] * 100.0, reg=1e-3, num_iter=200, tol=0)
    assert plan.shape == cost[0].shape and value.dim() == 0
    assert torch.isfinite(plan).all() and torch.isfinite(value)
    assert sinkhorn_log(a, b, cost, 0.5, num_iter=5, return_plan=False).shape == (1,)


def test_sinkhorn_log_detached_plan_gradient_is_the_plan():
    a, b, cost = _problem(seed=4)
    cost = cost.clone().requires_grad_(True)
    plan, value = sinkhorn_log(a, b, cost, 0.3, num_iter=50, tol=0, detach_plan=True)
    value.sum().backward()
    torch.testing.assert_close(cost.grad, plan)
    # unrolled gradient: finite and different
    cost2 = cost.detach().clone().requires_grad_(True)
    sinkhorn_log(a, b, cost2, 0.3, num_iter=50, tol=0, return_plan=False).sum().backward()
    assert torch.isfinite(cost2.grad).all()


# ----------------------------------------------------------------------------- exact EMD


@pytest.mark.parametrize("shared_cost", [False, True])
def test_emd_matches_pot_emd2(shared_cost):
    a, b, cost = _problem(batch=4, n=20, m=25, seed=5, shared_cost=shared_cost)
    plan, value = emd(a, b, cost)
    assert plan.shape == (4, 20, 25) and value.shape == (4,)
    np.testing.assert_allclose(_np(plan.sum(2)), _np(a), atol=1e-12)
    np.testing.assert_allclose(_np(plan.sum(1)), _np(b), atol=1e-12)
    for k in range(4):
        ref = ot.emd2(_np(a[k]), _np(b[k]), _np(_cost_k(cost, k)))
        assert value[k].item() == pytest.approx(float(ref), rel=1e-9)
    # unbatched
    p0, v0 = emd(a[0], b[0], _cost_k(cost, 0))
    assert p0.shape == (20, 25) and v0.dim() == 0
    assert v0.item() == pytest.approx(value[0].item(), rel=1e-12)


def test_emd_zero_one_cost_is_half_l1():
    gen = torch.Generator().manual_seed(6)
    a, b = _simplex(5, 30, gen=gen), _simplex(5, 30, gen=gen)
    cost = 1.0 - torch.eye(30, dtype=DT)
    value = emd(a, b, cost, return_plan=False)
    torch.testing.assert_close(value, 0.5 * (a - b).abs().sum(-1))


def test_emd_line_cost_is_l1_between_cdfs():
    gen = torch.Generator().manual_seed(7)
    a, b = _simplex(5, 40, gen=gen), _simplex(5, 40, gen=gen)
    pos = torch.arange(40, dtype=DT)
    cost = (pos[:, None] - pos[None, :]).abs()
    value = emd(a, b, cost, return_plan=False)
    cdf_gap = (a.cumsum(-1) - b.cumsum(-1)).abs().sum(-1)
    torch.testing.assert_close(value, cdf_gap)


def test_emd_gradients_envelope_theorem():
    a, b, cost = _problem(batch=2, n=10, m=14, seed=8)
    cost = cost.clone().requires_grad_(True)
    a_g, b_g = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    plan, value = emd(a_g, b_g, cost)
    value.sum().backward()
    torch.testing.assert_close(cost.grad, plan)  # ∂EMD/∂C = P*
    for k in range(2):
        # POT's torch backend: gradients w.r.t. the marginals are the (centred) duals
        ak, bk = a[k].clone().requires_grad_(True), b[k].clone().requires_grad_(True)
        ot.emd2(ak, bk, cost[k].detach()).backward()
        centre = lambda g: g - g.mean()  # noqa: E731  (duals are defined up to a constant)
        torch.testing.assert_close(centre(a_g.grad[k]), centre(ak.grad), atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(centre(b_g.grad[k]), centre(bk.grad), atol=1e-9, rtol=1e-9)


def test_emd_gradient_matches_finite_differences_of_the_cost():
    a, b, cost = _problem(batch=1, n=6, m=6, seed=9)
    cost = cost[0].clone().requires_grad_(True)
    emd(a[0], b[0], cost, return_plan=False).backward()
    direction = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=DT)
    h = 1e-6
    up = emd(a[0], b[0], cost.detach() + h * direction, return_plan=False)
    down = emd(a[0], b[0], cost.detach() - h * direction, return_plan=False)
    assert ((up - down) / (2 * h)).item() == pytest.approx((cost.grad * direction).sum().item(), rel=1e-5)


# ----------------------------------------------------------------------------- relaxed EMD


def test_relaxed_emd_closed_form_and_lower_bound():
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(4, 16, 3, generator=gen, dtype=DT)
    y = torch.randn(4, 16, 3, generator=gen, dtype=DT) + 0.3
    cost = pairwise_sqeuclidean(x, y)
    r = relaxed_emd(cost)
    expected = torch.maximum(cost.min(-1).values.mean(-1), cost.min(-2).values.mean(-1))
    torch.testing.assert_close(r, expected)
    uniform = torch.full((4, 16), 1 / 16, dtype=DT)
    exact = emd(uniform, uniform, cost, return_plan=False)
    assert (r <= exact + 1e-12).all()
    # weighted form is a lower bound too
    a, b = _simplex(4, 16, gen=gen), _simplex(4, 16, gen=gen)
    assert (relaxed_emd(cost, a, b) <= emd(a, b, cost, return_plan=False) + 1e-12).all()
    # equality when the nearest-neighbour assignment is a permutation (y = shuffled x)
    perm = torch.randperm(16, generator=gen)
    c_same = pairwise_sqeuclidean(x, x[:, perm])
    torch.testing.assert_close(relaxed_emd(c_same), emd(uniform, uniform, c_same, return_plan=False))


# ----------------------------------------------------------------------------- IPOT


def _ipot_reference(a, b, cost, beta, num_iter, inner_iter):
    """Algorithm 1 of Xie et al. verbatim (linear domain), one problem."""
    n, m = cost.shape
    sigma = np.ones(m) / m
    g = np.exp(-cost / beta)
    t = np.ones((n, m))
    for _ in range(num_iter):
        q = g * t
        for _ in range(inner_iter):
            delta = a / (q @ sigma)
            sigma = b / (q.T @ delta)
        t = delta[:, None] * q * sigma[None, :]
    return t


@pytest.mark.parametrize("num_iter,inner_iter", [(1, 1), (5, 1), (4, 3)])
def test_ipot_follows_algorithm_1(num_iter, inner_iter):
    a, b, cost = _problem(seed=11)
    plan, value = ipot(a, b, cost, beta=0.5, num_iter=num_iter, inner_iter=inner_iter)
    for k in range(a.shape[0]):
        ref = _ipot_reference(_np(a[k]), _np(b[k]), _np(cost[k]), 0.5, num_iter, inner_iter)
        np.testing.assert_allclose(_np(plan[k]), ref, rtol=1e-9, atol=1e-15)
        assert value[k].item() == pytest.approx(float((ref * _np(cost[k])).sum()), rel=1e-9)


def test_ipot_small_beta_converges_to_exact_emd():
    a, b, cost = _problem(batch=2, n=15, m=20, seed=12)
    cost = cost / cost.amax((1, 2), keepdim=True)
    exact = torch.tensor([ot.emd2(_np(a[k]), _np(b[k]), _np(cost[k])) for k in range(2)], dtype=DT)
    plan, value = ipot(a, b, cost, beta=0.01, num_iter=300, inner_iter=3)
    torch.testing.assert_close(value, exact, rtol=1e-3, atol=0)
    np.testing.assert_allclose(_np(plan.sum(1)), _np(b), atol=1e-12)  # last sweep fixes the columns
    np.testing.assert_allclose(_np(plan.sum(2)), _np(a), atol=1e-3)


def test_ipot_init_product_shared_cost_and_gradients():
    a, b, cost = _problem(seed=13, shared_cost=True)
    p1, v1 = ipot(a, b, cost, beta=0.5, num_iter=3, init="product")
    for k in range(a.shape[0]):
        pk, vk = ipot(a[k], b[k], cost, beta=0.5, num_iter=3, init="product")
        torch.testing.assert_close(p1[k], pk)
    c = cost.clone().requires_grad_(True)
    plan, value = ipot(a, b, c, beta=0.5, num_iter=10, detach_plan=True)
    value.sum().backward()
    torch.testing.assert_close(c.grad, plan.sum(0))
    c2 = cost.clone().requires_grad_(True)
    ipot(a, b, c2, beta=0.5, num_iter=10, return_plan=False).sum().backward()
    assert torch.isfinite(c2.grad).all()


# ----------------------------------------------------------------------------- Gaussians


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
