"""Every method's losses and gradients on one fixed batch, in float64, equal the recorded ones.

The fixture and its history are described in ``tests/helpers/golden_losses.py``.
Tolerance: 1e-10 relative (gradient projections: relative to the gradient's
norm). Float64 values moved by at most 6e-14 relative between AVX-512, AVX2 and
plain SSE kernels (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA / MKL_ENABLE_INSTRUCTIONS,
issue 18), so 1e-10 leaves room for other CPUs' summation orders while any change
of the arithmetic itself (float32 rounding is ~1e-7) fails.
"""
import json
import math

import pytest

from tests.helpers.golden_losses import CASES, FIXTURE, run_case

with open(FIXTURE) as f:
    GOLDEN = json.load(f)

REL = 1e-10


def _assert_projections(got, expected, what):
    """Three projections within REL of the gradient norm, and the squared norm within REL."""
    scale = math.sqrt(expected[3])
    assert got[:3] == pytest.approx(expected[:3], rel=0, abs=REL * scale + 1e-300), what
    assert got[3] == pytest.approx(expected[3], rel=REL, abs=1e-300), what


@pytest.mark.numerics
@pytest.mark.parametrize("name", sorted(CASES))
def test_losses_and_gradients_unchanged(name):
    expected, got = GOLDEN[name], run_case(*CASES[name])
    assert got["dtypes"] == ["torch.float64"]  # no loss term fell back to float32
    assert got["keys"] == expected["keys"]
    for key in expected["keys"]:
        assert got["losses"][key] == pytest.approx(expected["losses"][key], rel=REL, abs=1e-300), key
    assert got["logits_sum"] == pytest.approx(expected["logits_sum"], rel=REL, abs=1e-300)
    _assert_projections(got["student_grad"], expected["student_grad"], "student_grad")
    _assert_projections(got["extra_grad"], expected["extra_grad"], "extra_grad")
