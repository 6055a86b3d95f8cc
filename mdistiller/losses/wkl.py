"""WKL's own math: Chang et al., "Stage-Adaptive Knowledge Distillation via KL-Wasserstein Hybrid
Distribution Alignment" (release: github.com/Chang-Heyu/WKL, ``mdistiller/distillers/WKD.py``).

The Gaussian feature KL of the KL side (:func:`gaussian_feature_kl`); the stage schedule ``g(e)`` that
moves weight from the Wasserstein side to the KL side is in :mod:`mdistiller.losses.schedules`
(:func:`~mdistiller.losses.schedules.wkl_ramp`, :func:`~mdistiller.losses.schedules.wkl_weights`). WKL's Wasserstein side is WKD's
(:mod:`mdistiller.losses.wkd`), its logit KL side is DKD or KD
(:mod:`mdistiller.losses.dkd`, :mod:`mdistiller.losses.kd`).
"""
from ..ot.gaussian import gaussian_kl_diag
from .wkd import window_mean_std

__all__ = ["gaussian_feature_kl"]

def gaussian_feature_kl(f_s, f_t, eps=1.0):
    """Batch mean of ``KL(N_t ‖ N_s)`` between per-image diagonal Gaussians of (B, C, H, W) feature maps.

    ``KL = ½ Σ_c (σ_t²/σ_s² + (μ_t − μ_s)²/σ_s² − 1 + 2 log(σ_s/σ_t))`` with
    per-channel mean ``μ`` and ``σ = sqrt(unbiased var + eps)`` over H×W
    (:func:`mdistiller.losses.wkd.window_mean_std` with grid 1,
    :func:`mdistiller.ot.gaussian_kl_diag`). Source: the WKL release's
    ``kl_feature_loss`` (its ``eps = 1.0``).
    """
    mu_s, sigma_s = window_mean_std(f_s, 1, eps)
    mu_t, sigma_t = window_mean_std(f_t, 1, eps)
    batch = f_s.shape[0]
    kl = gaussian_kl_diag(mu_t.reshape(batch, -1), sigma_t.reshape(batch, -1), mu_s.reshape(batch, -1), sigma_s.reshape(batch, -1))
    return kl.mean()
