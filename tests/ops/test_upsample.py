"""mdistiller.ops.upsample_nearest: F.interpolate's nearest resize, bit for bit, on a faster path where it can."""
import pytest
import torch

from mdistiller.ops import upsample_nearest


@pytest.mark.parametrize("in_size, out_size", [(1, 8), (1, 7), (8, 16), (16, 32), (7, 28), (4, 12), (6, 8), (5, 5)])
def test_upsample_nearest_equals_interpolate_bitwise(in_size, out_size):
    """ABF's resize equals ``F.interpolate(mode="nearest")`` bit for bit, value and gradient, on the fast
    path (one-pixel inputs, power-of-two factors) and on the fallback (factor 3, 8/6, identity)."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, in_size, in_size, requires_grad=True)
    got = upsample_nearest(x, out_size)
    expected = torch.nn.functional.interpolate(x, (out_size, out_size), mode="nearest")
    assert got.shape == expected.shape and torch.equal(got, expected)
    weights = torch.randn_like(expected)
    g_got, = torch.autograd.grad((got * weights).sum(), x)
    g_expected, = torch.autograd.grad((expected * weights).sum(), x)
    assert torch.equal(g_got, g_expected)


def test_upsample_nearest_takes_the_broadcast_copy_only_where_pixels_repeat_exactly():
    x = torch.randn(1, 1, 4, 4, requires_grad=True)
    assert upsample_nearest(x, 16).grad_fn.name().endswith("_RepeatUpsampleBackward")
    assert "UpsampleNearest2D" in upsample_nearest(x, 12).grad_fn.name()
    assert upsample_nearest(x, 4) is x
    x_cl = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    up = upsample_nearest(x_cl, 8)
    assert up.is_contiguous(memory_format=torch.channels_last)  # the layout F.interpolate keeps
    assert torch.equal(up, torch.nn.functional.interpolate(x_cl, (8, 8), mode="nearest"))
