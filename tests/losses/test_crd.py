"""CRD's pure functions: contrastive scores, NCE loss and the memory update, against term-by-term references."""
import math

import pytest
import torch

from mdistiller.losses.crd import NCE_EPS, contrast_scores, crd_loss, l2_normalize, momentum_update, nce_loss
from tests.helpers.loss_reference import nce_reference

NUM_DATA, K, DIM, BATCH = 50, 6, 5, 4


def _unit_rows(n, d, seed):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def _contrast_index(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, NUM_DATA, (BATCH, K + 1), generator=g)


def test_l2_normalize_unit_rows():
    x = torch.randn(7, 3, dtype=torch.float64)
    out = l2_normalize(x)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(7, dtype=torch.float64))
    torch.testing.assert_close(out * x.norm(dim=1, keepdim=True), x)


def test_contrast_scores_one_pair_at_a_time():
    memory, v, idx, tau = _unit_rows(NUM_DATA, DIM, 0), _unit_rows(BATCH, DIM, 1), _contrast_index(2), 0.07
    scores = contrast_scores(memory, v, idx, tau)
    assert scores.shape == (BATCH, K + 1)
    for i in range(BATCH):
        for j in range(K + 1):
            expected = math.exp(float(memory[int(idx[i, j])] @ v[i]) / tau)
            assert scores[i, j].item() == pytest.approx(expected, rel=1e-12)


def test_nce_loss_matches_term_by_term_reference():
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(BATCH, K + 1, generator=g, dtype=torch.float64) * 0.3 + 1e-3
    assert nce_loss(scores, NUM_DATA).item() == pytest.approx(nce_reference(scores, NUM_DATA), rel=1e-12)
    assert NCE_EPS == 1e-7


def test_nce_loss_gradient_pushes_positive_up_and_negatives_down():
    scores = torch.full((BATCH, K + 1), 0.1, dtype=torch.float64, requires_grad=True)
    nce_loss(scores, NUM_DATA).backward()
    assert (scores.grad[:, 0] < 0).all() and (scores.grad[:, 1:] > 0).all()


def test_crd_loss_is_the_sum_of_both_sides():
    g = torch.Generator().manual_seed(4)
    s, t = (torch.rand(BATCH, K + 1, generator=g, dtype=torch.float64) + 1e-3 for _ in range(2))
    assert crd_loss(s, t, NUM_DATA).item() == pytest.approx(
        nce_reference(s, NUM_DATA) + nce_reference(t, NUM_DATA), rel=1e-12
    )


def test_momentum_update_mixes_then_normalises():
    rows, v, mu = _unit_rows(BATCH, DIM, 5), _unit_rows(BATCH, DIM, 6), 0.5
    new = momentum_update(rows, v, mu)
    for i in range(BATCH):
        mixed = mu * rows[i] + (1 - mu) * v[i]
        torch.testing.assert_close(new[i], mixed / mixed.norm())
    assert torch.equal(momentum_update(rows, v, 1.0), l2_normalize(rows))
