"""OTKD's stage loss (Lohit & Jones 2022): Eq. (3) cosine cost, IPOT (Algorithm 1; unrolled and detached-plan
gradients; POT's exact EMD as its small-β limit) and REMD (Eq. 8)."""
import numpy as np
import ot
import pytest
import torch

from mdistiller.losses.otkd import SOLVERS, ot_stage_loss, otkd_loss
from tests.helpers.loss_reference import hand_cost, ipot_reference, ipot_value_reference

BATCH = 6


def _features(seed, shape=(4, 3, 3)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, *shape, generator=g, dtype=torch.float64), torch.randn(BATCH, *shape, generator=g, dtype=torch.float64)


def test_ipot_matches_algorithm_1():
    f_s, f_t = _features(0)
    cost = hand_cost(f_s, f_t)
    expected = (ipot_reference(cost, 20.0, 50) * cost).sum()
    torch.testing.assert_close(ot_stage_loss(f_s, f_t, "ipot", 20.0, 50), expected, rtol=1e-10, atol=1e-12)


def test_ipot_small_beta_reaches_exact_emd():
    f_s, f_t = _features(1)
    w = np.full(BATCH, 1.0 / BATCH)
    expected = ot.emd2(w, w, hand_cost(f_s, f_t).numpy())
    assert ot_stage_loss(f_s, f_t, "ipot", 0.1, 300).item() == pytest.approx(float(expected), rel=1e-6)


def test_remd_closed_form():
    f_s, f_t = _features(2)
    cost = hand_cost(f_s, f_t)
    expected = torch.maximum(cost.min(1).values.mean(), cost.min(0).values.mean())
    torch.testing.assert_close(ot_stage_loss(f_s, f_t, "remd"), expected)


def test_default_gradient_unrolls_ipot():
    """Default (Sec. 3.1): autograd through the N iterations, equal to autograd through Algorithm 1."""
    f_s, f_t = _features(3)
    x = f_s.clone().requires_grad_(True)
    ot_stage_loss(x, f_t, "ipot", 20.0, 50).backward()
    y = f_s.clone().requires_grad_(True)
    ipot_value_reference(hand_cost(y, f_t)).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-9, atol=1e-12)


def test_detached_plan_gradient_option():
    """detach_plan=True: the envelope gradient, that of Σ T*.detach() ⊙ C; not the unrolled one."""
    f_s, f_t = _features(3)
    x = f_s.clone().requires_grad_(True)
    ot_stage_loss(x, f_t, "ipot", 20.0, 50, detach_plan=True).backward()
    y = f_s.clone().requires_grad_(True)
    cost = hand_cost(y, f_t)
    (ipot_reference(cost, 20.0, 50) * cost).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-8, atol=1e-10)
    z = f_s.clone().requires_grad_(True)
    ot_stage_loss(z, f_t, "ipot", 20.0, 50).backward()
    assert torch.isfinite(z.grad).all() and not torch.allclose(z.grad, x.grad)


def test_otkd_loss_sums_stages_and_rejects_unknown_solver():
    stages = [_features(4), _features(5, shape=(7,))]
    total = otkd_loss([s for s, _ in stages], [t for _, t in stages], "remd")
    expected = sum(ot_stage_loss(s, t, "remd") for s, t in stages)
    torch.testing.assert_close(total, expected)
    assert SOLVERS == ("ipot", "remd")
    with pytest.raises(ValueError, match="solver"):
        ot_stage_loss(*stages[0], solver="sinkhorn")


def _four_stages(seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 4, 4), (16, 2, 2), (32, 1, 1), (24,)]
    student = [torch.randn(BATCH, *s, generator=g, dtype=dtype).requires_grad_(True) for s in shapes]
    teacher = [torch.randn(BATCH, *s, generator=g, dtype=dtype) for s in shapes]
    return student, teacher


@pytest.mark.parametrize("solver", SOLVERS)
def test_otkd_loss_solves_all_stages_in_one_call_with_the_per_stage_result(solver, monkeypatch):
    """The stages' costs are stacked into one solver call; value and gradient are those of the stage-by-stage
    sum (the same floating-point operations on each (B, B) problem)."""
    import mdistiller.losses.otkd as otkd

    f_s, f_t = _four_stages(6)
    expected = 0.0
    for s, t in zip(f_s, f_t):
        expected = expected + ot_stage_loss(s, t, solver, 20.0, 50)
    expected_grads = torch.autograd.grad(expected, f_s)
    calls = []
    solve = otkd._solve
    monkeypatch.setattr(otkd, "_solve", lambda cost, *a: calls.append(tuple(cost.shape)) or solve(cost, *a))
    total = otkd_loss(f_s, f_t, solver, 20.0, 50)
    assert calls == [(4, BATCH, BATCH)]
    assert torch.equal(total, expected)
    for got, want in zip(torch.autograd.grad(total, f_s), expected_grads):
        assert torch.equal(got, want)


def test_otkd_loss_mixed_dtypes_fall_back_to_one_call_per_stage():
    f_s, f_t = _four_stages(7, dtype=torch.float64)
    f_s = [f.detach() for f in f_s]
    f_s[0], f_t[0] = f_s[0].float(), f_t[0].float()
    expected = sum(ot_stage_loss(s, t).item() for s, t in zip(f_s, f_t))
    assert otkd_loss(f_s, f_t).item() == pytest.approx(expected, rel=1e-6)
