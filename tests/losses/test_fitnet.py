"""FitNet's hint loss (Romero et al. 2015, Eq. (3), as a mean) in value and gradient."""
import numpy as np
import pytest
import torch

from mdistiller.losses.fitnet import hint_loss


def test_value_and_gradient_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    loss = hint_loss(a, b)
    assert float(loss.detach()) == pytest.approx(np.mean((a.detach().numpy() - b.numpy()) ** 2), rel=1e-12)
    (grad,) = torch.autograd.grad(loss, a)
    torch.testing.assert_close(grad, 2 * (a.detach() - b) / a.numel())
