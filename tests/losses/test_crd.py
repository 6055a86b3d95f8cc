"""CRD's pure functions: contrastive scores, NCE loss and the memory update, against term-by-term references."""
import math

import pytest
import torch

from mdistiller.losses.crd import (
    NCE_EPS,
    contrast_scores,
    crd_loss,
    l2_normalize,
    momentum_update,
    nce_loss,
    use_bank_product,
)
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


@pytest.mark.parametrize("bank_product", [None, True, False])
def test_contrast_scores_one_pair_at_a_time(bank_product):
    memory, v, idx, tau = _unit_rows(NUM_DATA, DIM, 0), _unit_rows(BATCH, DIM, 1), _contrast_index(2), 0.07
    scores = contrast_scores(memory, v, idx, tau, bank_product=bank_product)
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


def test_bank_product_and_gather_agree_in_value_and_gradient():
    """float32 at a size where the bank product is chosen: the same scores, NCE loss and gradient up to the
    summation order of the dot products."""
    num_data, k, dim, batch = 600, 255, 16, 8
    assert not use_bank_product(num_data, batch, k + 1, dim)  # the rule gathers at this size; both are forced below
    memory = _unit_rows(num_data, dim, 5).float()
    idx = torch.randint(0, num_data, (batch, k + 1), generator=torch.Generator().manual_seed(6))
    results = []
    for bank_product in (True, False):
        v = _unit_rows(batch, dim, 7).float().requires_grad_(True)
        scores = contrast_scores(memory, v, idx, 0.07, bank_product=bank_product)
        loss = nce_loss(scores / (scores.detach().mean() * num_data), num_data)
        loss.backward()
        results.append((scores.detach(), loss.detach(), v.grad))
    (s_p, l_p, g_p), (s_g, l_g, g_g) = results
    torch.testing.assert_close(s_p, s_g, rtol=1e-5, atol=0)
    torch.testing.assert_close(l_p, l_g, rtol=1e-6, atol=0)
    torch.testing.assert_close(g_p, g_g, rtol=1e-5, atol=1e-7)


def test_bank_product_gradient_uses_the_bank_as_scored():
    """The bank is updated in place after scoring (ContrastMemory's momentum update); the gradient is that of
    the scores against the bank as it was."""
    memory, idx = _unit_rows(NUM_DATA, DIM, 8), _contrast_index(9)
    v = _unit_rows(BATCH, DIM, 10).requires_grad_(True)
    (expected,) = torch.autograd.grad(contrast_scores(memory.clone(), v, idx, 0.07).log().sum(), v)
    scores = contrast_scores(memory, v, idx, 0.07, bank_product=True)
    memory.index_copy_(0, idx[:, 0], torch.zeros(BATCH, DIM, dtype=memory.dtype))
    (got,) = torch.autograd.grad(scores.log().sum(), v)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_bank_product_rule():
    assert use_bank_product(50000, 64, 16385, 128)  # CIFAR-100, CRD's K = 16384: one product
    assert not use_bank_product(1281167, 256, 16385, 128)  # ImageNet: the bank is 78x K+1, gather
    assert not use_bank_product(40, 6, 9, 8)  # tiny problems gather
