"""Every method's losses and gradients on one fixed batch equal those recorded before the losses layer existed.

The fixture was written by ``tests/helpers/golden_losses.py`` at commit d268000.
Values whose arithmetic was only moved are expected to be bit-identical; where
operations were merged or reordered, within 1e-6 relative.
"""
import json

import pytest

from tests.helpers.golden_losses import CASES, FIXTURE, run_case

with open(FIXTURE) as f:
    GOLDEN = json.load(f)


@pytest.mark.parametrize("name", sorted(CASES))
def test_losses_and_gradients_unchanged(name):
    expected, got = GOLDEN[name], run_case(*CASES[name])
    assert got["keys"] == expected["keys"]
    for key in expected["keys"]:
        assert got["losses"][key] == pytest.approx(expected["losses"][key], rel=1e-6, abs=1e-9), key
    assert got["logits_sum"] == pytest.approx(expected["logits_sum"], rel=1e-6, abs=1e-9)
    for part in ("student_grad", "extra_grad"):
        assert got[part] == pytest.approx(expected[part], rel=1e-6, abs=1e-9), part
