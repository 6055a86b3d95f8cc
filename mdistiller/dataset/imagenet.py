"""mdistiller's ``mdistiller.dataset.imagenet`` names, on top of :mod:`.imagefolder`."""
import os

from torch.utils.data import DataLoader

from ._legacy import DEFAULT_ROOT, make_loaders
from .imagefolder import (  # noqa: F401  (re-exported)
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderInstance,
    build_imagenet,
    get_imagenet_test_transform,
    get_imagenet_train_transform,
)


def get_imagenet_dataloaders(batch_size, val_batch_size, num_workers, root=DEFAULT_ROOT):
    train_set, val_set, _ = build_imagenet(root, False)
    return make_loaders(train_set, val_set, batch_size, val_batch_size, num_workers)


def get_imagenet_dataloaders_sample(batch_size, val_batch_size, num_workers, k=4096,
                                    root=DEFAULT_ROOT):
    train_set, val_set, _ = build_imagenet(root, False)
    return make_loaders(train_set, val_set, batch_size, val_batch_size, num_workers, k)


def get_imagenet_val_loader(val_batch_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                            root=DEFAULT_ROOT, num_workers=4):
    val_dir = os.path.join(root, "imagenet", "val")
    if not os.path.isdir(val_dir):
        raise FileNotFoundError("ImageNet data not found: expected the folder %s"
                                % os.path.abspath(val_dir))
    val_set = ImageFolderInstance(val_dir, transform=get_imagenet_test_transform(mean, std))
    return DataLoader(val_set, batch_size=val_batch_size, shuffle=False,
                      num_workers=num_workers)
