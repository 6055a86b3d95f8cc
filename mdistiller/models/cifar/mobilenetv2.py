"""MobileNetV2 for CIFAR-sized inputs.

mdistiller's ``cifar_model_dict["MobileNetV2"]`` is ``mobile_half`` (expansion 6,
width 0.5). Module names follow mdistiller so its checkpoints load strictly.
"""
import math

import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MobileNetV2", "InvertedResidual", "mobilenetv2_T_w", "mobile_half"]


def conv_bn(inp, oup, stride):
    """3x3 conv -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


def conv_1x1_bn(inp, oup):
    """1x1 conv -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> linear project (1x1), optional identity.

    The expansion conv is kept even for expand_ratio == 1 (mdistiller's layout).
    The output has no activation (linear bottleneck).
    """

    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("stride must be 1 or 2, got %r" % (stride,))
        hidden = inp * expand_ratio
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    # indices into self.blocks whose outputs are returned as stage features
    _FEAT_BLOCKS = (1, 2, 4, 6)

    def __init__(self, T, feature_dim, input_size=32, width_mult=1.0, remove_avg=False):
        super().__init__()
        # input_size is accepted for signature compatibility only: pooling is adaptive.
        self.remove_avg = remove_avg
        # (expansion t, channels c, repeats n, stride of first repeat s)
        setting = [
            (1, 16, 1, 1),
            (T, 24, 2, 1),
            (T, 32, 3, 2),
            (T, 64, 4, 2),
            (T, 96, 3, 1),
            (T, 160, 3, 2),
            (T, 320, 1, 1),
        ]

        channels = int(32 * width_mult)
        self.conv1 = conv_bn(3, channels, 2)
        self.blocks = nn.ModuleList()
        block_channels = []
        for t, c, n, s in setting:
            out_channels = int(c * width_mult)
            units = []
            for i in range(n):
                units.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, t))
                channels = out_channels
            self.blocks.append(nn.Sequential(*units))
            block_channels.append(out_channels)

        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = conv_1x1_bn(channels, self.last_channel)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, feature_dim))
        # Fix: mdistiller used AvgPool2d(input_size // 16), which only works at
        # the constructor's input_size (32); adaptive pooling is identical there.
        self.avgpool = nn.AdaptiveAvgPool2d(1)

        self.stage_channels = [int(32 * width_mult)] + [block_channels[i] for i in self._FEAT_BLOCKS]
        self._initialize_weights()

    def get_bn_before_relu(self):
        return [self.blocks[i][-1].conv[-1] for i in self._FEAT_BLOCKS]

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.blocks])

    def get_stage_channels(self):
        return list(self.stage_channels)

    def forward(self, x):
        # Fix: mdistiller returned no "preact_feats". Stem: BN output before its
        # ReLU. Block outputs are linear bottlenecks (never activated), so their
        # pre-activation is the output itself.
        stem_pre = self.conv1[1](self.conv1[0](x))
        out = F.relu(stem_pre)
        feats, preacts = [out], [stem_pre]
        for i, block in enumerate(self.blocks):
            out = block(out)
            if i in self._FEAT_BLOCKS:
                feats.append(out)
                preacts.append(out)

        out = self.conv2(out)
        if not self.remove_avg:
            out = self.avgpool(out)
        pooled = out.reshape(out.size(0), -1)
        logits = self.classifier(pooled)
        return logits, {"feats": feats, "preact_feats": preacts, "pooled_feat": pooled}

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)


def mobilenetv2_T_w(T, W, feature_dim=100):
    """MobileNetV2 with expansion ``T`` and width multiplier ``W``."""
    return MobileNetV2(T=T, feature_dim=feature_dim, width_mult=W)


def mobile_half(num_classes=100):
    return mobilenetv2_T_w(6, 0.5, num_classes)
