"""``mdistiller.ot.sinkhorn_log`` against POT's ``ot.sinkhorn``/``ot.sinkhorn2`` (float64)."""
import numpy as np
import ot
import pytest
import torch

from mdistiller.ot import sinkhorn_log
from tests.ot.problems import cost_k, problem, to_np


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")  # POT warns when stopThr=0 stops it by count
@pytest.mark.parametrize("shared_cost", [False, True])
@pytest.mark.parametrize("num_iter", [1, 7, 30])
def test_sinkhorn_log_fixed_iterations_matches_pot(num_iter, shared_cost):
    a, b, cost = problem(shared_cost=shared_cost)
    reg = 0.2
    value, plan = sinkhorn_log(a, b, cost, reg, num_iter=num_iter, tol=0, return_plan=True)
    for k in range(a.shape[0]):
        ck = to_np(cost_k(cost, k))
        ref_plan = ot.sinkhorn(to_np(a[k]), to_np(b[k]), ck, reg, numItermax=num_iter, stopThr=0)
        ref_value = ot.sinkhorn2(to_np(a[k]), to_np(b[k]), ck, reg, numItermax=num_iter, stopThr=0)
        np.testing.assert_allclose(to_np(plan[k]), ref_plan, rtol=1e-10, atol=1e-14)
        assert value[k].item() == pytest.approx(float(ref_value), rel=1e-10)


def test_sinkhorn_log_converged_matches_pot():
    a, b, cost = problem(seed=2)
    reg = 0.1
    value, plan = sinkhorn_log(a, b, cost, reg, num_iter=5000, tol=1e-11, return_plan=True)
    np.testing.assert_allclose(to_np(plan.sum(2)), to_np(a), atol=1e-9)
    np.testing.assert_allclose(to_np(plan.sum(1)), to_np(b), atol=1e-9)
    for k in range(a.shape[0]):
        ref = ot.sinkhorn2(to_np(a[k]), to_np(b[k]), to_np(cost[k]), reg, numItermax=100000, stopThr=1e-13)
        assert value[k].item() == pytest.approx(float(ref), rel=1e-7)


def test_sinkhorn_log_small_reg_stays_finite_and_unbatched_shapes():
    a, b, cost = problem(batch=1, seed=3)
    value, plan = sinkhorn_log(a[0], b[0], cost[0] * 100.0, reg=1e-3, num_iter=200, tol=0, return_plan=True)
    assert plan.shape == cost[0].shape and value.dim() == 0
    assert torch.isfinite(plan).all() and torch.isfinite(value)
    assert sinkhorn_log(a, b, cost, 0.5, num_iter=5).shape == (1,)


def test_sinkhorn_log_detached_plan_gradient_is_the_plan():
    a, b, cost = problem(seed=4)
    cost = cost.clone().requires_grad_(True)
    value, plan = sinkhorn_log(a, b, cost, 0.3, num_iter=50, tol=0, detach_plan=True, return_plan=True)
    value.sum().backward()
    torch.testing.assert_close(cost.grad, plan)
    # unrolled gradient: finite and different
    cost2 = cost.detach().clone().requires_grad_(True)
    sinkhorn_log(a, b, cost2, 0.3, num_iter=50, tol=0).sum().backward()
    assert torch.isfinite(cost2.grad).all()


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_sinkhorn_log_none_is_uniform():
    _, _, cost = problem(seed=5, n=9, m=11)
    value = sinkhorn_log(None, None, cost, 0.2, num_iter=20, tol=0)
    uniform_a = torch.full((9,), 1 / 9, dtype=cost.dtype)
    uniform_b = torch.full((11,), 1 / 11, dtype=cost.dtype)
    assert torch.equal(value, sinkhorn_log(uniform_a, uniform_b, cost, 0.2, num_iter=20, tol=0))
    for k in range(cost.shape[0]):
        ref = ot.sinkhorn2(ot.unif(9), ot.unif(11), to_np(cost[k]), 0.2, numItermax=20, stopThr=0)
        assert value[k].item() == pytest.approx(float(ref), rel=1e-10)
