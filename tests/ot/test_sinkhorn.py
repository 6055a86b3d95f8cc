"""``mdistiller.ot.sinkhorn_fixed`` (fixed-iteration Sinkhorn) against POT's ``sinkhorn_knopp`` (float64), and
``sinkhorn_masked`` against the per-sample sub-problems it stands for."""
import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from mdistiller.losses.class_cost import prepare_cost_matrix
from mdistiller.ot import sinkhorn_fixed, sinkhorn_masked
from tests.helpers.distill_inputs import raw_cost
from tests.ot.problems import DT, cost_k, problem, to_np


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("shared_cost", [False, True])
@pytest.mark.parametrize("num_iter", [1, 10])
def test_sinkhorn_fixed_without_stabiliser_matches_pot(num_iter, shared_cost):
    """POT's ``sinkhorn_knopp`` (u⁰ = 1/n, v-update first, stopThr=0) runs the same iterations when ε = 0."""
    a, b, cost = problem(seed=21, shared_cost=shared_cost)
    value, plan = sinkhorn_fixed(a, b, cost, 0.5, num_iter, stab=0.0, return_plan=True)
    for k in range(a.shape[0]):
        ck = to_np(cost_k(cost, k))
        ref = ot.sinkhorn(to_np(a[k]), to_np(b[k]), ck, 0.5, numItermax=num_iter, stopThr=0, warn=False)
        np.testing.assert_allclose(to_np(plan[k]), ref, rtol=1e-10, atol=1e-15)
        assert value[k].item() == pytest.approx(float((ref * ck).sum()), rel=1e-10)


def test_sinkhorn_fixed_none_is_uniform_and_unbatched_shapes():
    _, _, cost = problem(batch=2, n=6, m=8, seed=22)
    value = sinkhorn_fixed(None, None, cost, 0.5, 4)
    ua, ub = torch.full((2, 6), 1 / 6, dtype=DT), torch.full((2, 8), 1 / 8, dtype=DT)
    assert value.shape == (2,)
    assert torch.equal(value, sinkhorn_fixed(ua, ub, cost, 0.5, 4))
    v0, p0 = sinkhorn_fixed(None, None, cost[0], 0.5, 4, return_plan=True)
    assert v0.dim() == 0 and p0.shape == (6, 8)
    torch.testing.assert_close(v0, value[0], rtol=1e-13, atol=0)
    with pytest.raises(ValueError):
        sinkhorn_fixed(ua, ub[:, :7], cost, 0.5, 4)
    with pytest.raises(ValueError):
        sinkhorn_fixed(ua, ub, cost, 0.5, 0)


REG, ITERS = 0.05, 10


@pytest.mark.numerics
def test_shared_and_per_sample_cost_modes_agree():
    g = torch.Generator().manual_seed(3)
    B, n = 4, 6
    p = F.softmax(torch.randn(B, n, generator=g, dtype=torch.float64), 1)
    q = F.softmax(torch.randn(B, n, generator=g, dtype=torch.float64), 1)
    cost = prepare_cost_matrix(raw_cost(n), 1.0)
    w1, plan1 = sinkhorn_fixed(p, q, cost, REG, ITERS, return_plan=True)
    w2, plan2 = sinkhorn_fixed(p, q, cost.expand(B, n, n).clone(), REG, ITERS, return_plan=True)
    torch.testing.assert_close(w1, w2, rtol=1e-13, atol=0)
    torch.testing.assert_close(plan1, plan2, rtol=1e-13, atol=0)
    torch.testing.assert_close(w1, (plan1 * cost).sum((1, 2)), rtol=1e-13, atol=0)
    # masked shared kernel == gathered per-sample sub-costs (the release's layout)
    mask = torch.rand(B, n, generator=g) > 0.3
    mask[:, 0] = True
    mask[:, 1] = True
    wm = sinkhorn_masked(p, q, cost, REG, ITERS, mask)
    for b in range(B):
        keep = mask[b]
        pb, qb = p[b, keep] / p[b, keep].sum(), q[b, keep] / q[b, keep].sum()
        sub = sinkhorn_fixed(pb[None], qb[None], cost[keep][:, keep][None], REG, ITERS)
        wmb = sinkhorn_masked((p[b] * keep / p[b, keep].sum())[None], (q[b] * keep / q[b, keep].sum())[None],
                              cost, REG, ITERS, keep[None])
        torch.testing.assert_close(wmb, sub, rtol=1e-12, atol=0)
    assert wm.shape == (B,)
