"""Variational information distillation (Ahn et al. CVPR 2019) on every stage after the stem, as in mdistiller.

Per stage ``i ≥ 1`` of ``feats``: the larger map is average-pooled to the
other's height, a regressor ``conv1x1 → ReLU → conv1x1 → ReLU → conv1x1``
(student channels → teacher channels, no bias) predicts the teacher's map,
and :func:`mdistiller.losses.vid.vid_loss` scores it with per-channel
variances ``softplus(α) + EPS`` initialised to ``INIT_PRED_VAR``. The loss is
``FEAT_WEIGHT · Σ_i vid_loss_i``.

``state_dict``: ``regressors.<i>.{0,2,4}.weight`` as mdistiller's. The log-scales
α are non-persistent buffers that stay at their initial value: mdistiller keeps
them in a plain Python list, so they are neither saved nor optimized there
either (see docs/methods.md (VID)).
"""
import torch
import torch.nn as nn

from ..losses.vid import match_spatial, softplus_inverse, vid_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import at_least_fp32, probe_features, probe_input_size


def _conv1x1(in_channels, out_channels):
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, padding=0, bias=False, stride=1)


def vid_regressor(in_channels, out_channels):
    """mdistiller's VID regressor (keys ``0``, ``2``, ``4``: the three 1x1 convs)."""
    return nn.Sequential(
        _conv1x1(in_channels, out_channels),
        nn.ReLU(),
        _conv1x1(out_channels, out_channels),
        nn.ReLU(),
        _conv1x1(out_channels, out_channels),
    )


@register_distiller("VID")
class VID(Distiller):
    """Variational information distillation: Gaussian likelihood of teacher stages (Ahn et al. CVPR 2019)."""

    DEFAULTS = {
        "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 1.0},
        "EPS": 1e-5,
        "INIT_PRED_VAR": 5.0,
        "INPUT_SIZE": (32, 32),  # size of the dry forward that reads channel counts (fallback; see probe_input_size)
    }
    SEARCH_SPACE = {"VID.LOSS.FEAT_WEIGHT": {"factor": 10.0}}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.ce_weight = cfg.VID.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.VID.LOSS.FEAT_WEIGHT
        self.init_pred_var = cfg.VID.INIT_PRED_VAR
        self.eps = cfg.VID.EPS
        size = probe_input_size(cfg, cfg.VID.INPUT_SIZE)
        s_channels = [f.shape[1] for f in probe_features(student, size)["feats"][1:]]
        t_channels = [f.shape[1] for f in probe_features(teacher, size)["feats"][1:]]
        pairs = list(zip(s_channels, t_channels))
        self.regressors = nn.ModuleList([vid_regressor(s, t) for s, t in pairs])
        alpha = softplus_inverse(self.init_pred_var - self.eps)
        self.num_stages = len(pairs)
        for i, (_, t) in enumerate(pairs):
            self.register_buffer("log_scale_{}".format(i), torch.full((t,), alpha), persistent=False)

    @property
    def log_scales(self):
        """α of each stage (teacher channels), in stage order."""
        return [getattr(self, "log_scale_{}".format(i)) for i in range(self.num_stages)]

    def distill_losses(self, student, teacher, target, epoch, **batch):
        feats_s, feats_t = student.feats["feats"][1:], teacher.feats["feats"][1:]
        loss = 0
        for regressor, log_scale, f_s, f_t in zip(self.regressors, self.log_scales, feats_s, feats_t):
            f_s, f_t = match_spatial(at_least_fp32(f_s), at_least_fp32(f_t))
            loss = loss + vid_loss(regressor(f_s), f_t, log_scale, self.eps)
        return {"loss_kd": self.feat_loss_weight * loss}
