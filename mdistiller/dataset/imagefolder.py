"""ImageNet and Tiny-ImageNet as torchvision ImageFolders.

Layouts (one sub-folder per class in both splits, as mdistiller expects)::

    ROOT/imagenet/{train,val}/<wnid>/*.JPEG
    ROOT/tiny-imagenet-200/{train,val}/<wnid>/...

The validation split always reuses the training split's class -> index
mapping, so a val folder missing a class cannot silently shift the labels.
Transforms are mdistiller's:

* ImageNet train: RandomResizedCrop(224), flip; val: Resize(256), CenterCrop(224);
  mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225).
* Tiny-ImageNet train: RandomRotation(20), flip; val: none; mean/std
  (0.4802, 0.4481, 0.3975) / (0.2302, 0.2265, 0.2262).
"""
import os

from torchvision import datasets, transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_IMAGENET_MEAN = (0.4802, 0.4481, 0.3975)
TINY_IMAGENET_STD = (0.2302, 0.2265, 0.2262)


def get_imagenet_train_transform(mean=IMAGENET_MEAN, std=IMAGENET_STD):
    return transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def get_imagenet_test_transform(mean=IMAGENET_MEAN, std=IMAGENET_STD):
    return transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def get_tiny_imagenet_train_transform():
    return transforms.Compose([
        transforms.RandomRotation(20),
        transforms.RandomHorizontalFlip(0.5),
        transforms.ToTensor(),
        transforms.Normalize(TINY_IMAGENET_MEAN, TINY_IMAGENET_STD),
    ])


def get_tiny_imagenet_test_transform():
    return transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize(TINY_IMAGENET_MEAN, TINY_IMAGENET_STD),
    ])


class ImageFolderInstance(datasets.ImageFolder):
    """ImageFolder with an optional fixed class mapping and optional index in items.

    ``class_to_idx``: use this mapping instead of scanning ``root`` (every class
    folder found under ``root`` must be in it; classes of the mapping may be
    absent). ``return_index``: items are ``(img, target, index)``.
    """

    def __init__(self, root, transform=None, target_transform=None, class_to_idx=None,
                 return_index=False, **kwargs):
        self._fixed_class_to_idx = dict(class_to_idx) if class_to_idx is not None else None
        self.return_index = return_index
        if class_to_idx is not None:
            kwargs.setdefault("allow_empty", True)
        super().__init__(root, transform=transform, target_transform=target_transform, **kwargs)

    def find_classes(self, directory):
        if self._fixed_class_to_idx is None:
            return super().find_classes(directory)
        found = sorted(e.name for e in os.scandir(directory) if e.is_dir())
        unknown = [c for c in found if c not in self._fixed_class_to_idx]
        if unknown:
            raise ValueError(
                "%s has class folders absent from the training split: %s"
                % (os.path.abspath(directory), ", ".join(unknown[:10]))
            )
        mapping = self._fixed_class_to_idx
        return sorted(mapping, key=mapping.get), dict(mapping)

    def __getitem__(self, index):
        img, target = super().__getitem__(index)
        if self.return_index:
            return img, target, index
        return img, target


def _require_dir(name, path, hint):
    if not os.path.isdir(path):
        raise FileNotFoundError(
            "%s data not found: expected the folder %s. %s" % (name, os.path.abspath(path), hint)
        )


def _build_folder_pair(name, folder, train_tf, val_tf, hint):
    train_dir = os.path.join(folder, "train")
    val_dir = os.path.join(folder, "val")
    _require_dir(name, train_dir, hint)
    _require_dir(name, val_dir, hint)
    if (os.path.isfile(os.path.join(val_dir, "val_annotations.txt"))
            and os.path.isdir(os.path.join(val_dir, "images"))):
        raise FileNotFoundError(
            "%s: %s still has the original flat layout (images/ + val_annotations.txt); "
            "move every val image into a sub-folder named after its class (column 2 of "
            "val_annotations.txt)." % (name, os.path.abspath(val_dir))
        )
    train = ImageFolderInstance(train_dir, transform=train_tf, return_index=True)
    val = ImageFolderInstance(val_dir, transform=val_tf, class_to_idx=train.class_to_idx)
    return train, val, len(train.classes)


def build_imagenet(root, download):
    return _build_folder_pair(
        "ImageNet", os.path.join(root, "imagenet"),
        get_imagenet_train_transform(), get_imagenet_test_transform(),
        "ImageNet cannot be downloaded automatically: get ILSVRC2012 from "
        "https://image-net.org and arrange train/ and val/ into one folder per class.",
    )


def build_tiny_imagenet(root, download):
    return _build_folder_pair(
        "Tiny-ImageNet", os.path.join(root, "tiny-imagenet-200"),
        get_tiny_imagenet_train_transform(), get_tiny_imagenet_test_transform(),
        "Download http://cs231n.stanford.edu/tiny-imagenet-200.zip, unzip it into %s and "
        "move the val images into one folder per class." % os.path.abspath(root),
    )
