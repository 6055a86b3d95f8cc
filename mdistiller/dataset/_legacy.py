"""Loader helpers shared by the mdistiller-compatible shim modules."""
from torch.utils.data import DataLoader

from .contrastive import ContrastiveSample

DEFAULT_ROOT = "data"


def make_loaders(train_set, val_set, batch_size, val_batch_size, num_workers,
                 k=None, mode="exact"):
    if k is not None:
        train_set = ContrastiveSample(train_set, k=k, mode=mode)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                              num_workers=num_workers)
    val_loader = DataLoader(val_set, batch_size=val_batch_size, shuffle=False,
                            num_workers=num_workers)
    return train_loader, val_loader, len(train_set)
