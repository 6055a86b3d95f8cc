"""The shared helpers of ``mdistiller.ot``: the cosine ground cost and uniform / batched histograms."""
import numpy as np
import ot
import pytest
import torch

from mdistiller.ot import cosine_cost
from mdistiller.ot._utils import batch_problem, uniform
from tests.ot.problems import DT, to_np


def test_cosine_cost_matches_pot_and_batches():
    gen = torch.Generator().manual_seed(23)
    x = torch.randn(3, 7, 5, generator=gen, dtype=DT)
    y = torch.randn(3, 9, 5, generator=gen, dtype=DT)
    c = cosine_cost(x, y)
    assert c.shape == (3, 7, 9)
    for k in range(3):
        ref = ot.dist(to_np(x[k]), to_np(y[k]), metric="cosine")
        np.testing.assert_allclose(to_np(c[k]), ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(cosine_cost(x[k], y[k]), c[k], rtol=1e-14, atol=1e-15)
    zero = torch.zeros(2, 5, dtype=DT)
    assert torch.equal(cosine_cost(zero, y[0]), torch.ones(2, 9, dtype=DT))  # eps: a zero row costs 1


def test_uniform_and_batch_problem():
    like = torch.zeros(1, dtype=torch.float32)
    assert torch.equal(uniform(4, like), torch.full((4,), 0.25))
    assert uniform(3, like, dtype=DT, batch=2).shape == (2, 3) and uniform(3, like, dtype=DT).dtype == DT
    cost = torch.rand(2, 4, 5, dtype=DT)
    a, b, c, batched = batch_problem(None, None, cost)
    assert batched and a.shape == (2, 4) and b.shape == (2, 5) and c is cost
    assert torch.equal(a, torch.full((2, 4), 0.25, dtype=DT)) and torch.equal(b, torch.full((2, 5), 0.2, dtype=DT))
    a, b, c, batched = batch_problem(None, torch.full((3, 5), 0.2), cost[0])
    assert batched and a.shape == (3, 4) and c.shape == (3, 4, 5)
    assert not batch_problem(None, None, cost[0])[3]
    with pytest.raises(ValueError):
        batch_problem(torch.full((3, 4), 0.25), None, cost)
    with pytest.raises(ValueError):
        batch_problem(None, torch.full((4,), 0.25), cost)
