"""Every method's losses and gradients on one fixed batch equal those recorded before the losses layer existed.

The fixture was written by ``tests/helpers/golden_losses.py`` at commit d268000.
Values whose arithmetic was only moved are expected to be bit-identical; where
operations were merged or reordered, within 1e-6 relative. The cases with cosine
costs between wide stage features (OTKD, WCoRD, their combination) within 5e-6
relative: since issue 12, ``ot.cosine_cost`` divides raw inner products by the
norms instead of normalizing copies of the features first (float32 rounding in a
different order, as accurate against float64: ``tests/ot/test_utils.py``); their
gradient projections moved by up to 2.8e-6.
"""
import json

import pytest

from tests.helpers.golden_losses import CASES, FIXTURE, run_case

with open(FIXTURE) as f:
    GOLDEN = json.load(f)


COSINE_COST_CASES = {"OTKD-ipot", "OTKD-ipot-detached", "OTKD-remd", "WCORD", "COMBINE-ipot-crd-kd"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_losses_and_gradients_unchanged(name):
    expected, got = GOLDEN[name], run_case(*CASES[name])
    rel = 5e-6 if name in COSINE_COST_CASES else 1e-6
    assert got["keys"] == expected["keys"]
    for key in expected["keys"]:
        assert got["losses"][key] == pytest.approx(expected["losses"][key], rel=rel, abs=1e-9), key
    assert got["logits_sum"] == pytest.approx(expected["logits_sum"], rel=1e-6, abs=1e-9)
    for part in ("student_grad", "extra_grad"):
        assert got[part] == pytest.approx(expected[part], rel=rel, abs=1e-9), part
