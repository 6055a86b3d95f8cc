"""MobileNetV2 for Tiny-ImageNet (64×64), mdistiller's ``tiny_imagenet_model_dict["MobileNetV2"]``.

Width 1.0 with biases on every convolution, ReLU6, a 1×1 stem with padding 1,
and a 1×1 convolution as classifier; module names follow mdistiller's
``mv2_tinyimagenet.py`` so its checkpoints load strictly. ``feats`` are the stem
and the outputs of stages 2, 3, 4 and of the final 1×1 expansion, as there.
"""
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MobileNetV2TinyImageNet", "mobilenetv2_tinyimagenet"]


class LinearBottleNeck(nn.Module):
    """Expand (1×1, ×t) → depthwise 3×3 → linear 1×1 projection; identity when shapes allow."""

    def __init__(self, in_channels, out_channels, stride, t=6):
        super().__init__()
        hidden = in_channels * t
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
            nn.BatchNorm2d(out_channels),
        )
        self.use_identity = stride == 1 and in_channels == out_channels

    def forward(self, x):
        out = self.residual(x)
        return out + x if self.use_identity else out


def _stage(repeat, in_channels, out_channels, stride, t):
    blocks = [LinearBottleNeck(in_channels, out_channels, stride, t)]
    blocks += [LinearBottleNeck(out_channels, out_channels, 1, t) for _ in range(repeat - 1)]
    return nn.Sequential(*blocks)


class MobileNetV2TinyImageNet(nn.Module):
    def __init__(self, num_classes=200):
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 32, 1, padding=1), nn.BatchNorm2d(32), nn.ReLU6(inplace=True))
        self.stage1 = LinearBottleNeck(32, 16, 1, 1)
        self.stage2 = _stage(2, 16, 24, 2, 6)
        self.stage3 = _stage(3, 24, 32, 2, 6)
        self.stage4 = _stage(4, 32, 64, 2, 6)
        self.stage5 = _stage(3, 64, 96, 1, 6)
        self.stage6 = _stage(3, 96, 160, 1, 6)
        self.stage7 = LinearBottleNeck(160, 320, 1, 6)
        self.conv1 = nn.Sequential(nn.Conv2d(320, 1280, 1), nn.BatchNorm2d(1280), nn.ReLU6(inplace=True))
        self.conv2 = nn.Conv2d(1280, num_classes, 1)

    def get_stage_channels(self):
        return [32, 24, 32, 64, 1280]

    def forward(self, x):
        p0 = self.pre[1](self.pre[0](x))
        f0 = F.relu6(p0)
        x = self.stage1(f0)
        f1 = self.stage2(x)
        f2 = self.stage3(f1)
        f3 = self.stage4(f2)
        x = self.stage7(self.stage6(self.stage5(f3)))
        p4 = self.conv1[1](self.conv1[0](x))
        f4 = F.relu6(p4)
        pooled = F.adaptive_avg_pool2d(f4, 1)
        logits = self.conv2(pooled).flatten(1)
        # stages 2-4 end with a linear projection (no activation): their pre-activation is the output
        feats = {"feats": [f0, f1, f2, f3, f4], "preact_feats": [p0, f1, f2, f3, p4], "pooled_feat": pooled.flatten(1)}
        return logits, feats


def mobilenetv2_tinyimagenet(**kwargs):
    return MobileNetV2TinyImageNet(**kwargs)
