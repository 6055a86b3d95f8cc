"""``mdistiller.ot.emd``, ``relaxed_emd`` and ``pairwise_sqeuclidean`` against POT and closed forms (float64)."""
import numpy as np
import ot
import pytest
import torch

from mdistiller.ot import emd, pairwise_sqeuclidean, relaxed_emd
from tests.ot.problems import DT, cost_k, problem, simplex, to_np

# ----------------------------------------------------------------------------- cost helper


def test_pairwise_sqeuclidean_matches_ot_dist():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 5, generator=gen, dtype=DT)
    y = torch.randn(9, 5, generator=gen, dtype=DT)
    np.testing.assert_allclose(to_np(pairwise_sqeuclidean(x, y)), ot.dist(to_np(x), to_np(y)), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- exact EMD


@pytest.mark.parametrize("shared_cost", [False, True])
def test_emd_matches_pot_emd2(shared_cost):
    a, b, cost = problem(batch=4, n=20, m=25, seed=5, shared_cost=shared_cost)
    value, plan = emd(a, b, cost, return_plan=True)
    assert plan.shape == (4, 20, 25) and value.shape == (4,)
    np.testing.assert_allclose(to_np(plan.sum(2)), to_np(a), atol=1e-12)
    np.testing.assert_allclose(to_np(plan.sum(1)), to_np(b), atol=1e-12)
    for k in range(4):
        ref = ot.emd2(to_np(a[k]), to_np(b[k]), to_np(cost_k(cost, k)))
        assert value[k].item() == pytest.approx(float(ref), rel=1e-9)
    # unbatched
    v0, p0 = emd(a[0], b[0], cost_k(cost, 0), return_plan=True)
    assert p0.shape == (20, 25) and v0.dim() == 0
    assert v0.item() == pytest.approx(value[0].item(), rel=1e-12)


def test_emd_none_is_uniform():
    _, _, cost = problem(batch=2, n=9, m=12, seed=19)
    value = emd(None, None, cost)
    for k in range(2):
        assert value[k].item() == pytest.approx(float(ot.emd2(ot.unif(9), ot.unif(12), to_np(cost[k]))), rel=1e-12)
    uniform = torch.full((12,), 1 / 12, dtype=DT)
    assert torch.equal(emd(None, uniform, cost), value)


def test_emd_zero_one_cost_is_half_l1():
    gen = torch.Generator().manual_seed(6)
    a, b = simplex(5, 30, gen=gen), simplex(5, 30, gen=gen)
    cost = 1.0 - torch.eye(30, dtype=DT)
    value = emd(a, b, cost)
    torch.testing.assert_close(value, 0.5 * (a - b).abs().sum(-1))


def test_emd_line_cost_is_l1_between_cdfs():
    gen = torch.Generator().manual_seed(7)
    a, b = simplex(5, 40, gen=gen), simplex(5, 40, gen=gen)
    pos = torch.arange(40, dtype=DT)
    cost = (pos[:, None] - pos[None, :]).abs()
    value = emd(a, b, cost)
    cdf_gap = (a.cumsum(-1) - b.cumsum(-1)).abs().sum(-1)
    torch.testing.assert_close(value, cdf_gap)


def test_emd_gradients_envelope_theorem():
    a, b, cost = problem(batch=2, n=10, m=14, seed=8)
    cost = cost.clone().requires_grad_(True)
    a_g, b_g = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    value, plan = emd(a_g, b_g, cost, return_plan=True)
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
    a, b, cost = problem(batch=1, n=6, m=6, seed=9)
    cost = cost[0].clone().requires_grad_(True)
    emd(a[0], b[0], cost).backward()
    direction = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=DT)
    h = 1e-6
    up = emd(a[0], b[0], cost.detach() + h * direction)
    down = emd(a[0], b[0], cost.detach() - h * direction)
    assert ((up - down) / (2 * h)).item() == pytest.approx((cost.grad * direction).sum().item(), rel=1e-5)


# ----------------------------------------------------------------------------- relaxed EMD


def test_relaxed_emd_closed_form_and_lower_bound():
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(4, 16, 3, generator=gen, dtype=DT)
    y = torch.randn(4, 16, 3, generator=gen, dtype=DT) + 0.3
    cost = pairwise_sqeuclidean(x, y)
    r = relaxed_emd(None, None, cost)
    expected = torch.maximum(cost.min(-1).values.mean(-1), cost.min(-2).values.mean(-1))
    torch.testing.assert_close(r, expected)
    uniform = torch.full((4, 16), 1 / 16, dtype=DT)
    exact = emd(uniform, uniform, cost)
    assert (r <= exact + 1e-12).all()
    # weighted form is a lower bound too
    a, b = simplex(4, 16, gen=gen), simplex(4, 16, gen=gen)
    assert (relaxed_emd(a, b, cost) <= emd(a, b, cost) + 1e-12).all()
    # equality when the nearest-neighbour assignment is a permutation (y = shuffled x)
    perm = torch.randperm(16, generator=gen)
    c_same = pairwise_sqeuclidean(x, x[:, perm])
    torch.testing.assert_close(relaxed_emd(None, None, c_same), emd(uniform, uniform, c_same))


@pytest.mark.parametrize("weighted", [False, True])
def test_relaxed_emd_plan_gives_the_value_and_one_marginal(weighted):
    gen = torch.Generator().manual_seed(20)
    cost = pairwise_sqeuclidean(torch.randn(3, 7, 2, generator=gen, dtype=DT), torch.randn(3, 9, 2, generator=gen, dtype=DT))
    a, b = (simplex(3, 7, gen=gen), simplex(3, 9, gen=gen)) if weighted else (None, None)
    value, plan = relaxed_emd(a, b, cost, return_plan=True)
    torch.testing.assert_close(value, relaxed_emd(a, b, cost), rtol=0, atol=0)
    torch.testing.assert_close((plan * cost).sum((-2, -1)), value, rtol=1e-12, atol=1e-14)
    a = torch.full((3, 7), 1 / 7, dtype=DT) if a is None else a
    b = torch.full((3, 9), 1 / 9, dtype=DT) if b is None else b
    for k in range(3):
        rows_ok = torch.allclose(plan[k].sum(1), a[k], atol=1e-14)
        cols_ok = torch.allclose(plan[k].sum(0), b[k], atol=1e-14)
        assert rows_ok or cols_ok
