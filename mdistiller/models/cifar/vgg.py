"""VGG-BN networks for CIFAR, as in RepDistiller / mdistiller.

Five conv blocks separated by 2x2 max-pools, global average pooling and one
linear classifier. Each block is an ``nn.Sequential`` of conv(+BN)(+ReLU)
units whose trailing ReLU is dropped, so keys (``block{i}.{j}.*``) match
mdistiller. Differences from mdistiller (parameter-free, 32x32 and 64x64
logits unchanged):

* ``preact_feats[0]`` is ``block0``'s output before its ReLU (mdistiller
  returns the post-ReLU tensor).
* ``pool3`` (before ``block4``) was applied only when the input height is
  exactly 64; here it is applied whenever ``block3``'s output is at least 8
  pixels high, i.e. the same at 32 and 64 px and sensible at other sizes.
* ``num_classes`` defaults to 100 (mdistiller: 1000).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["VGG", "cfg", "vgg8_bn", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]

# Output channels of the convs in each of the five blocks.
cfg = {
    "A": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "B": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "D": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "E": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
    "S": [[64], [128], [256], [512], [512]],
}

# Smallest block3 output height at which pool3 is applied (see module docstring).
_POOL3_MIN_SIZE = 8


class VGG(nn.Module):
    def __init__(self, cfg, batch_norm=False, num_classes=100):
        super().__init__()
        self.batch_norm = batch_norm
        in_channels = [3] + [c[-1] for c in cfg[:-1]]
        self.block0 = self._make_layers(cfg[0], batch_norm, in_channels[0])
        self.block1 = self._make_layers(cfg[1], batch_norm, in_channels[1])
        self.block2 = self._make_layers(cfg[2], batch_norm, in_channels[2])
        self.block3 = self._make_layers(cfg[3], batch_norm, in_channels[3])
        self.block4 = self._make_layers(cfg[4], batch_norm, in_channels[4])
        self.pool0 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool4 = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(cfg[4][-1], num_classes)
        self._initialize_weights()
        self.stage_channels = [c[-1] for c in cfg]

    @staticmethod
    def _make_layers(block_cfg, batch_norm=False, in_channels=3):
        layers = []
        for v in block_cfg:
            layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_channels = v
        # The block's last ReLU is applied in forward() so its input can be returned.
        return nn.Sequential(*layers[:-1])

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.weight.data.normal_(0, 0.01)
                m.bias.data.zero_()

    def get_feat_modules(self):
        return nn.ModuleList(
            [
                self.block0, self.pool0,
                self.block1, self.pool1,
                self.block2, self.pool2,
                self.block3, self.pool3,
                self.block4, self.pool4,
            ]
        )

    def get_bn_before_relu(self):
        """Last layer (BN) of blocks 1-4 (matches ``preact_feats[1:]``)."""
        if not self.batch_norm:
            raise NotImplementedError("get_bn_before_relu needs a VGG built with batch_norm=True")
        return [self.block1[-1], self.block2[-1], self.block3[-1], self.block4[-1]]

    def get_stage_channels(self):
        return list(self.stage_channels)

    def forward(self, x):
        pre0 = self.block0(x)
        f0 = F.relu(pre0)
        pre1 = self.block1(self.pool0(f0))
        f1 = F.relu(pre1)
        pre2 = self.block2(self.pool1(f1))
        f2 = F.relu(pre2)
        pre3 = self.block3(self.pool2(f2))
        f3 = F.relu(pre3)
        # Fix: mdistiller tests `input height == 64` here.
        x = self.pool3(f3) if f3.shape[2] >= _POOL3_MIN_SIZE else f3
        pre4 = self.block4(x)
        f4 = F.relu(pre4)
        pooled = torch.flatten(self.pool4(f4), 1)
        logits = self.classifier(pooled)
        feats = {
            "feats": [f0, f1, f2, f3, f4],
            # Fix: mdistiller puts the post-ReLU f0 at index 0.
            "preact_feats": [pre0, pre1, pre2, pre3, pre4],
            "pooled_feat": pooled,
        }
        return logits, feats


def vgg8_bn(**kwargs):
    return VGG(cfg["S"], batch_norm=True, **kwargs)


def vgg11_bn(**kwargs):
    return VGG(cfg["A"], batch_norm=True, **kwargs)


def vgg13_bn(**kwargs):
    return VGG(cfg["B"], batch_norm=True, **kwargs)


def vgg16_bn(**kwargs):
    return VGG(cfg["D"], batch_norm=True, **kwargs)


def vgg19_bn(**kwargs):
    return VGG(cfg["E"], batch_norm=True, **kwargs)
