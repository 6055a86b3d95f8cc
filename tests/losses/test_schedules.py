"""mdistiller.losses.schedules: WKD's cosine decay and WKL's stage schedules against their formulas."""
import math

import pytest

from mdistiller.losses.schedules import cosine_decay_weight, linear_warmup, wkl_ramp, wkl_weights

EPOCHS = 240


@pytest.mark.parametrize("decay,epochs", [(150, 240), (0, 100), (30, 100)])
def test_cosine_decay_boundaries(decay, epochs):
    w = 30.0
    for e in range(0, decay + 1):
        assert cosine_decay_weight(w, e, decay, epochs) == w
    assert abs(cosine_decay_weight(w, epochs, decay, epochs)) < 1e-12
    mid = decay + (epochs - decay) / 2
    assert math.isclose(cosine_decay_weight(w, mid, decay, epochs), w / 2, rel_tol=1e-12)
    assert 0 < cosine_decay_weight(w, decay + 1, decay, epochs) < w


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


def test_linear_warmup():
    assert [linear_warmup(e, 4) for e in (0, 1, 2, 4, 9)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert linear_warmup(1, 0) == 1.0 and linear_warmup(1, -5) == 1.0
