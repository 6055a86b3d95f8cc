"""Overhaul of feature distillation (Heo et al. ICCV 2019), as in mdistiller.

On the last ``k`` stages, ``k = min(len(student.get_stage_channels()[1:]),
len(teacher.get_stage_channels()[1:]), len(teacher.get_bn_before_relu()))``:
a connector (conv k×k without bias + BN, student → teacher channels) maps the
student's pre-ReLU feature, the teacher's pre-ReLU feature is average-pooled
to the student's size, and :func:`mdistiller.losses.ofd.ofd_loss` compares
them with the per-channel margins of the teacher's BN before each ReLU. Stage
``i`` of ``k`` is weighted ``1 / 2^(k-1-i)`` (the deepest weighs 1) and the sum
is multiplied by ``FEAT_WEIGHT``.

As in mdistiller (and the authors' code), the teacher stays in train mode
while the distiller trains: its BNs normalize with batch statistics and update
their running statistics (it still gets no gradient).

``state_dict``: ``connectors.connectors.<i>.0.weight`` (conv) and
``connectors.connectors.<i>.1.*`` (BN), as mdistiller's. The margins are
derived from the teacher's BNs at construction and kept as non-persistent
buffers ``margin_<i>`` (mdistiller does not save them either).
"""
import math

import torch.nn as nn
import torch.nn.functional as F

from ..losses.ofd import ofd_loss, ofd_margin
from ..registry import register_distiller
from ._base import Distiller
from ._common import at_least_fp32


def _last(items, count):
    return list(items)[len(items) - count:]


def ofd_connector(in_channels, out_channels, kernel_size=1):
    """Conv (no bias, 'same' padding, weights ~ N(0, 2/(k²·C_out))) + BN(weight 1, bias 0)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=1,
                     padding=(kernel_size - 1) // 2, bias=False)
    bn = nn.BatchNorm2d(out_channels)
    conv.weight.data.normal_(0, math.sqrt(2.0 / (kernel_size * kernel_size * out_channels)))
    bn.weight.data.fill_(1)
    bn.bias.data.zero_()
    return nn.Sequential(conv, bn)


class ConnectorConvBN(nn.Module):
    """The per-stage connectors (``connectors.<i>``), mdistiller's module layout."""

    def __init__(self, s_channels, t_channels, kernel_size=1):
        super().__init__()
        if len(s_channels) != len(t_channels):
            raise ValueError("unequal numbers of student and teacher stages: {} vs {}".format(s_channels, t_channels))
        self.s_channels, self.t_channels = list(s_channels), list(t_channels)
        self.connectors = nn.ModuleList(
            [ofd_connector(s, t, kernel_size) for s, t in zip(s_channels, t_channels)]
        )

    def forward(self, feats):
        return [connector(f) for connector, f in zip(self.connectors, feats)]


@register_distiller("OFD")
class OFD(Distiller):
    """Overhaul of feature distillation: partial L2 to margin-ReLU'd teacher features (Heo et al. ICCV 2019)."""

    DEFAULTS = {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 0.001}, "CONNECTOR": {"KERNEL_SIZE": 1}}
    SEARCH_SPACE = {"OFD.LOSS.FEAT_WEIGHT": {"factor": 10.0}}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.ce_weight = cfg.OFD.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.OFD.LOSS.FEAT_WEIGHT
        t_channels = teacher.get_stage_channels()[1:]
        s_channels = student.get_stage_channels()[1:]
        bns = teacher.get_bn_before_relu()
        self.num_stages = min(len(t_channels), len(s_channels), len(bns))
        self.connectors = ConnectorConvBN(
            _last(s_channels, self.num_stages), _last(t_channels, self.num_stages), cfg.OFD.CONNECTOR.KERNEL_SIZE
        )
        for i, bn in enumerate(_last(bns, self.num_stages)):
            self.register_buffer("margin_{}".format(i), ofd_margin(bn.weight, bn.bias), persistent=False)

    @property
    def margins(self):
        """Per-stage margins, (1, C_t, 1, 1) each, shallowest first."""
        return [getattr(self, "margin_{}".format(i)) for i in range(self.num_stages)]

    def train(self, mode=True):
        """Train mode for every submodule, the teacher included (mdistiller's OFD)."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def distill_losses(self, student, teacher, target, epoch, **batch):
        k = self.num_stages
        feats_s = _last(student.feats["preact_feats"][1:], k)
        feats_t = _last(teacher.feats["preact_feats"][1:], k)
        loss = 0
        stages = zip(self.connectors.connectors, self.margins, feats_s, feats_t)
        for i, (connector, margin, f_s, f_t) in enumerate(stages):
            f_s = connector(at_least_fp32(f_s))
            f_t = at_least_fp32(f_t).detach()
            if f_t.shape[-2:] != f_s.shape[-2:]:
                f_t = F.adaptive_avg_pool2d(f_t, f_s.shape[-2:])
            loss = loss + ofd_loss(f_s, f_t, margin) / 2 ** (k - i - 1)
        return {"loss_kd": self.feat_loss_weight * loss}
