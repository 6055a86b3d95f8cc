"""WKD-L's non-target Sinkhorn solver (``mdistiller.losses.wkd``) against POT and the release's per-sample layout."""
import warnings

import torch
import torch.nn.functional as F

from mdistiller.losses.class_cost import prepare_cost_matrix
from mdistiller.losses.wkd import sinkhorn_nontarget
from mdistiller.ot import sinkhorn_kernel
from tests.helpers.distill_inputs import random_logits, raw_cost

REG, ITERS = 0.05, 10


def test_nontarget_transport_matches_pot():
    """POT's ``sinkhorn_knopp`` (u⁰ = 1/n, v-update first, numItermax full iterations with stopThr=0) computes
    exactly our plan on each sample's non-target sub-problem when our stabiliser ε is 0: the transport cost
    Σ P∘M matches to 1e-12. With the release's ε = 1e-8 in both denominators (what WKD uses) it differs by
    O(ε / (Kᵀu)) — a few 1e-6 relative here — and is checked to 1e-4."""
    import ot

    zs, zt, y = random_logits(5, 8)
    cost = prepare_cost_matrix(raw_cost(8), 1.0)
    # p, q over the non-target classes (softmax of the gathered logits), zero at the target
    mask = torch.ones(5, 8, dtype=torch.bool).scatter_(1, y.view(-1, 1), False)
    pn = torch.zeros(5, 8, dtype=torch.float64).masked_scatter_(mask, F.softmax(zs.detach()[mask].view(5, 7) / 4.0, 1))
    qn = torch.zeros(5, 8, dtype=torch.float64).masked_scatter_(mask, F.softmax(zt[mask].view(5, 7) / 4.0, 1))
    exact = sinkhorn_nontarget(pn, qn, cost, REG, ITERS, y, stab=0.0)
    stabilised = sinkhorn_nontarget(pn, qn, cost, REG, ITERS, y)
    for b in range(5):
        keep = mask[b]
        M = cost[keep][:, keep].numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = ot.sinkhorn(pn[b, keep].numpy(), qn[b, keep].numpy(), M, REG, numItermax=ITERS, stopThr=0.0,
                               warn=False)
        pot_w = float((plan * M).sum())
        assert abs(float(exact[b]) - pot_w) <= 1e-12 * max(1.0, abs(pot_w))
        assert abs(float(stabilised[b]) - pot_w) <= 1e-4 * abs(pot_w)


def test_precomputed_kernel_gives_the_same_iterates():
    g = torch.Generator().manual_seed(4)
    p = F.softmax(torch.randn(3, 7, generator=g, dtype=torch.float64), 1)
    q = F.softmax(torch.randn(3, 7, generator=g, dtype=torch.float64), 1)
    y = torch.tensor([0, 3, 6])
    cost = prepare_cost_matrix(raw_cost(7), 1.0)
    K, KM = sinkhorn_kernel(cost, REG)
    assert torch.equal(K, torch.exp(-cost / REG)) and torch.equal(KM, K * cost)
    w, plan = sinkhorn_nontarget(p, q, cost, REG, ITERS, y, return_plan=True)
    w_k, plan_k = sinkhorn_nontarget(p, q, None, REG, ITERS, y, kernel=(K, KM), return_plan=True)
    assert torch.equal(w, w_k) and torch.equal(plan, plan_k)
    assert (plan[torch.arange(3), y] == 0).all() and (plan[torch.arange(3), :, y] == 0).all()
