"""WKL: stage-adaptive KL-Wasserstein hybrid distillation (Chang et al., "Stage-Adaptive
Knowledge Distillation via KL-Wasserstein Hybrid Distribution Alignment").

Wasserstein (global, geometric) alignment dominates early, KL-family (local,
probability) matching takes over late. WKL is WKD with a KL-side term ramped in
by a schedule ``g(e)`` (1 at the start, 0 at the end), so it subclasses
:class:`~mdistiller.distillers.WKD.WKD` and shares its cost matrix, Sinkhorn
kernel, projector and feature code; it reads the ``WKD`` block (plus
``WKD.LOSS.KL_WEIGHT``) and the ``WKL`` block.

Default objective (``WKL.SCHEDULE cosine``, ``WKL.KL_TERM dkd``; the released
WKL code, github.com/Chang-Heyu/WKL, ``distiller_name = "dwkd_dkd"``)::

    CE_WEIGHT·CE + [L_t + γ(e)·W] + (1 − g(e))·KL_WEIGHT·DKD(α=1, β=2, T)
    g(e) = ½(1 + cos(π·e/E)),  E = SOLVER.EPOCHS

with ``L_t``, ``W``, ``γ(e)`` and ``T`` exactly those of WKD-L
(:func:`~mdistiller.distillers.WKD.wkd_logit_parts`,
:func:`~mdistiller.distillers.WKD.cosine_decay_weight`, ``WKD.TEMPERATURE``)
and DKD at the same T with its T² (:func:`~mdistiller.distillers.DKD.dkd_parts`),
no DKD warm-up.

Schedules (``WKL.SCHEDULE``; ``t = clip((e − S)/(E_end − S), 0, 1)`` with
``S = START_EPOCH``, ``E_end = END_EPOCH``, −1 meaning ``SOLVER.EPOCHS``):

* ``cosine``        g = ½(1 + cos πt); Wasserstein side × 1, KL side × (1 − g)  (released code);
* ``linear``        g = 1 − t;         Wasserstein side × 1, KL side × (1 − g);
* ``complementary`` g = ½(1 + cos πt); Wasserstein side × g, KL side × (1 − g)  (the paper's form).

"Wasserstein side" is the WKD-L part ``L_t + γ(e)·W`` and, with features on,
the WKD-F term; "KL side" is ``KL_WEIGHT·KL_TERM`` on the logits and, when
``WKL.FEAT_KL_WEIGHT > 0``, ``FEAT_KL_WEIGHT·KL(N_t ‖ N_s)`` between the
per-image diagonal Gaussians (per channel over H×W, ``σ = sqrt(unbiased var +
FEAT_KL_EPS)``) of the projected student and the teacher stage-``HINT_LAYER``
features (the release's ``kl_feature_loss``; its hard-coded ``0.04·KL_WEIGHT``
is ``FEAT_KL_WEIGHT`` here).

As in WKD and the release, the logit terms (``loss_kd`` and ``loss_kl``) are on
when ``WKD.LOSS.WKD_LOGIT_WEIGHT > 0`` (zero tensors otherwise), the feature
terms (``loss_feat``, only then in the dict) when ``WKD.LOSS.WKD_FEAT_WEIGHT > 0``.
"""
import math

import torch.nn.functional as F

from ..ot.gaussian import gaussian_kl_diag
from ._base import fp32_losses
from ..losses.dkd import dkd_parts
from ..losses.kd import kd_loss
from ..registry import register_distiller
from .WKD import WKD, _hard_target, window_mean_std, wkd_feature_parts

SCHEDULES = ("cosine", "linear", "complementary")
KL_TERMS = ("dkd", "kl")


def wkl_ramp(epoch, total_epochs, schedule="cosine", start_epoch=0, end_epoch=-1):
    """The schedule ``g(e)`` in [0, 1]: 1 up to ``start_epoch``, 0 from ``end_epoch`` on.

    ``end_epoch < 0`` means ``total_epochs``. Between the two, cosine
    (``cosine``, ``complementary``) ``½(1 + cos(π·t))`` or linear (``linear``)
    ``1 − t`` in ``t = (e − start)/(end − start)``. With the defaults the cosine
    form is the release's ``g_t = 0.5·(1 + cos(epoch/EPOCHS·π))``.
    """
    if schedule not in SCHEDULES:
        raise ValueError("Unknown WKL.SCHEDULE {!r}; valid: {}".format(schedule, ", ".join(SCHEDULES)))
    end = total_epochs if end_epoch < 0 else end_epoch
    if end <= start_epoch:  # degenerate window: a step at start_epoch
        return 1.0 if epoch < start_epoch else 0.0
    t = min(max((epoch - start_epoch) / (end - start_epoch), 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - t
    return 0.5 * (1.0 + math.cos(math.pi * t))


def wkl_weights(epoch, total_epochs, schedule="cosine", start_epoch=0, end_epoch=-1):
    """``(wasserstein_side, kl_side)`` multipliers at ``epoch``: ``(1, 1 − g)``, or ``(g, 1 − g)`` for ``complementary``."""
    g = wkl_ramp(epoch, total_epochs, schedule, start_epoch, end_epoch)
    return (g if schedule == "complementary" else 1.0), 1.0 - g


def gaussian_feature_kl(f_s, f_t, eps=1.0):
    """Batch mean of KL(N_t ‖ N_s) between per-image diagonal Gaussians of (B, C, H, W) feature maps.

    Each image's Gaussian has per-channel mean and ``sqrt(unbiased var + eps)``
    over H×W (``window_mean_std`` with grid 1); the KL sums over channels
    (``mdistiller.ot.gaussian.gaussian_kl_diag``). The release's
    ``kl_feature_loss`` with its ``eps = 1.0``.
    """
    mu_s, sigma_s = window_mean_std(f_s, 1, eps)
    mu_t, sigma_t = window_mean_std(f_t, 1, eps)
    batch = f_s.shape[0]
    kl = gaussian_kl_diag(mu_t.reshape(batch, -1), sigma_t.reshape(batch, -1), mu_s.reshape(batch, -1), sigma_s.reshape(batch, -1))
    return kl.mean()


@register_distiller("WKL")
class WKL(WKD):
    """Stage-adaptive KL-Wasserstein hybrid distillation (WKD + a scheduled KL-family term).

    Loss dict: ``loss_ce``; ``loss_kd`` (Wasserstein side of the logits:
    ``w(e)·(L_t + γ(e)·W)``); ``loss_kl`` (KL side: ``(1 − g(e))·KL_WEIGHT·KL_TERM``);
    ``loss_feat`` when WKD-F is on (``w(e)·WKD-F + (1 − g(e))·FEAT_KL_WEIGHT·KL_gauss``).
    """

    @classmethod
    def label(cls, cfg):
        return "WKL"

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        k = cfg.WKL
        self.kl_weight = cfg.WKD.LOSS.KL_WEIGHT
        self.kl_temperature = cfg.WKD.TEMPERATURE
        self.schedule = str(k.SCHEDULE).lower()
        if self.schedule not in SCHEDULES:
            raise ValueError("Unknown WKL.SCHEDULE {!r}; valid: {}".format(k.SCHEDULE, ", ".join(SCHEDULES)))
        self.start_epoch = k.START_EPOCH
        self.end_epoch = k.END_EPOCH
        self.kl_term = str(k.KL_TERM).lower()
        if self.kl_term not in KL_TERMS:
            raise ValueError("Unknown WKL.KL_TERM {!r}; valid: {}".format(k.KL_TERM, ", ".join(KL_TERMS)))
        self.dkd_alpha = k.DKD_ALPHA
        self.dkd_beta = k.DKD_BETA
        self.feat_kl_weight = k.FEAT_KL_WEIGHT
        self.feat_kl_eps = k.FEAT_KL_EPS
        if self.feat_kl_weight > 0 and not self.enable_wkdf:
            raise ValueError(
                "WKL.FEAT_KL_WEIGHT > 0 needs the feature branch (projector): set WKD.LOSS.WKD_FEAT_WEIGHT > 0"
            )

    # -- schedule -------------------------------------------------------------

    def ramp(self, epoch):
        """g(e): 1 → 0 over the schedule's window."""
        return wkl_ramp(epoch, self.epochs, self.schedule, self.start_epoch, self.end_epoch)

    def side_weights(self, epoch):
        """``(wasserstein_side, kl_side)`` multipliers at ``epoch``."""
        return wkl_weights(epoch, self.epochs, self.schedule, self.start_epoch, self.end_epoch)

    # -- logits ---------------------------------------------------------------

    def kl_side_term(self, logits_student, logits_teacher, target):
        """The unweighted KL-family term: ``α·TCKD + β·NCKD`` (``dkd``) or T²·KL (``kl``), at WKD.TEMPERATURE."""
        if self.kl_term == "dkd":
            tckd, nckd = dkd_parts(logits_student, logits_teacher, _hard_target(target), self.kl_temperature)
            return self.dkd_alpha * tckd + self.dkd_beta * nckd
        return kd_loss(logits_student, logits_teacher, self.kl_temperature)

    def logit_parts(self, logits_student, logits_teacher, target, epoch):
        """``(loss_kd, loss_kl)``: the Wasserstein and KL sides of the logit objective at ``epoch``."""
        zero = logits_student.new_zeros(())
        if not self.enable_wkdl:
            return zero, zero
        w_side, kl_side = self.side_weights(epoch)
        loss_kd = super().logit_loss(logits_student, logits_teacher, target, epoch) if w_side != 0 else zero
        if w_side != 1.0:
            loss_kd = w_side * loss_kd
        kl_scale = kl_side * self.kl_weight
        loss_kl = kl_scale * self.kl_side_term(logits_student, logits_teacher, target) if kl_scale != 0 else zero
        return loss_kd, loss_kl

    def logit_loss(self, logits_student, logits_teacher, target, epoch):
        """The whole logit distillation term ``loss_kd + loss_kl`` (also used by the diagnostics)."""
        loss_kd, loss_kl = self.logit_parts(logits_student, logits_teacher, target, epoch)
        return loss_kd + loss_kl

    # -- features -------------------------------------------------------------

    def feature_loss(self, feat_student, feat_teacher, epoch):
        """``w(e)·γ_F(e)·WKD-F + (1 − g(e))·FEAT_KL_WEIGHT·KL_gauss`` (student before the projector, projected once)."""
        f_s = self.conv_reg(feat_student.float())
        f_t = feat_teacher.float()
        w_side, kl_side = self.side_weights(epoch)
        mean_loss, cov_loss = wkd_feature_parts(f_s, f_t, eps=self.eps, grid=self.spatial_grid)
        loss = (w_side * self.feat_weight_at(epoch)) * (self.mean_cov_ratio * mean_loss + cov_loss)
        kl_scale = kl_side * self.feat_kl_weight
        if kl_scale != 0:
            loss = loss + kl_scale * gaussian_feature_kl(f_s, f_t, self.feat_kl_eps)
        return loss

    def distill_losses(self, student, teacher, target, epoch, **batch):
        loss_kd, loss_kl = self.logit_parts(student.logits, teacher.logits, target, epoch)
        losses = {"loss_kd": loss_kd, "loss_kl": loss_kl}
        if self.enable_wkdf:
            losses["loss_feat"] = self.feature_loss(
                student.feats["feats"][self.hint_layer], teacher.feats["feats"][self.hint_layer], epoch
            )
        return losses
