"""Independent float64 references of the loss math (written from the papers' formulas / POT, not from mdistiller).

Shared by ``tests/losses`` (the pure functions) and ``tests/distillers`` (the methods).
"""
import math

import numpy as np
import ot
import torch
import torch.nn.functional as F
from torch.distributions import MultivariateNormal, kl_divergence


# --------------------------------------------------------------------------- CRD / WCoRD


def nce_reference(pos_neg_scores, num_data):
    """-1/B Σ_i [log(P0/(P0 + K/N)) + Σ_j log((K/N)/(Pj + K/N))], one term at a time (ε = 1e-7)."""
    total = 0.0
    for row in pos_neg_scores.tolist():
        m = len(row) - 1
        mpn = m / num_data
        total += math.log(row[0] / (row[0] + mpn + 1e-7))
        total += sum(math.log(mpn / (p + mpn + 1e-7)) for p in row[1:])
    return -total / len(pos_neg_scores)


# --------------------------------------------------------------------------- OTKD


def ipot_reference(cost, beta, num_iter):
    """Xie et al. (UAI 2019) Algorithm 1, L = 1, T⁽¹⁾ = 1 1ᵀ, σ = 1/m, uniform masses, float64."""
    c = cost.detach().double()
    n, m = c.shape
    g = torch.exp(-c / beta)
    t = torch.ones(n, m, dtype=torch.float64)
    sigma = torch.full((m,), 1.0 / m, dtype=torch.float64)
    for _ in range(num_iter):
        q = g * t
        delta = 1.0 / (n * (q @ sigma))
        sigma = 1.0 / (m * (q.t() @ delta))
        t = delta[:, None] * q * sigma[None, :]
    return t


def ipot_value_reference(cost, beta=20.0, num_iter=50):
    """Lohit & Jones Algorithm 1 (after Xie et al.; T⁰ = 11ᵀ, v = 1/b), uniform masses 1/b: ⟨T, C⟩,
    differentiable (autograd unrolls the iterations)."""
    b = cost.shape[0]
    w = torch.full((b,), 1.0 / b, dtype=cost.dtype)
    g, t, v = torch.exp(-cost / beta), torch.ones_like(cost), w.clone()
    for _ in range(num_iter):
        q = g * t
        u = w / (q @ v)
        v = w / (q.t() @ u)
        t = u[:, None] * q * v[None, :]
    return (t * cost).sum()


def hand_cost(f_s, f_t):
    """1 − cos between the flattened rows of ``f_s`` and ``f_t`` (Lohit & Jones Eq. 3), float64."""
    s = f_s.reshape(f_s.shape[0], -1).double()
    t = f_t.reshape(f_t.shape[0], -1).double()
    cos = (s @ t.t()) / (s.norm(dim=1)[:, None] * t.norm(dim=1)[None, :])
    return 1.0 - cos


# --------------------------------------------------------------------------- logit standardization


def zscore(z):
    """(z − mean) / (unbiased std + 1e-7) per row (Sun et al. CVPR 2024), written out."""
    mean = z.mean(1, keepdim=True)
    std = ((z - mean) ** 2).sum(1, keepdim=True).div(z.shape[1] - 1).sqrt()
    return (z - mean) / (std + 1e-7)


# --------------------------------------------------------------------------- KD, DKD (per sample)


def kd_reference(zs, zt, T):
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) per sample, batch mean (Hinton et al. 2015)."""
    total = 0.0
    for s, t in zip(zs, zt):
        ps = torch.exp(s / T) / torch.exp(s / T).sum()
        pt = torch.exp(t / T) / torch.exp(t / T).sum()
        total = total + (pt * (torch.log(pt) - torch.log(ps))).sum()
    return total / zs.shape[0] * T * T


def dkd_reference(zs, zt, y, alpha, beta, T):
    """α·TCKD + β·NCKD per sample, batch mean, times T² (Zhao et al. CVPR 2022, Eq. 7)."""
    total = 0.0
    for s, t, c in zip(zs, zt, y):
        ps = torch.exp(s / T) / torch.exp(s / T).sum()
        pt = torch.exp(t / T) / torch.exp(t / T).sum()
        bs = torch.stack([ps[c], 1 - ps[c]])
        bt = torch.stack([pt[c], 1 - pt[c]])
        tckd = (bt * (torch.log(bt) - torch.log(bs))).sum()
        keep = torch.arange(s.numel()) != c
        qs = torch.exp(s[keep] / T) / torch.exp(s[keep] / T).sum()
        qt = torch.exp(t[keep] / T) / torch.exp(t[keep] / T).sum()
        nckd = (qt * (torch.log(qt) - torch.log(qs))).sum()
        total = total + alpha * tckd + beta * nckd
    return total / zs.shape[0] * T * T


# --------------------------------------------------------------------------- WKD


def wkd_nontarget_reference(zs, zt, y, cost, T, reg, num_iter):
    """The WKD release's per-sample non-target Sinkhorn (gather the non-target entries, their own (C−1, C−1)
    cost, ``num_iter`` iterations from u = 1/(C−1)), batch mean of the transport costs."""
    total = 0.0
    for b in range(zs.shape[0]):
        keep = [c for c in range(zs.shape[1]) if c != int(y[b])]
        p, q = F.softmax(zs[b, keep] / T, 0), F.softmax(zt[b, keep] / T, 0)
        M = cost[keep][:, keep]
        K = torch.exp(-M / reg)
        u = torch.ones_like(p) / len(keep)
        for _ in range(num_iter):
            v = q / (K.t() @ u + 1e-8)
            u = p / (K @ v + 1e-8)
        total = total + (u[:, None] * K * v[None, :] * M).sum()
    return total / zs.shape[0]


# --------------------------------------------------------------------------- KD²M (numpy / POT)


def w2(x, y):
    u, v = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    return float(ot.emd2(u, v, ot.dist(x, y)))


def moments(x, eps, diagonal):
    mean = x.mean(0)
    if diagonal:
        return mean, np.sqrt(x.var(0) + eps)  # biased variance + ridge -> std
    return mean, np.cov(x, rowvar=False, bias=True).reshape(x.shape[1], x.shape[1]) + eps * np.eye(x.shape[1])


def gauss_w2(x, y, eps, diagonal):
    (mx, sx), (my, sy) = moments(x, eps, diagonal), moments(y, eps, diagonal)
    if diagonal:
        return float(((mx - my) ** 2).sum() + ((sx - sy) ** 2).sum())
    return float(ot.gaussian.bures_wasserstein_distance(mx, my, sx, sy)) ** 2


def gauss_kl(x, y, eps, diagonal):
    (mx, sx), (my, sy) = moments(x, eps, diagonal), moments(y, eps, diagonal)
    if diagonal:
        sx, sy = np.diag(sx**2), np.diag(sy**2)
    t = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    return float(kl_divergence(MultivariateNormal(t(mx), t(sx)), MultivariateNormal(t(my), t(sy))))


def per_class(fn, x, y, labels):
    """``Σ_c fn(x_c, y_c)`` over the classes present in ``labels`` (KD²M's released class-conditional sum)."""
    labels = np.asarray(labels)
    return float(np.sum([fn(x[labels == c], y[labels == c]) for c in np.unique(labels)]))


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
