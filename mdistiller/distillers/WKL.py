"""WKL: stage-adaptive KL-Wasserstein hybrid distillation (Chang et al.); math in :mod:`mdistiller.losses.wkl`."""
from ..losses.dkd import dkd_parts
from ..losses.kd import kd_loss
from ..losses.wkd import hard_target, wkd_feature_loss
from ..losses.schedules import SCHEDULES, wkl_weights
from ..losses.wkl import gaussian_feature_kl
from ..registry import register_distiller
from ._common import at_least_fp32
from .WKD import WKD

KL_TERMS = ("dkd", "kl")


@register_distiller("WKL")
class WKL(WKD):
    """Stage-adaptive KL-Wasserstein hybrid distillation (WKD + a scheduled KL-family term).

    WKD with a KL-side term ramped in by a schedule ``g(e)`` (1 at the start, 0
    at the end); it reads the ``WKD`` block and the ``WKL`` block. Default
    (``SCHEDULE cosine``, ``KL_TERM dkd``; the release's ``dwkd_dkd``)::

        CE_WEIGHT·CE + [L_t + γ(e)·W] + (1 − g(e))·KL_WEIGHT·DKD(α=1, β=2, T)
        g(e) = ½(1 + cos(π·e/E)),  E = SOLVER.EPOCHS

    with ``L_t``, ``W``, ``γ(e)`` and T those of WKD-L and DKD at the same T
    with its T² (:func:`~mdistiller.losses.dkd.dkd_parts`), no DKD warm-up.
    Schedules: :func:`~mdistiller.losses.schedules.wkl_ramp`,
    :func:`~mdistiller.losses.schedules.wkl_weights`.

    Loss dict: ``loss_ce``; ``loss_kd`` (Wasserstein side of the logits:
    ``w(e)·(L_t + γ(e)·W)``); ``loss_kl`` (KL side: ``(1 − g(e))·KL_WEIGHT·KL_TERM``);
    the logit terms are zero tensors when ``WKD.LOSS.WKD_LOGIT_WEIGHT`` is 0.
    ``loss_feat`` when WKD-F is on: ``w(e)·γ_F(e)·WKD-F + (1 − g(e))·FEAT_KL_WEIGHT·KL(N_t ‖ N_s)``
    (:func:`~mdistiller.losses.wkl.gaussian_feature_kl`; the release's
    hard-coded ``0.04·KL_WEIGHT`` is ``FEAT_KL_WEIGHT`` here). With
    ``EXPERIMENT.LOGIT_STAND`` the KL-side softmaxes (and WKD-L's non-target
    ones) are computed from z-scored logits.
    """

    # Defaults of the released WKL code (github.com/Chang-Heyu/WKL).
    DEFAULTS = {
        "KL_WEIGHT": 1.0,  # weight of the KL-side logit term (released as WKD.LOSS.KL_WEIGHT)
        "SCHEDULE": "cosine",  # "cosine": W side x1, KL side x(1-g), g = (1+cos(pi*t))/2 (release)
        #                        "linear": same with g = 1 - t; "complementary": W side x g, KL side x(1-g)
        "START_EPOCH": 0,  # t = clip((epoch - START) / (END - START), 0, 1)
        "END_EPOCH": -1,  # -1: SOLVER.EPOCHS
        "KL_TERM": "dkd",  # "dkd": DKD_ALPHA*TCKD + DKD_BETA*NCKD (x T^2) | "kl": T^2*KL (KD), at WKD.TEMPERATURE
        "DKD_ALPHA": 1.0,
        "DKD_BETA": 2.0,
        "FEAT_KL_WEIGHT": 0.0,  # > 0 (needs WKD_FEAT_WEIGHT > 0): + (1-g)*this*KL(N_t || N_s) of the hint features
        "FEAT_KL_EPS": 1.0,  # variance floor of that Gaussian KL (the release's 1.0)
    }
    # On top of WKD's parts: the KL side's weight and DKD's β, around the config's (the release's 0.5 and 2).
    KL_SPACE = {"WKL.KL_WEIGHT": {"factor": 10.0}, "WKL.DKD_BETA": {"factor": 8.0}}
    ALIASES = {"WKD.LOSS.KL_WEIGHT": "WKL.KL_WEIGHT"}

    @classmethod
    def label(cls, cfg):
        return "WKL"

    @classmethod
    def search_space(cls, cfg):
        """WKD's knobs of the parts that are on, plus ``KL_SPACE``."""
        return dict(super().search_space(cfg), **cls.KL_SPACE)

    @classmethod
    def variants(cls):
        return [({"WKD.COST_MATRIX": "fc", "WKD.LOSS.WKD_FEAT_WEIGHT": 0.0}, "fc cost")]

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        k = cfg.WKL
        self.kl_weight = k.KL_WEIGHT
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

    def side_weights(self, epoch):
        """``(wasserstein_side, kl_side)`` multipliers at ``epoch``."""
        return wkl_weights(epoch, self.epochs, self.schedule, self.start_epoch, self.end_epoch)

    def kl_side_term(self, logits_student, logits_teacher, target):
        """The unweighted KL-family term: ``α·TCKD + β·NCKD`` (``dkd``) or T²·KL (``kl``), at WKD.TEMPERATURE."""
        if self.kl_term == "dkd":
            tckd, nckd = dkd_parts(logits_student, logits_teacher, hard_target(target), self.kl_temperature)
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
        loss_kl = zero
        if kl_scale != 0:
            z_s, z_t = self.distillation_logits(logits_student, logits_teacher)
            loss_kl = kl_scale * self.kl_side_term(z_s, z_t, target)
        return loss_kd, loss_kl

    def logit_loss(self, logits_student, logits_teacher, target, epoch):
        """The whole logit distillation term ``loss_kd + loss_kl``."""
        loss_kd, loss_kl = self.logit_parts(logits_student, logits_teacher, target, epoch)
        return loss_kd + loss_kl

    def feature_loss(self, feat_student, feat_teacher, epoch):
        """``w(e)·γ_F(e)·WKD-F + (1 − g(e))·FEAT_KL_WEIGHT·KL_gauss`` (the student's map projected once)."""
        f_s = self.conv_reg(at_least_fp32(feat_student))
        f_t = at_least_fp32(feat_teacher)
        w_side, kl_side = self.side_weights(epoch)
        wkd_f = wkd_feature_loss(f_s, f_t, eps=self.eps, grid=self.spatial_grid, mean_cov_ratio=self.mean_cov_ratio)
        loss = (w_side * self.feat_weight_at(epoch)) * wkd_f
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
