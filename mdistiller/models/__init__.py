"""Model zoo with mdistiller's names, constructors and state_dict layout.

``cifar_model_dict[name] = (constructor, teacher_checkpoint_path_or_None)``,
``tiny_imagenet_model_dict`` (the same shape, Tiny-ImageNet's 64 px models) and
``imagenet_model_dict[name] = constructor`` keep mdistiller's shapes, so code
written against mdistiller keeps working. Every model's ``forward(x)`` returns
``(logits, {"feats": [...], "preact_feats": [...], "pooled_feat": tensor})``.
"""
import os

from .cifar.resnet import resnet8, resnet14, resnet20, resnet32, resnet44, resnet56, resnet110, resnet8x4, resnet32x4
from .cifar.resnetv2 import ResNet18, ResNet50
from .cifar.wrn import wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2
from .cifar.vgg import vgg8_bn, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn
from .cifar.mobilenetv2 import mobile_half
from .cifar.ShuffleNetv1 import ShuffleV1
from .cifar.ShuffleNetv2 import ShuffleV2
from .cifar.mv2_tinyimagenet import mobilenetv2_tinyimagenet
from .imagenet import imagenet_model_dict  # noqa: F401

# Teachers released by mdistiller (cifar_teachers.tar), unpacked by download_ckpts.sh into ./download_ckpts:
# a relative path, resolved against the current directory (run from the repository root, as with mdistiller).
CKPT_ROOT = os.environ.get("MDISTILLER_CKPT_ROOT", "download_ckpts")
cifar100_model_prefix = os.path.join(CKPT_ROOT, "cifar_teachers")


def _teacher(name):
    return os.path.join(cifar100_model_prefix, name + "_vanilla", "ckpt_epoch_240.pth")


cifar_model_dict = {
    # teachers
    "resnet56": (resnet56, _teacher("resnet56")),
    "resnet110": (resnet110, _teacher("resnet110")),
    "resnet32x4": (resnet32x4, _teacher("resnet32x4")),
    "ResNet50": (ResNet50, _teacher("ResNet50")),
    "wrn_40_2": (wrn_40_2, _teacher("wrn_40_2")),
    "vgg13": (vgg13_bn, _teacher("vgg13")),
    # students
    "resnet8": (resnet8, None),
    "resnet14": (resnet14, None),
    "resnet20": (resnet20, None),
    "resnet32": (resnet32, None),
    "resnet44": (resnet44, None),
    "resnet8x4": (resnet8x4, None),
    "ResNet18": (ResNet18, None),
    "wrn_16_1": (wrn_16_1, None),
    "wrn_16_2": (wrn_16_2, None),
    "wrn_40_1": (wrn_40_1, None),
    "vgg8": (vgg8_bn, None),
    "vgg11": (vgg11_bn, None),
    "vgg16": (vgg16_bn, None),
    "vgg19": (vgg19_bn, None),
    "MobileNetV2": (mobile_half, None),
    "ShuffleV1": (ShuffleV1, None),
    "ShuffleV2": (ShuffleV2, None),
}

# mdistiller's Tiny-ImageNet models (DOT's configs): the teacher's checkpoint from tiny_imagenet_teachers.
tiny_imagenet_model_prefix = os.path.join(CKPT_ROOT, "tiny_imagenet_teachers")
tiny_imagenet_model_dict = {
    "ResNet18": (ResNet18, os.path.join(tiny_imagenet_model_prefix, "ResNet18_vanilla", "ti_res18")),
    "MobileNetV2": (mobilenetv2_tinyimagenet, None),
    "ShuffleV2": (ShuffleV2, None),
}

# mdistiller's model dicts of released teachers, by the name a dataset's spec gives (DatasetSpec.teachers):
# their checkpoints are the dataset's released teachers, their constructors that dataset's CIFAR-layout models.
RELEASED_MODEL_DICTS = {"cifar100": cifar_model_dict, "tiny_imagenet": tiny_imagenet_model_dict}
RELEASE_TITLES = {"cifar100": "CIFAR-100", "tiny_imagenet": "Tiny-ImageNet"}
