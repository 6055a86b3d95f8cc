"""WKL's own math: Chang et al., "Stage-Adaptive Knowledge Distillation via KL-Wasserstein Hybrid
Distribution Alignment" (release: github.com/Chang-Heyu/WKL, ``mdistiller/distillers/WKD.py``).

The stage schedule ``g(e)`` that moves weight from the Wasserstein side to the
KL side (:func:`wkl_ramp`, :func:`wkl_weights`) and the Gaussian feature KL of
the KL side (:func:`gaussian_feature_kl`). WKL's Wasserstein side is WKD's
(:mod:`mdistiller.losses.wkd`), its logit KL side is DKD or KD
(:mod:`mdistiller.losses.dkd`, :mod:`mdistiller.losses.kd`).
"""
import math

from ..ot.gaussian import gaussian_kl_diag
from .wkd import window_mean_std

__all__ = ["SCHEDULES", "gaussian_feature_kl", "wkl_ramp", "wkl_weights"]

SCHEDULES = ("cosine", "linear", "complementary")


def wkl_ramp(epoch, total_epochs, schedule="cosine", start_epoch=0, end_epoch=-1):
    """The schedule ``g(e)`` in [0, 1]: 1 up to ``start_epoch``, 0 from ``end_epoch`` on.

    ``t = clip((e − start)/(end − start), 0, 1)``, ``end_epoch < 0`` meaning
    ``total_epochs``; ``g = ½(1 + cos πt)`` (``cosine``, ``complementary``) or
    ``1 − t`` (``linear``); a step at ``start_epoch`` when end ≤ start. With the
    defaults the cosine form is the release's ``g_t = 0.5·(1 + cos(epoch/EPOCHS·π))``.
    """
    if schedule not in SCHEDULES:
        raise ValueError("Unknown WKL.SCHEDULE {!r}; valid: {}".format(schedule, ", ".join(SCHEDULES)))
    end = total_epochs if end_epoch < 0 else end_epoch
    if end <= start_epoch:
        return 1.0 if epoch < start_epoch else 0.0
    t = min(max((epoch - start_epoch) / (end - start_epoch), 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - t
    return 0.5 * (1.0 + math.cos(math.pi * t))


def wkl_weights(epoch, total_epochs, schedule="cosine", start_epoch=0, end_epoch=-1):
    """``(wasserstein_side, kl_side)`` multipliers at ``epoch``: ``(1, 1 − g)``, or ``(g, 1 − g)`` for ``complementary``.

    ``(1, 1 − g)`` is the released objective (``loss_dwkd + (1 − g_t)·KL_WEIGHT·loss_dkd``);
    ``(g, 1 − g)`` is the interpolation the paper describes (Fig. 1).
    """
    g = wkl_ramp(epoch, total_epochs, schedule, start_epoch, end_epoch)
    return (g if schedule == "complementary" else 1.0), 1.0 - g


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
