"""ShuffleNet (v1) for CIFAR-sized inputs, with mdistiller's module layout."""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ShuffleNet", "ShuffleV1"]


def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleBlock(nn.Module):
    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        return channel_shuffle(x, self.groups)


class Bottleneck(nn.Module):
    """Grouped 1x1 -> shuffle -> depthwise 3x3 -> grouped 1x1, plus shortcut.

    Stride 2 concatenates an average-pooled shortcut (so ``out_planes`` only
    counts the residual branch); stride 1 adds the identity. When ``is_last``
    the block returns ``(out, preact)`` like mdistiller's, otherwise ``out``.
    """

    def __init__(self, in_planes, out_planes, stride, groups, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.stride = stride
        mid_planes = out_planes // 4
        # the first block sees the 24-channel stem and uses an ungrouped 1x1
        g = 1 if in_planes == 24 else groups
        self.conv1 = nn.Conv2d(in_planes, mid_planes, kernel_size=1, groups=g, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.shuffle1 = ShuffleBlock(groups=g)
        self.conv2 = nn.Conv2d(
            mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1, groups=mid_planes, bias=False
        )
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        if stride == 2:
            self.shortcut = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.shuffle1(y)
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = self.shortcut(x)
        preact = torch.cat([y, shortcut], 1) if self.stride == 2 else y + shortcut
        out = F.relu(preact)
        return (out, preact) if self.is_last else out


class ShuffleNet(nn.Module):
    def __init__(self, cfg, num_classes=10):
        super().__init__()
        out_planes = cfg["out_planes"]
        num_blocks = cfg["num_blocks"]
        groups = cfg["groups"]

        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_planes = 24
        self.layer1 = self._make_layer(out_planes[0], num_blocks[0], groups)
        self.layer2 = self._make_layer(out_planes[1], num_blocks[1], groups)
        self.layer3 = self._make_layer(out_planes[2], num_blocks[2], groups)
        self.linear = nn.Linear(out_planes[2], num_classes)
        # Fix: mdistiller's ShuffleNet had no get_stage_channels at all.
        self.stage_channels = [24] + list(out_planes)

    def _make_layer(self, out_planes, num_blocks, groups):
        blocks = []
        for i in range(num_blocks):
            first = i == 0
            blocks.append(
                Bottleneck(
                    self.in_planes,
                    out_planes - self.in_planes if first else out_planes,
                    stride=2 if first else 1,
                    groups=groups,
                    is_last=i == num_blocks - 1,
                )
            )
            self.in_planes = out_planes
        return nn.Sequential(*blocks)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        raise NotImplementedError('ShuffleNet currently is not supported for "Overhaul" teacher')

    def get_stage_channels(self):
        return list(self.stage_channels)

    def forward(self, x):
        # Fix: preact_feats[0] is the stem BN output before ReLU (mdistiller
        # returned the post-ReLU tensor there).
        stem_pre = self.bn1(self.conv1(x))
        out = F.relu(stem_pre)
        feats, preacts = [out], [stem_pre]
        for layer in (self.layer1, self.layer2, self.layer3):
            out, pre = layer(out)
            feats.append(out)
            preacts.append(pre)
        # Fix: adaptive pooling instead of avg_pool2d(out, 4) (32x32 inputs only).
        pooled = F.adaptive_avg_pool2d(out, 1).reshape(out.size(0), -1)
        logits = self.linear(pooled)
        return logits, {"feats": feats, "preact_feats": preacts, "pooled_feat": pooled}


def ShuffleV1(**kwargs):
    cfg = {"out_planes": [240, 480, 960], "num_blocks": [4, 8, 4], "groups": 3}
    return ShuffleNet(cfg, **kwargs)
