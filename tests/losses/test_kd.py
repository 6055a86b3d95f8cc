"""KD (Hinton et al. 2015): value and gradient against the formula written out per sample."""
import pytest
import torch

from mdistiller.losses.kd import kd_loss
from tests.helpers.loss_reference import kd_reference as _kd_reference


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kd_loss_equals_formula_value_and_gradient(T):
    g = torch.Generator().manual_seed(0)
    zs = (torch.randn(6, 10, generator=g, dtype=torch.float64) * 3).requires_grad_()
    zt = torch.randn(6, 10, generator=g, dtype=torch.float64) * 3
    ours = kd_loss(zs, zt, T)
    ref = _kd_reference(zs, zt, T)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    (g1,) = torch.autograd.grad(ours, zs)
    (g2,) = torch.autograd.grad(_kd_reference(zs, zt, T), zs)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)
