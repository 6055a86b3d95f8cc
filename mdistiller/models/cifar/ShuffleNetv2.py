"""ShuffleNetV2 for CIFAR-sized inputs, with mdistiller's module layout."""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ShuffleNetV2", "ShuffleV2", "configs"]


def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleBlock(nn.Module):
    def __init__(self, groups=2):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        return channel_shuffle(x, self.groups)


class SplitBlock(nn.Module):
    def __init__(self, ratio):
        super().__init__()
        self.ratio = ratio

    def forward(self, x):
        c = int(x.size(1) * self.ratio)
        return x[:, :c], x[:, c:]


class BasicBlock(nn.Module):
    """Keep one half of the channels, transform the other, concat, shuffle.

    When ``is_last`` it returns ``(out, preact)`` like mdistiller's, otherwise ``out``.
    """

    def __init__(self, in_channels, split_ratio=0.5, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.split = SplitBlock(split_ratio)
        c = int(in_channels * split_ratio)
        self.conv1 = nn.Conv2d(c, c, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.shuffle = ShuffleBlock()

    def forward(self, x):
        kept, y = self.split(x)
        y = F.relu(self.bn1(self.conv1(y)))
        y = self.bn2(self.conv2(y))
        pre = self.bn3(self.conv3(y))
        out = self.shuffle(torch.cat([kept, F.relu(pre)], 1))
        if not self.is_last:
            return out
        # Fix: mdistiller returned the pre-activation unshuffled, so its channels
        # did not line up with `out`. Shuffled the same way, relu(preact) == out
        # (the kept half is a previous block's non-negative output).
        return out, self.shuffle(torch.cat([kept, pre], 1))


class DownBlock(nn.Module):
    """Stride-2 unit: two branches over the full input, concat, shuffle."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        mid = out_channels // 2
        # left branch: depthwise 3x3 (s2) -> 1x1
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1, groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        # right branch: 1x1 -> depthwise 3x3 (s2) -> 1x1
        self.conv3 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, kernel_size=3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)
        self.shuffle = ShuffleBlock()

    def forward(self, x):
        left = self.bn1(self.conv1(x))
        left = F.relu(self.bn2(self.conv2(left)))
        right = F.relu(self.bn3(self.conv3(x)))
        right = self.bn4(self.conv4(right))
        right = F.relu(self.bn5(self.conv5(right)))
        return self.shuffle(torch.cat([left, right], 1))


class ShuffleNetV2(nn.Module):
    def __init__(self, net_size, num_classes=10):
        super().__init__()
        out_channels = configs[net_size]["out_channels"]
        num_blocks = configs[net_size]["num_blocks"]

        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_channels = 24
        self.layer1 = self._make_layer(out_channels[0], num_blocks[0])
        self.layer2 = self._make_layer(out_channels[1], num_blocks[1])
        self.layer3 = self._make_layer(out_channels[2], num_blocks[2])
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], kernel_size=1, stride=1, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)
        self.stage_channels = out_channels

    def _make_layer(self, out_channels, num_blocks):
        units = [DownBlock(self.in_channels, out_channels)]
        for i in range(num_blocks):
            units.append(BasicBlock(out_channels, is_last=i == num_blocks - 1))
        self.in_channels = out_channels
        return nn.Sequential(*units)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        raise NotImplementedError('ShuffleNetV2 currently is not supported for "Overhaul" teacher')

    def get_stage_channels(self):
        return [24] + list(self.stage_channels[:-1])

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
        out = F.relu(self.bn2(self.conv2(out)))
        # Fix: adaptive pooling instead of avg_pool2d(out, 4) (32x32 inputs only).
        pooled = F.adaptive_avg_pool2d(out, 1).reshape(out.size(0), -1)
        logits = self.linear(pooled)
        return logits, {"feats": feats, "preact_feats": preacts, "pooled_feat": pooled}


configs = {
    0.2: {"out_channels": (40, 80, 160, 512), "num_blocks": (3, 3, 3)},
    0.3: {"out_channels": (40, 80, 160, 512), "num_blocks": (3, 7, 3)},
    0.5: {"out_channels": (48, 96, 192, 1024), "num_blocks": (3, 7, 3)},
    1: {"out_channels": (116, 232, 464, 1024), "num_blocks": (3, 7, 3)},
    1.5: {"out_channels": (176, 352, 704, 1024), "num_blocks": (3, 7, 3)},
    2: {"out_channels": (224, 488, 976, 2048), "num_blocks": (3, 7, 3)},
}


def ShuffleV2(**kwargs):
    return ShuffleNetV2(net_size=1, **kwargs)
