"""RKD's potentials and loss against independent computations (float64 closed forms, explicit loops)."""
import itertools
import math

import pytest
import torch

from mdistiller.losses.rkd import angle_potential, distance_potential, pairwise_distances, rkd_loss


def _points(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def _huber(x):
    return torch.where(x.abs() < 1, 0.5 * x * x, x.abs() - 0.5)


def _reference_loss(s, t, wd, wa, squared=False):
    """Park et al. 2019: distances by ``torch.cdist``, μ over i≠j, cosines at each vertex by explicit loops."""
    n = s.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)

    def psi_d(e):
        d = torch.cdist(e, e).pow(2 if squared else 1)
        d = torch.where(off, d, torch.zeros_like(d))
        return d / d[off].mean()

    def psi_a(e):
        out = [[[None] * n for _ in range(n)] for _ in range(n)]
        for i, j, k in itertools.product(range(n), repeat=3):
            if j == i or k == i:
                out[i][j][k] = e.new_zeros(())
                continue
            u, v = e[j] - e[i], e[k] - e[i]
            out[i][j][k] = (u @ v) / (u.norm() * v.norm())
        return torch.stack([torch.stack([torch.stack(row) for row in plane]) for plane in out])

    loss_d = _huber(psi_d(s) - psi_d(t).detach()).mean()
    loss_a = _huber(psi_a(s) - psi_a(t).detach()).mean()
    return wd * loss_d + wa * loss_a


def test_pairwise_distances_match_cdist_with_zero_diagonal():
    e = _points()
    d = pairwise_distances(e)
    ref = torch.cdist(e, e)
    assert torch.allclose(d, ref.fill_diagonal_(0), atol=1e-10)
    assert torch.allclose(pairwise_distances(e, squared=True), ref.pow(2), atol=1e-10)
    assert (d.diagonal() == 0).all()


def test_distance_potential_closed_form_on_a_right_triangle():
    # 3-4-5 triangle: distances 3, 4, 5 (each twice), mean over the six ordered pairs = 4.
    e = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    psi = distance_potential(e)
    expected = torch.tensor([[0, 3, 4], [3, 0, 5], [4, 5, 0]], dtype=torch.float64) / 4.0
    assert torch.allclose(psi, expected, atol=1e-12)


def test_angle_potential_closed_form_on_a_right_triangle():
    e = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    psi = angle_potential(e)
    # right angle at vertex 0; at vertex 1 the angle between (e0-e1) and (e2-e1) has cosine 3/5; at vertex 2, 4/5.
    assert psi[0, 1, 2] == pytest.approx(0.0, abs=1e-12)
    assert psi[1, 0, 2] == pytest.approx(3 / 5, abs=1e-12)
    assert psi[2, 0, 1] == pytest.approx(4 / 5, abs=1e-12)
    assert psi[1, 0, 0] == pytest.approx(1.0) and psi[0, 0, 1] == 0 and psi[0, 1, 0] == 0


def test_rkd_loss_is_zero_for_a_scaled_and_translated_copy():
    t = _points()
    s = 3.0 * t + 1.0  # distances scale (ψ_D normalizes), angles are invariant
    assert rkd_loss(s, t).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("squared", [False, True])
def test_rkd_loss_value_and_gradient_match_the_reference(squared):
    t = _points(seed=1)
    s = _points(seed=2).requires_grad_(True)
    s_ref = s.detach().clone().requires_grad_(True)
    expected = _reference_loss(s_ref, t, 25, 50, squared)
    got = rkd_loss(s, t, squared=squared)
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)
    (g,) = torch.autograd.grad(got, s)
    (g_ref,) = torch.autograd.grad(expected, s_ref)
    assert torch.allclose(g, g_ref, rtol=1e-8, atol=1e-12)


def test_rkd_loss_weights_and_flattening():
    t = _points(n=4, d=12, seed=3).reshape(4, 3, 2, 2)
    s = _points(n=4, d=12, seed=4).reshape(4, 3, 2, 2)
    both = rkd_loss(s, t, distance_weight=2.0, angle_weight=0.0) + rkd_loss(s, t, distance_weight=0.0, angle_weight=3.0)
    assert rkd_loss(s, t, distance_weight=2.0, angle_weight=3.0).item() == pytest.approx(both.item(), rel=1e-12)
    assert rkd_loss(s, t).item() == pytest.approx(rkd_loss(s.reshape(4, -1), t.reshape(4, -1)).item(), rel=1e-12)


def test_teacher_gets_no_gradient():
    t = _points(seed=5).requires_grad_(True)
    s = _points(seed=6).requires_grad_(True)
    rkd_loss(s, t).backward()
    assert t.grad is None and s.grad is not None and math.isfinite(s.grad.abs().sum().item())
