"""MobileNetV1 for ImageNet with mdistiller's state_dict layout (``model.<i>.<j>``, ``fc``)."""
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MobileNetV1"]


def _conv_bn(inp, oup, stride):
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


def _conv_dw(inp, oup, stride):
    """Depthwise 3x3 -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


# (in, out, stride) of the depthwise-separable units following the stem
_DW_UNITS = [
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 512, 2),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 1024, 2),
    (1024, 1024, 1),
]


class MobileNetV1(nn.Module):
    # indices into self.model whose outputs are the returned stage features
    _STAGE_ENDS = (3, 5, 11, 13)

    def __init__(self, num_classes=1000, pretrained=False, **kwargs):
        super().__init__()
        if pretrained:
            raise NotImplementedError("no pretrained ImageNet weights are available for MobileNetV1")
        units = [_conv_bn(3, 32, 2)] + [_conv_dw(i, o, s) for i, o, s in _DW_UNITS]
        # Fix: mdistiller used AvgPool2d(7) (224x224 inputs only); adaptive
        # pooling is parameter-free, so index 14 and all keys are unchanged.
        units.append(nn.AdaptiveAvgPool2d(1))
        self.model = nn.Sequential(*units)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x, is_feat=False):
        # is_feat is accepted for compatibility; features are always returned.
        feats, preacts = [], []
        for i, unit in enumerate(self.model[:-1]):
            if i in self._STAGE_ENDS:
                pre = unit[:-1](x)  # everything but the unit's final ReLU
                x = F.relu(pre)
                preacts.append(pre)
                feats.append(x)
            else:
                x = unit(x)
        pooled = self.model[-1](x).reshape(x.size(0), -1)
        logits = self.fc(pooled)
        return logits, {"feats": feats, "preact_feats": preacts, "pooled_feat": pooled}

    def get_bn_before_relu(self):
        return [self.model[i][-2] for i in self._STAGE_ENDS]

    def get_stage_channels(self):
        return [self.model[i][-2].num_features for i in self._STAGE_ENDS]
