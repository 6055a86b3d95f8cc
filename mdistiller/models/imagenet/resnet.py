"""ImageNet ResNets whose state_dict matches torchvision's, so its weights load strictly.

Blocks return their *pre-activation* output (residual sum before the final
ReLU); the ReLU is applied by the enclosing stage / network. The logits are
the same function as torchvision's ResNet; the extra outputs are the stage
features that distillers consume.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ResNet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "model_urls"]

# torchvision's official IMAGENET1K_V1 weights.
model_urls = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
}

# The same weights under the URLs mdistiller (and torchvision < 0.13) used.
# If such a file is already in the hub cache it is used instead of downloading.
legacy_model_urls = {
    "resnet18": "https://download.pytorch.org/models/resnet18-5c106cde.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-333f7ec4.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-19c8e357.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-5d3b4d8f.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-b121ed2d.pth",
}


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """3x3 -> 3x3 residual block. Input: activated tensor. Output: pre-activation."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return out + identity


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 residual block. Input: activated. Output: pre-activation."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + identity


class _Stage(nn.Sequential):
    """Blocks with a ReLU between consecutive ones; returns the last block's pre-activation."""

    def forward(self, x):
        for i, block in enumerate(self):
            if i:
                x = F.relu(x)
            x = block(x)
        return x


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.block = block
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        # Fix: mdistiller used AvgPool2d(7), which only works for 224x224 inputs.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        units = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        units += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return _Stage(*units)

    def get_bn_before_relu(self):
        # Same 3 BNs as mdistiller (last BN of layer2..layer4), i.e. the last
        # three entries of preact_feats.
        name = "bn3" if self.block is Bottleneck else "bn2"
        return [getattr(layer[-1], name) for layer in (self.layer2, self.layer3, self.layer4)]

    def get_stage_channels(self):
        # Fix: mdistiller returned [256, 512, 1024, 2048] for every depth (wrong
        # for ResNet18/34) and omitted the stem, although feats has 5 entries.
        e = self.block.expansion
        return [64, 64 * e, 128 * e, 256 * e, 512 * e]

    def forward(self, x):
        # Fix: mdistiller's in-place stem ReLU also overwrote its stem
        # "pre-activation"; here preact_feats[0] is the BN output.
        stem_pre = self.bn1(self.conv1(x))
        out = F.relu(stem_pre)
        feats, preacts = [out], [stem_pre]
        out = self.maxpool(out)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            pre = layer(out)
            out = F.relu(pre)
            preacts.append(pre)
            feats.append(out)
        pooled = torch.flatten(self.avgpool(out), 1)
        logits = self.fc(pooled)
        return logits, {"feats": feats, "preact_feats": preacts, "pooled_feat": pooled}


def _load_pretrained(model, arch, progress=True):
    """torchvision's weights through torch.hub: the download is checked against the SHA-256 prefix in
    the file name (``check_hash=True``, as torchvision's weights API does) and read with ``weights_only``."""
    url = model_urls[arch]
    legacy = legacy_model_urls[arch]
    if os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(legacy))):
        url = legacy
    state_dict = torch.hub.load_state_dict_from_url(
        url, map_location="cpu", progress=progress, check_hash=True, weights_only=True)
    model.load_state_dict(state_dict)
    return model


def _resnet(arch, block, layers, pretrained, kwargs):
    model = ResNet(block, layers, **kwargs)
    if pretrained:
        _load_pretrained(model, arch)
    return model


def resnet18(pretrained=False, **kwargs):
    """ResNet-18; ``pretrained`` loads torchvision's ImageNet weights."""
    return _resnet("resnet18", BasicBlock, [2, 2, 2, 2], pretrained, kwargs)


def resnet34(pretrained=False, **kwargs):
    """ResNet-34; ``pretrained`` loads torchvision's ImageNet weights."""
    return _resnet("resnet34", BasicBlock, [3, 4, 6, 3], pretrained, kwargs)


def resnet50(pretrained=False, **kwargs):
    """ResNet-50; ``pretrained`` loads torchvision's ImageNet weights."""
    return _resnet("resnet50", Bottleneck, [3, 4, 6, 3], pretrained, kwargs)


def resnet101(pretrained=False, **kwargs):
    """ResNet-101; ``pretrained`` loads torchvision's ImageNet weights."""
    return _resnet("resnet101", Bottleneck, [3, 4, 23, 3], pretrained, kwargs)


def resnet152(pretrained=False, **kwargs):
    """ResNet-152; ``pretrained`` loads torchvision's ImageNet weights."""
    return _resnet("resnet152", Bottleneck, [3, 8, 36, 3], pretrained, kwargs)
