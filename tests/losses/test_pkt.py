"""PKT's loss equals the cosine-kernel probability closed form (Passalis & Tefas 2018, Section 3): value, gradient."""
import numpy as np
import pytest
import torch

from mdistiller.losses.pkt import cosine_kernel_probabilities, pkt_loss


def pkt_reference_numpy(f_s, f_t, eps=1e-7):
    """P[i, j] = K_ij / Σ_k K_ik with K = (cos + 1)/2 (norms + eps); mean_{ij} P_t log((P_t + eps)/(P_s + eps))."""
    probs = []
    for f in (np.asarray(f_s, np.float64), np.asarray(f_t, np.float64)):
        norms = np.sqrt((f ** 2).sum(1))
        cos = (f @ f.T) / np.outer(norms + eps, norms + eps)
        k = (cos + 1) / 2
        probs.append(k / k.sum(1, keepdims=True))
    p_s, p_t = probs
    return float(np.mean(p_t * np.log((p_t + eps) / (p_s + eps))))


def pkt_reference_torch(f_s, f_t, eps=0.0):
    """``Σ_ij P_t log((P_t + eps)/(P_s + eps)) / B²``.

    eps = 0: KL(P_t ‖ P_s) summed over rows, divided by B², with ``F.cosine_similarity``.
    """
    def probs(f):
        if eps == 0:
            cos = torch.nn.functional.cosine_similarity(f.unsqueeze(1), f.unsqueeze(0), dim=2, eps=0)
        else:
            norms = f.norm(dim=1) + eps
            cos = (f @ f.t()) / (norms[:, None] * norms[None, :])
        k = (cos + 1) / 2
        return k / k.sum(1, keepdim=True)

    p_s, p_t = probs(f_s), probs(f_t)
    return (p_t * ((p_t + eps).log() - (p_s + eps).log())).sum() / f_s.shape[0] ** 2


def _feats(seed, b=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 5, generator=g, dtype=torch.float64), torch.randn(b, 9, generator=g, dtype=torch.float64)


def test_probabilities_are_the_row_normalised_cosine_kernel():
    f, _ = _feats(0)
    p = cosine_kernel_probabilities(f, eps=0.0)
    cos = torch.nn.functional.cosine_similarity(f.unsqueeze(1), f.unsqueeze(0), dim=2)
    torch.testing.assert_close(p, ((cos + 1) / 2) / ((cos + 1) / 2).sum(1, keepdim=True))
    torch.testing.assert_close(p.sum(1), torch.ones(6, dtype=torch.float64))


def test_value_equals_closed_form():
    f_s, f_t = _feats(1)
    assert float(pkt_loss(f_s, f_t)) == pytest.approx(pkt_reference_numpy(f_s, f_t), rel=1e-12)
    # eps = 0: exactly the batch KL divergence divided by B²
    assert float(pkt_loss(f_s, f_t, eps=0.0)) == pytest.approx(float(pkt_reference_torch(f_s, f_t)), rel=1e-12)


def test_gradient_equals_closed_form():
    f_s, f_t = _feats(2)
    f_s.requires_grad_()
    (got,) = torch.autograd.grad(pkt_loss(f_s, f_t, eps=0.0), f_s)
    (ref,) = torch.autograd.grad(pkt_reference_torch(f_s, f_t), f_s)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-14)


def test_gradcheck():
    f_s, f_t = _feats(3)
    f_s.requires_grad_()
    assert torch.autograd.gradcheck(lambda s: pkt_loss(s, f_t), (f_s,))


def test_zero_rows_and_nan_rows_stay_finite():
    f_s, f_t = _feats(4)
    f_s = f_s.clone()
    f_s[0] = 0.0
    f_s[1] = float("nan")
    assert torch.isfinite(pkt_loss(f_s, f_t))
