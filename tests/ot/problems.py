"""Small random float64 OT problems shared by the tests of ``mdistiller.ot``."""
import torch

from mdistiller.ot import pairwise_sqeuclidean

DT = torch.float64


def simplex(*shape, gen):
    x = torch.rand(*shape, generator=gen, dtype=DT) + 0.05
    return x / x.sum(-1, keepdim=True)


def problem(batch=3, n=12, m=15, seed=0, shared_cost=False):
    gen = torch.Generator().manual_seed(seed)
    a = simplex(batch, n, gen=gen)
    b = simplex(batch, m, gen=gen)
    x = torch.randn(batch, n, 2, generator=gen, dtype=DT)
    y = torch.randn(batch, m, 2, generator=gen, dtype=DT) + 0.5
    cost = pairwise_sqeuclidean(x, y)
    if shared_cost:
        cost = cost[0]
    return a, b, cost


def to_np(t):
    return t.detach().numpy()


def cost_k(cost, k):
    return cost[k] if cost.dim() == 3 else cost
