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


def test_cosine_cost_of_wide_float32_rows_is_as_accurate_as_normalizing_them_first():
    # Stage-1 features of a CIFAR batch: 64 rows of 64·32·32 non-negative values. The cost is computed from raw
    # inner products and norms; normalizing the rows first is the textbook form. Both against float64.
    gen = torch.Generator().manual_seed(5)
    x64 = torch.relu(torch.randn(64, 65536, generator=gen, dtype=DT))
    y64 = torch.relu(torch.randn(64, 65536, generator=gen, dtype=DT))
    weights = torch.randn(64, 64, generator=gen, dtype=DT)

    def normalized_first(x, y):
        return 1.0 - torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(y, dim=-1).T

    def cost_and_grad(fn, dtype):
        x = x64.to(dtype).requires_grad_(True)
        c = fn(x, y64.to(dtype))
        (g,) = torch.autograd.grad((c * weights.to(dtype)).sum(), x)
        return c.double(), g.double()

    c_ref, g_ref = cost_and_grad(normalized_first, DT)
    c_64, g_64 = cost_and_grad(cosine_cost, DT)
    torch.testing.assert_close(c_64, c_ref, rtol=0, atol=1e-14)
    assert ((g_64 - g_ref).norm() / g_ref.norm()).item() < 1e-13
    errors = {}
    for name, fn in (("ours", cosine_cost), ("normalized first", normalized_first)):
        c, g = cost_and_grad(fn, torch.float32)
        errors[name] = ((c - c_ref).abs().max().item(), ((g - g_ref).norm() / g_ref.norm()).item())
    assert errors["ours"][0] < 2 * errors["normalized first"][0] + 1e-7, errors
    assert errors["ours"][1] < 2 * errors["normalized first"][1] + 1e-7, errors
