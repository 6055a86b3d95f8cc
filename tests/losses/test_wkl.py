"""mdistiller.losses.wkl: the stage schedules and the Gaussian feature KL against their formulas."""
import math

import pytest
import torch

from mdistiller.losses.wkl import gaussian_feature_kl, wkl_ramp, wkl_weights

EPOCHS = 240


def test_ramp_boundaries():
    # cosine (release): g = ½(1 + cos(π e / E))
    assert wkl_ramp(0, EPOCHS, "cosine") == 1.0
    assert wkl_ramp(EPOCHS / 2, EPOCHS, "cosine") == pytest.approx(0.5)
    assert wkl_ramp(EPOCHS, EPOCHS, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert wkl_ramp(60, EPOCHS, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert wkl_weights(EPOCHS, EPOCHS, "cosine") == (1.0, pytest.approx(1.0))
    # linear between START and END, flat outside
    for e, g in [(0, 1.0), (40, 1.0), (120, 0.5), (200, 0.0), (240, 0.0)]:
        assert wkl_ramp(e, EPOCHS, "linear", 40, 200) == pytest.approx(g, abs=1e-12)
    assert wkl_ramp(120, EPOCHS, "linear") == pytest.approx(0.5)
    # complementary: W side g, KL side 1 - g; END -1 = EPOCHS
    assert wkl_weights(0, EPOCHS, "complementary") == (1.0, 0.0)
    w_side, kl_side = wkl_weights(EPOCHS, EPOCHS, "complementary", 0, -1)
    assert w_side == pytest.approx(0.0, abs=1e-12) and kl_side == pytest.approx(1.0)
    assert wkl_weights(100, EPOCHS, "complementary", 20, 180) == (pytest.approx(0.5), pytest.approx(0.5))
    assert wkl_weights(10, EPOCHS, "complementary", 20, 180) == (1.0, 0.0)
    # degenerate window: a step
    assert wkl_ramp(9, EPOCHS, "cosine", 10, 10) == 1.0 and wkl_ramp(10, EPOCHS, "cosine", 10, 10) == 0.0
    with pytest.raises(ValueError):
        wkl_ramp(0, EPOCHS, "exp")


def test_gaussian_feature_kl_by_formula():
    g = torch.Generator().manual_seed(5)
    f_s = torch.randn(3, 4, 5, 5, generator=g).double()
    f_t = torch.randn(3, 4, 5, 5, generator=g).double() * 2 + 1
    eps = 1.0
    total = 0.0
    for b in range(3):
        for c in range(4):
            ms, mt = f_s[b, c].mean(), f_t[b, c].mean()
            ss = torch.sqrt(f_s[b, c].var() + eps)
            st = torch.sqrt(f_t[b, c].var() + eps)
            total = total + torch.log(ss / st) + (st**2 + (mt - ms) ** 2) / (2 * ss**2) - 0.5
    torch.testing.assert_close(gaussian_feature_kl(f_s, f_t, eps), total / 3)
