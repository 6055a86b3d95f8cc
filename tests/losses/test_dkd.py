"""DKD (Zhao et al. CVPR 2022): value and gradient against the formula written out per sample."""
import pytest
import torch

from mdistiller.losses.dkd import dkd_loss
from tests.helpers.loss_reference import dkd_reference as _dkd_reference


@pytest.mark.parametrize("alpha,beta,T", [(1.0, 8.0, 4.0), (1.0, 0.5, 1.0), (2.0, 2.0, 2.0)])
def test_dkd_loss_equals_formula_value_and_gradient(alpha, beta, T):
    g = torch.Generator().manual_seed(1)
    zs = (torch.randn(5, 7, generator=g, dtype=torch.float64) * 2).requires_grad_()
    zt = torch.randn(5, 7, generator=g, dtype=torch.float64) * 2
    y = torch.tensor([0, 3, 6, 2, 3])
    ours = dkd_loss(zs, zt, y, alpha, beta, T)
    ref = _dkd_reference(zs, zt, y, alpha, beta, T)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    (g1,) = torch.autograd.grad(ours, zs)
    (g2,) = torch.autograd.grad(_dkd_reference(zs, zt, y, alpha, beta, T), zs)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)
