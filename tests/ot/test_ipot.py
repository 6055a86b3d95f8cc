"""``mdistiller.ot.ipot`` against Algorithm 1 of Xie et al. (UAI 2019) written out, and POT's exact EMD."""
import numpy as np
import ot
import pytest
import torch

from mdistiller.ot import ipot
from tests.ot.problems import DT, problem, to_np


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
    a, b, cost = problem(seed=11)
    value, plan = ipot(a, b, cost, beta=0.5, num_iter=num_iter, inner_iter=inner_iter, return_plan=True)
    for k in range(a.shape[0]):
        ref = _ipot_reference(to_np(a[k]), to_np(b[k]), to_np(cost[k]), 0.5, num_iter, inner_iter)
        np.testing.assert_allclose(to_np(plan[k]), ref, rtol=1e-9, atol=1e-15)
        assert value[k].item() == pytest.approx(float((ref * to_np(cost[k])).sum()), rel=1e-9)


def test_ipot_small_beta_converges_to_exact_emd():
    a, b, cost = problem(batch=2, n=15, m=20, seed=12)
    cost = cost / cost.amax((1, 2), keepdim=True)
    exact = torch.tensor([ot.emd2(to_np(a[k]), to_np(b[k]), to_np(cost[k])) for k in range(2)], dtype=DT)
    value, plan = ipot(a, b, cost, beta=0.01, num_iter=300, inner_iter=3, return_plan=True)
    torch.testing.assert_close(value, exact, rtol=1e-3, atol=0)
    np.testing.assert_allclose(to_np(plan.sum(1)), to_np(b), atol=1e-12)  # last sweep fixes the columns
    np.testing.assert_allclose(to_np(plan.sum(2)), to_np(a), atol=1e-3)


def test_ipot_init_product_shared_cost_and_gradients():
    a, b, cost = problem(seed=13, shared_cost=True)
    v1, p1 = ipot(a, b, cost, beta=0.5, num_iter=3, init="product", return_plan=True)
    for k in range(a.shape[0]):
        vk, pk = ipot(a[k], b[k], cost, beta=0.5, num_iter=3, init="product", return_plan=True)
        torch.testing.assert_close(p1[k], pk)
    c = cost.clone().requires_grad_(True)
    value, plan = ipot(a, b, c, beta=0.5, num_iter=10, detach_plan=True, return_plan=True)
    value.sum().backward()
    torch.testing.assert_close(c.grad, plan.sum(0))
    c2 = cost.clone().requires_grad_(True)
    ipot(a, b, c2, beta=0.5, num_iter=10).sum().backward()
    assert torch.isfinite(c2.grad).all()


def test_ipot_none_is_uniform():
    _, _, cost = problem(seed=14, n=8, m=10)
    value = ipot(None, None, cost, beta=0.5, num_iter=5)
    ref = ipot(torch.full((8,), 1 / 8, dtype=DT), torch.full((10,), 1 / 10, dtype=DT), cost, beta=0.5, num_iter=5)
    assert torch.equal(value, ref)
    for k in range(cost.shape[0]):
        t = _ipot_reference(ot.unif(8), ot.unif(10), to_np(cost[k]), 0.5, 5, 1)
        assert value[k].item() == pytest.approx(float((t * to_np(cost[k])).sum()), rel=1e-9)
