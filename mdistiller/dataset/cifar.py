"""CIFAR-100 / CIFAR-10 read straight from the official python pickle layout.

Expected files (what torchvision's downloader extracts)::

    ROOT/cifar-100-python/{train,test,meta}
    ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}

The pickles are read here (not through torchvision's CIFAR classes, which
md5-check every file) with a restricted unpickler that admits only the numpy
array globals these files reference, so a tampered file cannot run code;
torchvision is used only to download when the folder is missing. Images are
kept as one ``uint8`` ``N x 3 x 32 x 32`` tensor and the augmentations run on
tensors: RandomCrop(32, padding=4) with zero padding,
RandomHorizontalFlip, /255, Normalize -- numerically the same as mdistiller's
PIL pipeline and driven by torch's RNG.
"""
import os

import numpy as np
import torch

from .common import TensorImageDataset, ensure_files, test_transform_32, train_transform_32
from .restricted_pickle import load_restricted

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def get_cifar100_train_transform():
    return train_transform_32(CIFAR100_MEAN, CIFAR100_STD)


def get_cifar100_test_transform():
    return test_transform_32(CIFAR100_MEAN, CIFAR100_STD)


def get_cifar10_train_transform():
    return train_transform_32(CIFAR10_MEAN, CIFAR10_STD)


def get_cifar10_test_transform():
    return test_transform_32(CIFAR10_MEAN, CIFAR10_STD)


def _load_pickle(path):
    # a restricted unpickler: a tampered file cannot run code (see restricted_pickle)
    entry = load_restricted(path, encoding="bytes")
    if not isinstance(entry, dict):
        raise ValueError("{} holds a {}, not the dict of a CIFAR batch file".format(path, type(entry).__name__))
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def _decode_names(names):
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


class _CIFARBase(TensorImageDataset):
    base_folder = None
    train_list = ()
    test_list = ()
    meta_file = None
    label_key = None
    names_key = None
    num_classes = None
    display_name = None
    url = None

    def __init__(self, root="data", train=True, transform=None, target_transform=None,
                 download=False, return_index=False):
        self.root = root
        self.train = train
        folder = os.path.join(root, self.base_folder)
        needed = [os.path.join(folder, f) for f in self.train_list + self.test_list]
        ensure_files(
            self.display_name, folder, needed, download, lambda: self._download(root),
            "download %s and extract it into %s" % (self.url, os.path.abspath(root)),
        )
        chunks, labels = [], []
        for name in (self.train_list if train else self.test_list):
            entry = _load_pickle(os.path.join(folder, name))
            chunks.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            key = self.label_key if self.label_key in entry else "labels"
            labels.extend(int(t) for t in entry[key])
        chw = np.ascontiguousarray(np.concatenate(chunks, axis=0))
        # ``data`` is HWC uint8 like torchvision's CIFAR classes (a view, no copy)
        self.data = chw.transpose(0, 2, 3, 1)
        meta_path = os.path.join(folder, self.meta_file)
        if os.path.isfile(meta_path):
            self.classes = _decode_names(_load_pickle(meta_path).get(self.names_key, []))
        else:
            self.classes = [str(i) for i in range(self.num_classes)]
        super().__init__(torch.from_numpy(chw), labels, transform, target_transform,
                         return_index)

    @classmethod
    def _download(cls, root):
        raise NotImplementedError


class CIFAR100(_CIFARBase):
    """CIFAR-100 (fine labels); items ``(img, target)`` or ``(img, target, index)``."""

    base_folder = "cifar-100-python"
    train_list = ("train",)
    test_list = ("test",)
    meta_file = "meta"
    label_key = "fine_labels"
    names_key = "fine_label_names"
    num_classes = 100
    display_name = "CIFAR-100"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"

    @classmethod
    def _download(cls, root):
        import torchvision

        torchvision.datasets.CIFAR100(root, train=True, download=True)


class CIFAR10(_CIFARBase):
    """CIFAR-10; items ``(img, target)`` or ``(img, target, index)``."""

    base_folder = "cifar-10-batches-py"
    train_list = tuple("data_batch_%d" % i for i in range(1, 6))
    test_list = ("test_batch",)
    meta_file = "batches.meta"
    label_key = "labels"
    names_key = "label_names"
    num_classes = 10
    display_name = "CIFAR-10"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

    @classmethod
    def _download(cls, root):
        import torchvision

        torchvision.datasets.CIFAR10(root, train=True, download=True)


class CIFAR100Instance(CIFAR100):
    """mdistiller's name: CIFAR-100 whose items carry their index."""

    def __init__(self, root="data", train=True, transform=None, target_transform=None,
                 download=False):
        super().__init__(root, train, transform, target_transform, download, return_index=True)


def build_cifar100(root, download):
    train = CIFAR100(root, True, get_cifar100_train_transform(), download=download,
                     return_index=True)
    val = CIFAR100(root, False, get_cifar100_test_transform(), download=download)
    return train, val, CIFAR100.num_classes


def build_cifar10(root, download):
    train = CIFAR10(root, True, get_cifar10_train_transform(), download=download,
                    return_index=True)
    val = CIFAR10(root, False, get_cifar10_test_transform(), download=download)
    return train, val, CIFAR10.num_classes
