"""mdistiller's ``mdistiller.dataset.tiny_imagenet`` names, on top of :mod:`.imagefolder`."""
from ._legacy import DEFAULT_ROOT, make_loaders
from .imagefolder import ImageFolderInstance, build_tiny_imagenet  # noqa: F401


def get_tinyimagenet_dataloader(batch_size, val_batch_size, num_workers, root=DEFAULT_ROOT):
    train_set, val_set, _ = build_tiny_imagenet(root, False)
    return make_loaders(train_set, val_set, batch_size, val_batch_size, num_workers)


def get_tinyimagenet_dataloader_sample(batch_size, val_batch_size, num_workers, k,
                                       root=DEFAULT_ROOT):
    train_set, val_set, _ = build_tiny_imagenet(root, False)
    return make_loaders(train_set, val_set, batch_size, val_batch_size, num_workers, k)
