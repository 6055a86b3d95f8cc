"""mdistiller's ``mdistiller.dataset.cifar100`` names, on top of :mod:`.cifar`."""
import os

from ._legacy import DEFAULT_ROOT, make_loaders
from .cifar import (  # noqa: F401  (re-exported)
    CIFAR100,
    CIFAR100Instance,
    build_cifar100,
    get_cifar100_test_transform,
    get_cifar100_train_transform,
)


def get_data_folder(root=DEFAULT_ROOT):
    os.makedirs(root, exist_ok=True)
    return root


def get_cifar100_dataloaders(batch_size, val_batch_size, num_workers, root=DEFAULT_ROOT,
                             download=True):
    train_set, val_set, _ = build_cifar100(root, download)
    return make_loaders(train_set, val_set, batch_size, val_batch_size, num_workers)


def get_cifar100_dataloaders_sample(batch_size, val_batch_size, num_workers, k, mode="exact",
                                    root=DEFAULT_ROOT, download=True):
    train_set, val_set, _ = build_cifar100(root, download)
    return make_loaders(train_set, val_set, batch_size, val_batch_size, num_workers, k, mode)
