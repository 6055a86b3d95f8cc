import pytest
import torch

from mdistiller.losses.standardize import standardize_logits


def test_zscore_per_sample_with_unbiased_std():
    z = torch.tensor([[1.0, 2.0, 3.0, 6.0], [-2.0, 0.0, 0.0, 2.0]], dtype=torch.float64)
    for row, out in zip(z.tolist(), standardize_logits(z).tolist()):
        mean = sum(row) / len(row)
        std = (sum((v - mean) ** 2 for v in row) / (len(row) - 1)) ** 0.5
        assert out == pytest.approx([(v - mean) / (std + 1e-7) for v in row], rel=1e-12)


def test_invariant_to_shift_and_scale():
    z = torch.randn(5, 10, dtype=torch.float64)
    torch.testing.assert_close(standardize_logits(3.0 * z + 7.0), standardize_logits(z), rtol=1e-6, atol=1e-6)
