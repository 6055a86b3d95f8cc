"""CIFAR ResNets (He et al. 2016, 3 stages) as used by RepDistiller / mdistiller.

State_dict keys and shapes match mdistiller, so its released teacher
checkpoints load with ``strict=True``. Differences from mdistiller (all
parameter-free, so checkpoints and 32x32 logits are unchanged):

* ``preact_feats[0]`` is the stem's BN output *before* its ReLU (mdistiller
  returns the post-ReLU tensor there).
* global pooling is adaptive, so any input size works (mdistiller's
  ``AvgPool2d(8)`` breaks the classifier for e.g. 64x64 inputs).
* ``get_stage_channels()`` accounts for ``block.expansion`` (mdistiller
  returns the raw filter list, wrong for bottleneck blocks).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ResNet",
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet8x4",
    "resnet32x4",
]


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


# Blocks built with ``is_last=True`` return ``(out, preact)``; the others return
# ``out``. A stage (``nn.Sequential``) therefore returns ``(out, preact)``, as in
# mdistiller, which keeps ``get_feat_modules()`` behaving the same way.


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        preact = out + shortcut
        out = F.relu(preact)
        return (out, preact) if self.is_last else out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, is_last=False):
        super().__init__()
        self.is_last = is_last
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        preact = out + shortcut
        out = F.relu(preact)
        return (out, preact) if self.is_last else out


class ResNet(nn.Module):
    """``depth`` = 6n+2 (basic blocks) or 9n+2 (bottlenecks); ``num_filters`` = [stem, stage1, stage2, stage3]."""

    def __init__(self, depth, num_filters, block_name="BasicBlock", num_classes=100):
        super().__init__()
        name = block_name.lower()
        if name == "basicblock":
            assert (depth - 2) % 6 == 0, "basic-block ResNet depth must be 6n+2 (8, 14, 20, 32, ...)"
            n, block = (depth - 2) // 6, BasicBlock
        elif name == "bottleneck":
            assert (depth - 2) % 9 == 0, "bottleneck ResNet depth must be 9n+2 (11, 20, 29, ...)"
            n, block = (depth - 2) // 9, Bottleneck
        else:
            raise ValueError("block_name must be 'BasicBlock' or 'Bottleneck', got %r" % block_name)

        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(3, num_filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, num_filters[1], n)
        self.layer2 = self._make_layer(block, num_filters[2], n, stride=2)
        self.layer3 = self._make_layer(block, num_filters[3], n, stride=2)
        # Fix: mdistiller uses AvgPool2d(8) (only correct for 32x32 inputs).
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(num_filters[3] * block.expansion, num_classes)
        # Fix: real channel counts of feats (mdistiller ignores block.expansion).
        self.stage_channels = [num_filters[0]] + [c * block.expansion for c in num_filters[1:]]

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, is_last=(blocks == 1))]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, is_last=(i == blocks - 1)))
        return nn.Sequential(*layers)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.relu, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        """Last BN of each stage (matches ``preact_feats[1:]``)."""
        if isinstance(self.layer1[0], Bottleneck):
            return [self.layer1[-1].bn3, self.layer2[-1].bn3, self.layer3[-1].bn3]
        if isinstance(self.layer1[0], BasicBlock):
            return [self.layer1[-1].bn2, self.layer2[-1].bn2, self.layer3[-1].bn2]
        raise NotImplementedError("unknown ResNet block type")

    def get_stage_channels(self):
        return list(self.stage_channels)

    def forward(self, x):
        pre0 = self.bn1(self.conv1(x))
        f0 = F.relu(pre0)  # not in place: pre0 is returned as preact_feats[0]
        f1, pre1 = self.layer1(f0)
        f2, pre2 = self.layer2(f1)
        f3, pre3 = self.layer3(f2)
        pooled = torch.flatten(self.avgpool(f3), 1)
        logits = self.fc(pooled)
        feats = {
            "feats": [f0, f1, f2, f3],
            # Fix: mdistiller puts the post-ReLU f0 at index 0.
            "preact_feats": [pre0, pre1, pre2, pre3],
            "pooled_feat": pooled,
        }
        return logits, feats


def resnet8(**kwargs):
    return ResNet(8, [16, 16, 32, 64], "basicblock", **kwargs)


def resnet14(**kwargs):
    return ResNet(14, [16, 16, 32, 64], "basicblock", **kwargs)


def resnet20(**kwargs):
    return ResNet(20, [16, 16, 32, 64], "basicblock", **kwargs)


def resnet32(**kwargs):
    return ResNet(32, [16, 16, 32, 64], "basicblock", **kwargs)


def resnet44(**kwargs):
    return ResNet(44, [16, 16, 32, 64], "basicblock", **kwargs)


def resnet56(**kwargs):
    return ResNet(56, [16, 16, 32, 64], "basicblock", **kwargs)


def resnet110(**kwargs):
    return ResNet(110, [16, 16, 32, 64], "basicblock", **kwargs)


def resnet8x4(**kwargs):
    return ResNet(8, [32, 64, 128, 256], "basicblock", **kwargs)


def resnet32x4(**kwargs):
    return ResNet(32, [32, 64, 128, 256], "basicblock", **kwargs)
