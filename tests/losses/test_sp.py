"""SP's similarity matrices and loss against explicit float64 computations."""
import pytest
import torch

from mdistiller.losses.sp import similarity_matrix, sp_loss


def _feats(shape=(5, 3, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _reference_gram(f):
    """G[i, j] = <a_i, a_j> / sqrt(Σ_k <a_i, a_k>²), by loops."""
    a = f.reshape(f.shape[0], -1)
    b = a.shape[0]
    rows = []
    for i in range(b):
        raw = torch.stack([torch.dot(a[i], a[j]) for j in range(b)])
        rows.append(raw / torch.sqrt((raw * raw).sum()))
    return torch.stack(rows)


def test_similarity_matrix_matches_loops():
    f = _feats()
    assert torch.allclose(similarity_matrix(f), _reference_gram(f), atol=1e-12)


def test_similarity_matrix_closed_form_orthogonal_rows():
    # orthogonal samples: A Aᵀ is diagonal, each row normalizes to a unit vector
    f = torch.diag(torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64))
    assert torch.allclose(similarity_matrix(f), torch.eye(3, dtype=torch.float64))


def test_sp_loss_value_and_gradient_match_reference():
    t = _feats(seed=1)
    s = _feats(shape=(5, 7, 2, 2), seed=2).requires_grad_(True)  # channels/sizes may differ: only b × b is compared
    s_ref = s.detach().clone().requires_grad_(True)
    got = sp_loss(s, t)
    diff = _reference_gram(t) - _reference_gram(s_ref)
    expected = (diff ** 2).sum() / 25
    assert got.shape == () and got.item() == pytest.approx(expected.item(), rel=1e-12)
    (g,) = torch.autograd.grad(got, s)
    (g_ref,) = torch.autograd.grad(expected, s_ref)
    assert torch.allclose(g, g_ref, rtol=1e-9, atol=1e-14)


def test_sp_loss_invariances():
    t = _feats(seed=3)
    s = _feats(seed=4)
    assert sp_loss(t, t).item() == pytest.approx(0.0, abs=1e-15)
    # a global scale of the student multiplies every Gram entry by c², which the row normalization removes
    assert sp_loss(7.0 * s, t).item() == pytest.approx(sp_loss(s, t).item(), rel=1e-12)
