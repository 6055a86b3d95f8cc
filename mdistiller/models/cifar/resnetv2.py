"""ImageNet-depth ResNets (18/34/50/101/152) adapted to CIFAR, as in mdistiller.

3x3 stride-1 stem without max-pooling, four stages of 64/128/256/512 planes.
State_dict keys and shapes match mdistiller's ``resnetv2.py``. Differences
(parameter-free, logits unchanged):

* ``get_stage_channels()`` returns the real channel count of each of the five
  ``feats`` (mdistiller returns ``[256, 512, 1024, 2048]`` for every depth:
  wrong for the basic-block ResNet18/34 and one entry short for all of them).
* ``preact_feats[0]`` is the stem's BN output before its ReLU (mdistiller
  returns the post-ReLU tensor).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ResNet", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152"]


def _projection(in_planes, out_planes, stride):
    """1x1 conv + BN shortcut, or an empty Sequential (identity, no keys)."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


# As in mdistiller, the last block of a stage returns ``(out, preact)``.


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(in_planes, planes * self.expansion, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        preact = self.bn2(self.conv2(out)) + self.shortcut(x)
        out = F.relu(preact)
        return (out, preact) if self.is_last else out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _projection(in_planes, planes * self.expansion, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        preact = self.bn3(self.conv3(out)) + self.shortcut(x)
        out = F.relu(preact)
        return (out, preact) if self.is_last else out


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=100, zero_init_residual=False):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(512 * block.expansion, num_classes)
        # Fix: one entry per element of feats, including the stem.
        self.stage_channels = [64] + [p * block.expansion for p in (64, 128, 256, 512)]

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        # Optionally start every residual branch at zero (Goyal et al., 2017).
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for i in range(num_blocks):
            layers.append(block(self.in_planes, planes, stride if i == 0 else 1, i == num_blocks - 1))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4])

    def get_bn_before_relu(self):
        """Last BN of each stage (matches ``preact_feats[1:]``)."""
        stages = [self.layer1, self.layer2, self.layer3, self.layer4]
        if isinstance(self.layer1[0], Bottleneck):
            return [s[-1].bn3 for s in stages]
        if isinstance(self.layer1[0], BasicBlock):
            return [s[-1].bn2 for s in stages]
        raise NotImplementedError("unknown ResNet block type")

    def get_stage_channels(self):
        return list(self.stage_channels)

    def encode(self, x, idx, preact=False):
        """mdistiller API: run stage ``idx`` (-1: layer4, -2: layer3, -3: layer2)
        on ``relu(x)`` and return that stage's pre-activation output."""
        stages = {-1: self.layer4, -2: self.layer3, -3: self.layer2}
        if idx not in stages:
            raise NotImplementedError("encode supports idx -1, -2, -3")
        _, pre = stages[idx](F.relu(x))
        return pre

    def forward(self, x):
        pre0 = self.bn1(self.conv1(x))
        f0 = F.relu(pre0)
        f1, pre1 = self.layer1(f0)
        f2, pre2 = self.layer2(f1)
        f3, pre3 = self.layer3(f2)
        f4, pre4 = self.layer4(f3)
        pooled = torch.flatten(self.avgpool(f4), 1)
        logits = self.linear(pooled)
        feats = {
            "feats": [f0, f1, f2, f3, f4],
            # Fix: mdistiller puts the post-ReLU f0 at index 0.
            "preact_feats": [pre0, pre1, pre2, pre3, pre4],
            "pooled_feat": pooled,
        }
        return logits, feats


def ResNet18(**kwargs):
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


def ResNet34(**kwargs):
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


def ResNet50(**kwargs):
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


def ResNet101(**kwargs):
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


def ResNet152(**kwargs):
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)
