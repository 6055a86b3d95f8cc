"""WCoRD's local term: entropic OT under the cosine cost, checked against POT with the same iterations."""
import numpy as np
import ot
import pytest
import torch

from mdistiller.losses.wcord import wcord_local_loss
from tests.helpers.loss_reference import hand_cost

BATCH, DIM = 6, 5


def _embeddings(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, DIM, generator=g, dtype=torch.float64), torch.randn(BATCH, DIM, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("reg,num_iter", [(0.1, 30), (0.05, 100), (1.0, 5)])
def test_local_loss_matches_pot_sinkhorn2(reg, num_iter):
    v_s, v_t = _embeddings(0)
    w = np.full(BATCH, 1.0 / BATCH)
    expected = ot.sinkhorn2(w, w, hand_cost(v_s, v_t).numpy(), reg, numItermax=num_iter, stopThr=0, warn=False)
    assert wcord_local_loss(v_s, v_t, reg, num_iter).item() == pytest.approx(float(expected), rel=1e-10)


def test_local_loss_gradient_holds_the_plan_constant():
    v_s, v_t = _embeddings(1)
    v_s.requires_grad_(True)
    wcord_local_loss(v_s, v_t, 0.1, 30).backward()
    w = np.full(BATCH, 1.0 / BATCH)
    x = v_s.detach().clone().requires_grad_(True)
    cost = hand_cost(x, v_t)
    plan = torch.from_numpy(ot.sinkhorn(w, w, cost.detach().numpy(), 0.1, numItermax=30, stopThr=0, warn=False))
    (plan * cost).sum().backward()
    torch.testing.assert_close(v_s.grad, x.grad, rtol=1e-8, atol=1e-10)


def test_local_loss_is_scale_invariant_and_zero_cost_for_identical_directions():
    v_s, v_t = _embeddings(2)
    a = wcord_local_loss(v_s, v_t, 0.1, 30)
    torch.testing.assert_close(wcord_local_loss(3.0 * v_s, 0.5 * v_t, 0.1, 30), a)
    # identical sets: the diagonal costs are 0, so the value is below the uniform plan's mean cost
    same = wcord_local_loss(v_s, 2.0 * v_s, 0.01, 200)
    assert same.item() < hand_cost(v_s, v_s).mean().item()
