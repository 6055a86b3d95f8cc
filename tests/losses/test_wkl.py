"""mdistiller.losses.wkl: the Gaussian feature KL against its formula."""
import torch

from mdistiller.losses.wkl import gaussian_feature_kl


def test_gaussian_feature_kl_by_formula():
    g = torch.Generator().manual_seed(5)
    f_s = torch.randn(3, 4, 5, 5, generator=g).double()
    f_t = torch.randn(3, 4, 5, 5, generator=g).double() * 2 + 1
    eps = 1.0
    total = 0.0
    for b in range(3):
        for c in range(4):
            ms, mt = f_s[b, c].mean(), f_t[b, c].mean()
            ss = torch.sqrt(f_s[b, c].var() + eps)
            st = torch.sqrt(f_t[b, c].var() + eps)
            total = total + torch.log(ss / st) + (st**2 + (mt - ms) ** 2) / (2 * ss**2) - 0.5
    torch.testing.assert_close(gaussian_feature_kl(f_s, f_t, eps), total / 3)
