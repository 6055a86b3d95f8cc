"""Knowledge review (Chen et al. CVPR 2021), as in mdistiller.

The student's stage features (``feats``, or ``preact_feats`` with
``STU_PREACT``) plus its pooled feature (as a 1×1 map) are taken deepest
first; the deepest goes through an ABF without fusion, and each shallower one
through an ABF that fuses it with the upsampled residual of the level below
(attention-based fusion). Each ABF's output is compared with the teacher's
pre-ReLU feature of the same level (``preact_feats[1:]`` plus the pooled
feature) by the hierarchical context loss; the sum is scaled by
``REVIEWKD_WEIGHT · min(epoch / WARMUP_EPOCHS, 1)``.

``IN_CHANNELS``/``SHAPES`` describe the student's used levels and
``OUT_CHANNELS``/``OUT_SHAPES`` the teacher's, in mdistiller's orders: the
channel lists shallowest first (the pooled feature last), the spatial sizes
deepest first (the pooled feature's 1 first). A dry forward at construction
checks them against the models and lists the right values when they do not
match.

``state_dict``: ``abfs.<i>.conv1.{0,1}.*``, ``abfs.<i>.conv2.{0,1}.*`` and, for
every ABF but ``abfs.0`` (the deepest level), ``abfs.<i>.att_conv.0.*`` —
mdistiller's layout (``abfs.0`` is the deepest level).
"""
import warnings

import torch
import torch.nn as nn

from ..losses.reviewkd import hcl_loss
from ..losses.schedules import linear_warmup
from ..registry import register_distiller
from ._base import Distiller
from ._detection import FPN_LEVELS, RCNNDistiller
from ..ops import upsample_nearest
from ._common import at_least_fp32, probe_features, probe_input_size

# mdistiller builds the ABFs with min(512, IN_CHANNELS[-1]) channels whatever REVIEWKD.MAX_MID_CHANNEL says.
_MID_CHANNEL_CAP = 512


class ABF(nn.Module):
    """Attention-based fusion (Chen et al. 2021, Sec. 3.3, Fig. 3 and its released code).

    ``x`` (n × C_in × h × w) → 1×1 conv + BN → ``x'`` (C_mid). With a residual
    ``y`` from the deeper level (``fuse=True``): ``y`` is upsampled (nearest) to
    ``shape × shape`` (None: to ``x``'s h × w, as mdistiller's detection ABF), a 1×1 conv + sigmoid on
    ``[x', y]`` gives two maps ``a₀, a₁`` and ``x' ← x' · a₀ + y · a₁``. ``x'`` is resized (nearest) to
    ``out_shape`` if needed (None: never) and returned as the next residual, together with
    ``BN(conv3×3(x'))`` (C_out) as this level's output.
    """

    def __init__(self, in_channel, mid_channel, out_channel, fuse):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channel, mid_channel, kernel_size=1, bias=False),
            nn.BatchNorm2d(mid_channel),
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid_channel, out_channel, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(out_channel),
        )
        if fuse:
            self.att_conv = nn.Sequential(nn.Conv2d(mid_channel * 2, 2, kernel_size=1), nn.Sigmoid())
        else:
            self.att_conv = None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def attention(self, x, y):
        """``att_conv([x, y])`` (n × 2 × h × w) without concatenating ``x`` and ``y``: two batched products
        with the x and y halves of the 1×1 conv's weight (a 2-output conv is a poor fit for conv kernels)."""
        conv = self.att_conv[0]
        n, c, h, w = x.shape
        weight = conv.weight.view(2, 2 * c)
        z = torch.baddbmm(conv.bias.view(1, 2, 1).expand(n, 2, 1), weight[:, :c].expand(n, 2, c), x.reshape(n, c, h * w))
        z = torch.baddbmm(z, weight[:, c:].expand(n, 2, c), y.reshape(n, c, h * w))
        return torch.sigmoid(z).view(n, 2, h, w)

    def forward(self, x, y=None, shape=None, out_shape=None):
        n, _, h, w = x.shape
        x = self.conv1(x)
        if self.att_conv is not None:
            y = upsample_nearest(y, (h, w) if shape is None else shape)
            z = self.attention(x, y)
            x = x * z[:, 0].view(n, 1, h, w) + y * z[:, 1].view(n, 1, h, w)
        if out_shape is not None and x.shape[-1] != out_shape:
            x = upsample_nearest(x, out_shape)
        return self.conv2(x), x


def _as_map(pooled):
    return pooled.unsqueeze(-1).unsqueeze(-1)


def student_levels(feats, stu_preact=False):
    """The student's maps, shallowest first, pooled feature last (``preact_feats`` with ``stu_preact``)."""
    maps = feats["preact_feats"] if stu_preact else feats["feats"]
    return list(maps) + [_as_map(feats["pooled_feat"])]


def teacher_levels(feats):
    """The teacher's pre-ReLU stage maps after the stem, pooled feature last."""
    return list(feats["preact_feats"][1:]) + [_as_map(feats["pooled_feat"])]


def matching_levels(student, teacher, size, num_levels, stu_preact=False):
    """``{IN_CHANNELS, SHAPES, OUT_CHANNELS, OUT_SHAPES}`` of a student/teacher pair at input ``size``, as
    REVIEWKD's config needs them for ``num_levels`` student levels: channels shallowest first (the pooled
    feature last), spatial sizes deepest first (the pooled feature's 1 first) — mdistiller's orders."""
    s_levels = student_levels(probe_features(student, size), stu_preact)[-num_levels:]
    t_levels = teacher_levels(probe_features(teacher, size))
    return {
        "IN_CHANNELS": [f.shape[1] for f in s_levels],
        "SHAPES": [f.shape[-1] for f in s_levels][::-1],
        "OUT_CHANNELS": [f.shape[1] for f in t_levels],
        "OUT_SHAPES": [f.shape[-1] for f in t_levels][::-1],
    }


@register_distiller("REVIEWKD")
class REVIEWKD(Distiller):
    """Knowledge review: fused student stages vs teacher stages, hierarchical context loss (Chen et al. CVPR 2021)."""

    DEFAULTS = {
        "CE_WEIGHT": 1.0,
        "REVIEWKD_WEIGHT": 1.0,
        "WARMUP_EPOCHS": 20,
        "SHAPES": [1, 8, 16, 32],
        "OUT_SHAPES": [1, 8, 16, 32],
        "IN_CHANNELS": [64, 128, 256, 256],
        "OUT_CHANNELS": [64, 128, 256, 256],
        "MAX_MID_CHANNEL": 512,  # read but not used by mdistiller's ReviewKD (see docs/methods.md (REVIEWKD))
        "STU_PREACT": False,
    }
    SEARCH_SPACE = {"REVIEWKD.REVIEWKD_WEIGHT": {"factor": 10.0}}

    @classmethod
    def label(cls, cfg):
        return "ReviewKD"

    @classmethod
    def pair_settings(cls, cfg, student, teacher):
        """The level lists of the pair that differ from ``cfg``'s (:func:`matching_levels`)."""
        block = cfg.REVIEWKD
        wanted = matching_levels(student, teacher, probe_input_size(cfg), len(block.IN_CHANNELS), block.STU_PREACT)
        return {"REVIEWKD." + k: v for k, v in wanted.items() if v != list(block[k])}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        block = cfg.REVIEWKD
        self.ce_weight = block.CE_WEIGHT
        self.reviewkd_loss_weight = block.REVIEWKD_WEIGHT
        self.warmup_epochs = block.WARMUP_EPOCHS
        self.stu_preact = block.STU_PREACT
        self.shapes = list(block.SHAPES)
        self.out_shapes = list(block.OUT_SHAPES)
        in_channels, out_channels = list(block.IN_CHANNELS), list(block.OUT_CHANNELS)
        if not (len(in_channels) == len(out_channels) == len(self.shapes) == len(self.out_shapes)):
            raise ValueError(
                "REVIEWKD.IN_CHANNELS, OUT_CHANNELS, SHAPES and OUT_SHAPES need one entry per level; "
                "got {}, {}, {}, {}".format(in_channels, out_channels, self.shapes, self.out_shapes)
            )
        mid_channel = min(_MID_CHANNEL_CAP, in_channels[-1])
        if block.MAX_MID_CHANNEL != _MID_CHANNEL_CAP:
            warnings.warn(
                "REVIEWKD.MAX_MID_CHANNEL={} is not used: as in mdistiller, the ABF width is "
                "min(512, IN_CHANNELS[-1]) = {}".format(block.MAX_MID_CHANNEL, mid_channel),
                stacklevel=2,
            )
        self._check_levels(student, teacher, cfg, in_channels, out_channels)
        abfs = nn.ModuleList(
            [ABF(c_in, mid_channel, c_out, i < len(in_channels) - 1)
             for i, (c_in, c_out) in enumerate(zip(in_channels, out_channels))]
        )
        self.abfs = abfs[::-1]  # deepest level first

    def _check_levels(self, student, teacher, cfg, in_channels, out_channels):
        size = probe_input_size(cfg)
        got = matching_levels(student, teacher, size, len(in_channels), self.stu_preact)
        if got != {"IN_CHANNELS": in_channels, "SHAPES": self.shapes,
                   "OUT_CHANNELS": out_channels, "OUT_SHAPES": self.out_shapes}:
            raise ValueError(
                "REVIEWKD levels do not match the models at {}x{} input: set IN_CHANNELS {}, SHAPES {} (student {}, "
                "{}) and OUT_CHANNELS {}, OUT_SHAPES {} (teacher {}); the config has {}, {}, {}, {}".format(
                    size[0], size[1], got["IN_CHANNELS"], got["SHAPES"], cfg.DISTILLER.STUDENT,
                    "preact_feats" if self.stu_preact else "feats", got["OUT_CHANNELS"], got["OUT_SHAPES"],
                    cfg.DISTILLER.TEACHER, in_channels, self.shapes, out_channels, self.out_shapes,
                )
            )

    def fuse(self, feats_student):
        """The ABF outputs, shallowest first (one per level), from the student's feature dict."""
        x = [at_least_fp32(f) for f in student_levels(feats_student, self.stu_preact)[::-1]]
        out, residual = self.abfs[0](x[0], out_shape=self.out_shapes[0])
        results = [out]
        for feat, abf, shape, out_shape in zip(x[1:], self.abfs[1:], self.shapes[1:], self.out_shapes[1:]):
            out, residual = abf(feat, residual, shape, out_shape)
            results.insert(0, out)
        return results

    def distill_losses(self, student, teacher, target, epoch, **batch):
        results = self.fuse(student.feats)
        feats_t = [at_least_fp32(f) for f in teacher_levels(teacher.feats)]
        loss = self.reviewkd_loss_weight * linear_warmup(epoch, self.warmup_epochs) * hcl_loss(results, feats_t)
        return {"loss_kd": loss}


@register_distiller("REVIEWKD", task="detection")
class DetectionReviewKD(RCNNDistiller, REVIEWKD):
    """Knowledge review on the FPN maps: ABFs over the student's P2–P6 against the teacher's P2–P6 by ``hcl``
    (mdistiller's detection ReviewKD: ``build_kd_trans``, five levels, mid width min(512, FPN width); weight
    ``REVIEWKD.REVIEWKD_WEIGHT``, warm-up ``REVIEWKD.WARMUP_EPOCHS``: mdistiller's detection has none)."""

    ROI_LOGITS = False

    def __init__(self, student, teacher, cfg):
        Distiller.__init__(self, student, teacher)
        block = cfg.REVIEWKD
        self.reviewkd_loss_weight = block.REVIEWKD_WEIGHT
        self.warmup_epochs = block.WARMUP_EPOCHS
        c_s, c_t = student.backbone.out_channels, teacher.backbone.out_channels
        mid_channel = min(_MID_CHANNEL_CAP, c_s)
        abfs = nn.ModuleList([ABF(c_s, mid_channel, c_t, i < FPN_LEVELS - 1) for i in range(FPN_LEVELS)])
        self.abfs = abfs[::-1]  # deepest level (P6) first

    def fuse(self, levels):
        """The ABF outputs, shallowest first, from the student's FPN maps (shallowest first); each residual is
        resized to the next level's own size (mdistiller's detection ABF)."""
        x = levels[::-1]
        out, residual = self.abfs[0](x[0])
        results = [out]
        for feat, abf in zip(x[1:], self.abfs[1:]):
            out, residual = abf(feat, residual)
            results.insert(0, out)
        return results

    def distill_losses(self, student, teacher, target, epoch, **batch):
        results = self.fuse(student.feats["fpn"])
        loss = self.reviewkd_loss_weight * linear_warmup(epoch, self.warmup_epochs) * hcl_loss(results,
                                                                                            teacher.feats["fpn"])
        return {"loss_kd": loss}
