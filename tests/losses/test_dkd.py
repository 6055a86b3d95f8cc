"""DKD (Zhao et al. CVPR 2022): value and gradient against the formula written out per sample."""
import math

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


def _release_tckd(zs, zt, y, T):
    """The release's TCKD: ``torch.log`` of the summed student probabilities."""
    mask = torch.nn.functional.one_hot(y, zs.shape[1]).bool()
    ps, pt = torch.softmax(zs / T, 1), torch.softmax(zt / T, 1)
    bs = torch.stack([(ps * mask).sum(1), (ps * ~mask).sum(1)], 1)
    bt = torch.stack([(pt * mask).sum(1), (pt * ~mask).sum(1)], 1)
    return torch.nn.functional.kl_div(torch.log(bs), bt, reduction="sum") * T**2 / zs.shape[0]


def test_a_saturated_student_gives_the_float64_value_where_the_release_overflows():
    # A student RoI 120 logits sure of its class: in float32 its non-target mass underflows to 0 and the release's
    # TCKD is inf (a detection run saw this at T = 1); the log-space form gives the float64 value.
    zs = torch.tensor([[120.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 0.5]])
    zt = torch.tensor([[2.0, 1.0, 0.0, 0.5], [0.0, 3.0, 1.0, 0.0]])
    y = torch.tensor([0, 1])
    assert torch.isinf(_release_tckd(zs, zt, y, 1.0))
    from mdistiller.losses.dkd import dkd_parts

    def log_sum_exp(values):
        top = max(values)
        return top + math.log(math.fsum(math.exp(v - top) for v in values))

    expected = []  # TCKD by its definition, per sample, in Python floats
    for s_row, t_row, k in zip(zs.tolist(), zt.tolist(), y.tolist()):
        others_s, others_t = s_row[:k] + s_row[k + 1:], t_row[:k] + t_row[k + 1:]
        log_bs = [s_row[k] - log_sum_exp(s_row), log_sum_exp(others_s) - log_sum_exp(s_row)]
        log_bt = [t_row[k] - log_sum_exp(t_row), log_sum_exp(others_t) - log_sum_exp(t_row)]
        expected.append(sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_bt, log_bs)))
    tckd = dkd_parts(zs, zt, y, 1.0)[0]
    assert tckd.item() == pytest.approx(sum(expected) / 2, rel=1e-5)
    ours = dkd_loss(zs.requires_grad_(), zt, y, 1.0, 0.25, 1.0)
    (grad,) = torch.autograd.grad(ours, zs)
    assert torch.isfinite(ours) and torch.isfinite(grad).all()
    # where the release is finite the two agree to rounding
    g = torch.Generator().manual_seed(2)
    zs2 = torch.randn(6, 9, generator=g, dtype=torch.float64) * 3
    zt2 = torch.randn(6, 9, generator=g, dtype=torch.float64) * 3
    y2 = torch.randint(0, 9, (6,), generator=g)
    assert dkd_parts(zs2, zt2, y2, 2.0)[0].item() == pytest.approx(_release_tckd(zs2, zt2, y2, 2.0).item(), rel=1e-12)
