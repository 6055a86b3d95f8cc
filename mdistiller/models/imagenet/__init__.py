"""ImageNet backbones with mdistiller's names (ResNets use torchvision's state_dict layout)."""
from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152
from .mobilenetv1 import MobileNetV1

imagenet_model_dict = {
    "ResNet18": resnet18,
    "ResNet34": resnet34,
    "ResNet50": resnet50,
    "ResNet101": resnet101,
    "MobileNetV1": MobileNetV1,
}
