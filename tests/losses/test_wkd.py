"""mdistiller.losses.wkd: WKD-L against the release's per-sample algorithm, WKD-F against window statistics
written out by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from mdistiller.losses.class_cost import prepare_cost_matrix
from mdistiller.losses.wkd import (
    smallest_window,
    window_mean_std,
    wkd_feature_loss,
    wkd_feature_parts,
    wkd_logit_parts,
    wkd_nontarget_distance,
    wkd_target_loss,
)
from tests.helpers.distill_inputs import random_logits, raw_cost
from tests.helpers.loss_reference import wkd_nontarget_reference

REG, ITERS = 0.05, 10


# ----------------------------------------------------------------------------- references


def reference_wkd_l(zs, zt, target, raw, T, gamma, reg=REG, iters=ITERS):
    """The release's algorithm written out per sample: gather non-target entries, own (C−1, C−1) cost, loop."""
    s_i = F.log_softmax(zs, dim=1)
    t_i = F.softmax(zt, dim=1)
    loss_t = -torch.stack([t_i[b, target[b]].detach() * s_i[b, target[b]] for b in range(zs.shape[0])]).mean()
    return loss_t + gamma * wkd_nontarget_reference(zs, zt, target, F.relu(raw) + 1e-8, T, reg, iters)


# ----------------------------------------------------------------------------- WKD-L


@pytest.mark.parametrize("T,gamma", [(4.0, 1.0), (2.0, 30.0)])
def test_wkd_l_matches_per_sample_release_float64(T, gamma):
    zs, zt, y = random_logits(6, 9)
    raw = raw_cost(9)
    ref = reference_wkd_l(zs, zt, y, raw, T, gamma)
    (g_ref,) = torch.autograd.grad(ref, zs)
    loss_t, w = wkd_logit_parts(zs, zt, y, prepare_cost_matrix(raw, 0), T, REG, ITERS)
    ours = loss_t + gamma * w
    (g_ours,) = torch.autograd.grad(ours, zs)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-14)


def test_wkd_l_parts_are_the_two_terms():
    zs, zt, y = random_logits(5, 8)
    cost = prepare_cost_matrix(raw_cost(8), 1.0)
    loss_t, w = wkd_logit_parts(zs, zt, y, cost, 3.0, REG, ITERS)
    assert torch.equal(loss_t, wkd_target_loss(zs, zt, y))
    assert torch.equal(w, wkd_nontarget_distance(zs, zt, y, cost, 3.0, REG, ITERS))


@pytest.mark.numerics
def test_wkd_l_fp32_close_to_float64_reference():
    zs, zt, y = random_logits(8, 12)
    raw = raw_cost(12)
    ref = reference_wkd_l(zs, zt, y, raw, 4.0, 10.0)
    (g_ref,) = torch.autograd.grad(ref, zs)
    zs32 = zs.detach().float().requires_grad_(True)
    loss_t, w = wkd_logit_parts(zs32, zt.float(), y, prepare_cost_matrix(raw.float(), 0), 4.0, REG, ITERS)
    ours = loss_t + 10.0 * w
    (g_ours,) = torch.autograd.grad(ours, zs32)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_ours.double(), g_ref, rtol=1e-4, atol=1e-6)


def test_soft_labels_use_argmax():
    zs, zt, y = random_logits(5, 7)
    cost = prepare_cost_matrix(raw_cost(7), 1.0)
    soft = F.one_hot(y, 7).double() * 0.8 + 0.2 / 7
    a = wkd_logit_parts(zs, zt, y, cost, 4.0, REG, ITERS)
    b = wkd_logit_parts(zs, zt, soft, cost, 4.0, REG, ITERS)
    torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- WKD-F


def hand_window_stats(x, grid, eps):
    """Loops over windows with adaptive-pooling bounds start=floor(i·H/g), end=ceil((i+1)·H/g)."""
    B, C, H, W = x.shape
    mu = torch.zeros(B, C, grid, grid, dtype=x.dtype)
    sd = torch.zeros(B, C, grid, grid, dtype=x.dtype)
    for i in range(grid):
        h0, h1 = math.floor(i * H / grid), math.ceil((i + 1) * H / grid)
        for j in range(grid):
            w0, w1 = math.floor(j * W / grid), math.ceil((j + 1) * W / grid)
            block = x[:, :, h0:h1, w0:w1].reshape(B, C, -1)
            mu[:, :, i, j] = block.mean(-1)
            sd[:, :, i, j] = torch.sqrt(block.var(-1, unbiased=True) + eps)
    return mu, sd


@pytest.mark.parametrize("shape,grid", [((3, 4, 8, 8), 1), ((3, 4, 8, 8), 2), ((3, 4, 8, 8), 3), ((2, 5, 7, 7), 4),
                                        ((2, 3, 6, 9), 4), ((2, 3, 4, 4), 2)])
def test_wkd_f_matches_closed_form(shape, grid):
    g = torch.Generator().manual_seed(7)
    fs = torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)
    ft = torch.randn(*shape, generator=g, dtype=torch.float64) * 2 + 1
    eps = 1e-5
    mu_s, sd_s = hand_window_stats(fs, grid, eps)
    mu_t, sd_t = hand_window_stats(ft, grid, eps)
    ours_mu, ours_sd = window_mean_std(fs, grid, eps)
    torch.testing.assert_close(ours_mu, mu_s)
    torch.testing.assert_close(ours_sd, sd_s)
    torch.testing.assert_close(ours_mu, F.adaptive_avg_pool2d(fs, grid))
    B = shape[0]
    mean_ref = ((mu_s - mu_t) ** 2).sum() / (grid * grid * B)
    cov_ref = ((sd_s - sd_t) ** 2).sum() / (grid * grid * B)
    mean_loss, cov_loss = wkd_feature_parts(fs, ft, eps=eps, grid=grid)
    torch.testing.assert_close(mean_loss, mean_ref)
    torch.testing.assert_close(cov_loss, cov_ref)
    loss = wkd_feature_loss(fs, ft, eps=eps, grid=grid, mean_cov_ratio=3.0)
    ref = 3.0 * mean_ref + cov_ref
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(torch.autograd.grad(loss, fs)[0], torch.autograd.grad(ref, fs)[0])


@pytest.mark.parametrize("size,grid,expected", [(8, 4, 2), (7, 4, 2), (5, 4, 2), (8, 8, 1), (4, 3, 2), (9, 1, 9)])
def test_smallest_window(size, grid, expected):
    lengths = [math.ceil((i + 1) * size / grid) - math.floor(i * size / grid) for i in range(grid)]
    assert smallest_window(size, grid) == min(lengths) == expected
