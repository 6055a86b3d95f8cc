"""Wide ResNets (Zagoruyko & Komodakis 2016) for CIFAR, as in mdistiller.

WRN-d-k: depth d = 6n+4, widen factor k, pre-activation blocks
(BN -> ReLU -> conv). State_dict keys and shapes match mdistiller.

Because blocks are pre-activation, ``feats`` are the raw residual-stream
outputs of the stem and of each stage (kept identical to mdistiller), and
``preact_feats[i]`` is the BN that the next layer applies to ``feats[i]``,
i.e. the tensor fed into the following ReLU. Differences from mdistiller
(parameter-free, logits unchanged):

* mdistiller computes ``preact_feats`` by calling ``block2.layer[0].bn1``,
  ``block3.layer[0].bn1`` and ``bn1`` a second time after the forward pass, so
  in training mode those BNs update their running statistics twice per step.
  Here each pre-activation is captured when it is computed, once.
* ``preact_feats[0]`` is ``block1.layer[0].bn1(feats[0])`` (mdistiller
  repeats the raw stem output).
* global pooling is adaptive and the flatten keeps the batch dimension:
  mdistiller's ``avg_pool2d(8)`` + ``reshape(-1, C)`` silently returns 4x too
  many rows for 64x64 inputs.
* ``num_classes`` defaults to 100 instead of being required.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["WideResNet", "wrn", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"]


class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, dropRate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.droprate = dropRate
        self.equalInOut = in_planes == out_planes
        # Identity shortcut on the raw input when shapes agree; otherwise a 1x1
        # conv applied to the *activated* input (original WRN behaviour).
        self.convShortcut = (
            None
            if self.equalInOut
            else nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)
        )

    def forward_with_preact(self, x):
        """Return ``(out, bn1(x))``; ``bn1(x)`` is the block's input pre-activation."""
        preact = self.bn1(x)
        act = F.relu(preact)
        out = F.relu(self.bn2(self.conv1(act)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.equalInOut else self.convShortcut(act)
        return shortcut + out, preact

    def forward(self, x):
        return self.forward_with_preact(x)[0]


class NetworkBlock(nn.Module):
    """One WRN stage: ``nb_layers`` blocks, the first one with ``stride``."""

    def __init__(self, nb_layers, in_planes, out_planes, block, stride, dropRate=0.0):
        super().__init__()
        self.layer = nn.Sequential(
            *[
                block(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, dropRate)
                for i in range(nb_layers)
            ]
        )

    def forward_with_preact(self, x):
        """Return ``(out, pre-activation of x inside the first block)``."""
        x, preact = self.layer[0].forward_with_preact(x)
        for blk in self.layer[1:]:
            x = blk(x)
        return x, preact

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, num_classes=100, widen_factor=1, dropRate=0.0):
        super().__init__()
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        assert (depth - 4) % 6 == 0, "WRN depth must be 6n+4"
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, channels[0], channels[1], BasicBlock, 1, dropRate)
        self.block2 = NetworkBlock(n, channels[1], channels[2], BasicBlock, 2, dropRate)
        self.block3 = NetworkBlock(n, channels[2], channels[3], BasicBlock, 2, dropRate)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # Fix: mdistiller hard-codes avg_pool2d(8).
        self.fc = nn.Linear(channels[3], num_classes)
        self.nChannels = channels[3]
        self.stage_channels = channels

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.block1, self.block2, self.block3])

    def get_bn_before_relu(self):
        """The BNs producing ``preact_feats[1:]``."""
        return [self.block2.layer[0].bn1, self.block3.layer[0].bn1, self.bn1]

    def get_stage_channels(self):
        return list(self.stage_channels)

    def forward(self, x):
        f0 = self.conv1(x)
        f1, pre0 = self.block1.forward_with_preact(f0)
        f2, pre1 = self.block2.forward_with_preact(f1)
        f3, pre2 = self.block3.forward_with_preact(f2)
        pre3 = self.bn1(f3)
        pooled = torch.flatten(self.avgpool(F.relu(pre3)), 1)
        logits = self.fc(pooled)
        feats = {
            "feats": [f0, f1, f2, f3],
            "preact_feats": [pre0, pre1, pre2, pre3],
            "pooled_feat": pooled,
        }
        return logits, feats


def wrn(**kwargs):
    return WideResNet(**kwargs)


def wrn_40_2(**kwargs):
    return WideResNet(depth=40, widen_factor=2, **kwargs)


def wrn_40_1(**kwargs):
    return WideResNet(depth=40, widen_factor=1, **kwargs)


def wrn_16_2(**kwargs):
    return WideResNet(depth=16, widen_factor=2, **kwargs)


def wrn_16_1(**kwargs):
    return WideResNet(depth=16, widen_factor=1, **kwargs)
