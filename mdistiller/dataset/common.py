"""Pieces shared by every dataset family of :mod:`mdistiller.dataset`."""
import copy
import os
import shutil

import numpy as np

import torch
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.transforms import functional as TF

from .._cli import first_missing_folder


class ToFloatTensor:
    """Like ``transforms.ToTensor`` but also accepts ``uint8`` CHW tensors.

    The in-memory datasets (CIFAR, SVHN) keep their images as ``uint8`` CHW
    tensors and run the (tensor-capable) torchvision augmentations on them
    directly, which gives bit-identical results to mdistiller's
    PIL -> RandomCrop -> flip -> ToTensor pipeline without the PIL round trip.
    PIL images and HWC ndarrays are still accepted, so the transforms below can
    be reused on ImageFolder data or by user code.
    """

    def __call__(self, pic):
        if isinstance(pic, torch.Tensor):
            if pic.dtype == torch.uint8:
                return pic.to(torch.float32).div_(255.0)
            return pic.to(torch.float32)
        return TF.to_tensor(pic)

    def __repr__(self):
        return self.__class__.__name__ + "()"


def train_transform_32(mean, std, padding=4, flip=True):
    """RandomCrop(32, padding) [+ horizontal flip] + to float + Normalize."""
    ops = [transforms.RandomCrop(32, padding=padding)]
    if flip:
        ops.append(transforms.RandomHorizontalFlip())
    ops += [ToFloatTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(ops)


def test_transform_32(mean, std):
    return transforms.Compose([ToFloatTensor(), transforms.Normalize(mean, std)])


class TensorImageDataset(Dataset):
    """Images held in memory as one tensor (``N x C x H x W``).

    Items are ``(image, target)``, or ``(image, target, index)`` when
    ``return_index`` is true (the form mdistiller's trainers expect for
    training sets). ``targets`` is a list of python ints.
    """

    def __init__(self, images, targets, transform=None, target_transform=None,
                 return_index=False):
        if len(images) != len(targets):
            raise ValueError(
                "images and targets differ in length: %d vs %d" % (len(images), len(targets))
            )
        self.images = images
        self.targets = [int(t) for t in targets]
        self.transform = transform
        self.target_transform = target_transform
        self.return_index = return_index

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        img = self.images[index]
        target = self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        if self.return_index:
            return img, target, index
        return img, target


def strata(dataset):
    """The key of every item that stratified draws group by: the dataset's own ``strata`` (one hashable key per item,
    e.g. a detection image's dominant category) when it has them, else its ``targets`` (the class of every item)."""
    keys = getattr(dataset, "strata", None)
    return list(keys) if keys is not None else list(dataset.targets)


def stratum_orders(keys, seed):
    """``[(positions, order)]``, one pair per stratum of ``keys`` in sorted key order: the stratum's positions
    (ascending, an ``int64`` tensor) and a uniform permutation of them (``torch.randperm``), all drawn in that
    order from one ``torch.Generator`` seeded with ``seed``."""
    groups = {}
    for position, key in enumerate(keys):
        groups.setdefault(key, []).append(position)
    generator = torch.Generator().manual_seed(int(seed))
    return [(torch.as_tensor(groups[key], dtype=torch.int64), torch.randperm(len(groups[key]), generator=generator))
            for key in sorted(groups)]


def per_class_indices(targets, per_class, seed):
    """Sorted positions of at most ``per_class`` items of every class of ``targets``, drawn uniformly
    without replacement by a ``torch.Generator`` seeded with ``seed`` (a class with fewer items keeps all)."""
    if int(per_class) < 1:
        raise ValueError("per_class must be positive, got %r" % (per_class,))
    keep = [positions[order[: int(per_class)]] for positions, order in stratum_orders([int(t) for t in targets], seed)]
    return torch.sort(torch.cat(keep)).values.tolist() if keep else []


def select_items(dataset, indices):
    """A shallow copy of ``dataset`` holding only the items at ``indices``, in that order.

    Works on :class:`TensorImageDataset` (images, targets and the per-item arrays ``data`` /
    ``sample_indices`` some datasets keep for torchvision compatibility), on torchvision's
    ``ImageFolder`` (``samples``, ``imgs``, ``targets``) and on any dataset with a ``select(indices)`` method
    returning that copy (the way another kind of dataset, e.g. one of image ids, takes part).
    """
    indices = [int(i) for i in indices]
    if hasattr(dataset, "select"):
        return dataset.select(indices)
    out = copy.copy(dataset)
    if isinstance(dataset, TensorImageDataset):
        out.images = dataset.images[torch.as_tensor(indices, dtype=torch.int64)]
        out.targets = [dataset.targets[i] for i in indices]
        for name in ("data", "sample_indices"):
            value = getattr(dataset, name, None)
            if value is dataset.images:
                setattr(out, name, out.images)
            elif isinstance(value, torch.Tensor):
                setattr(out, name, value[torch.as_tensor(indices, dtype=torch.int64)])
            elif isinstance(value, np.ndarray):
                setattr(out, name, value[np.asarray(indices, dtype=np.int64)])
        return out
    if hasattr(dataset, "samples"):
        out.samples = [dataset.samples[i] for i in indices]
        out.imgs = out.samples
        out.targets = [target for _, target in out.samples]
        return out
    raise TypeError("cannot take a subset of %s: expected a TensorImageDataset, an ImageFolder or a dataset with "
                    "a select(indices) method" % type(dataset).__name__)


def missing_data_error(name, path, hint):
    return FileNotFoundError(
        "%s data not found: expected %s. %s" % (name, os.path.abspath(path), hint)
    )


def ensure_files(name, folder, files, download, download_fn, hint):
    """Make sure ``files`` (paths) exist, downloading with ``download_fn`` if allowed.

    Raises FileNotFoundError naming the absolute ``folder`` when the files are
    missing and cannot be downloaded (``download`` false or the download failed,
    e.g. offline).
    """
    if all(os.path.isfile(f) for f in files):
        return
    cause = None
    if download:
        # the downloader writes into the folder or next to it (an archive in the data root)
        created = first_missing_folder(folder)
        before = {p: set(os.listdir(p)) for p in (folder, os.path.dirname(os.path.abspath(folder))) if os.path.isdir(p)}
        try:
            download_fn()
        except Exception as exc:  # network errors come in many types
            cause = exc
        if cause is None and all(os.path.isfile(f) for f in files):
            return
        # a failed download leaves nothing behind: the folders it created, its partial files
        if created:
            shutil.rmtree(created, ignore_errors=True)
        for parent, names in before.items():
            for entry in set(os.listdir(parent)) - names if os.path.isdir(parent) else ():
                path = os.path.join(parent, entry)
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    missing = [os.path.basename(f) for f in files if not os.path.isfile(f)]
    if download:
        how = "Automatic download failed"
        if cause is not None:
            how += " (%s: %s)" % (type(cause).__name__, cause)
        how += "; " + hint
    else:
        how = "DATASET.DOWNLOAD is False; set it to True to download automatically, or " + hint
    err = missing_data_error(name, folder, "Missing: %s. %s" % (", ".join(missing), how))
    if cause is not None:
        raise err from cause
    raise err
