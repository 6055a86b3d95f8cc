"""SVHN (cropped digits, format 2) read from the official ``.mat`` files.

Expected files: ``ROOT/svhn/train_32x32.mat`` and ``ROOT/svhn/test_32x32.mat``
(``X``: ``32 x 32 x 3 x N`` uint8, ``y``: ``N x 1`` with label 10 meaning the
digit 0). The ``extra`` split is not used. torchvision downloads the files when
they are missing and downloading is allowed.

Augmentation: RandomCrop(32, padding=4) only -- no horizontal flip, digits are
not mirror-symmetric. Normalization uses the usual SVHN train-set statistics.
"""
import os

import numpy as np
import torch

from .common import TensorImageDataset, ensure_files, test_transform_32, train_transform_32

SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)
_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def get_svhn_train_transform():
    return train_transform_32(SVHN_MEAN, SVHN_STD, flip=False)


def get_svhn_test_transform():
    return test_transform_32(SVHN_MEAN, SVHN_STD)


class SVHN(TensorImageDataset):
    """SVHN split ``"train"`` or ``"test"``; labels are the digits 0-9."""

    num_classes = 10

    def __init__(self, root="data", split="train", transform=None, target_transform=None,
                 download=False, return_index=False):
        import scipy.io as sio

        if split not in _FILES:
            raise ValueError("SVHN split must be one of %s, got %r" % (sorted(_FILES), split))
        self.root = root
        self.split = split
        folder = os.path.join(root, "svhn")
        needed = [os.path.join(folder, f) for f in _FILES.values()]
        ensure_files(
            "SVHN", folder, needed, download, lambda: self._download(folder),
            "download train_32x32.mat and test_32x32.mat from "
            "http://ufldl.stanford.edu/housenumbers/ into %s" % os.path.abspath(folder),
        )
        mat = sio.loadmat(os.path.join(folder, _FILES[split]))
        # HWCN -> NCHW, as torchvision does
        self.data = np.ascontiguousarray(np.transpose(np.asarray(mat["X"], dtype=np.uint8),
                                                      (3, 2, 0, 1)))
        labels = np.asarray(mat["y"]).astype(np.int64).reshape(-1) % 10
        self.classes = [str(i) for i in range(10)]
        super().__init__(torch.from_numpy(self.data), labels.tolist(), transform,
                         target_transform, return_index)

    @staticmethod
    def _download(folder):
        import torchvision

        for split in _FILES:
            torchvision.datasets.SVHN(folder, split=split, download=True)


def build_svhn(root, download):
    train = SVHN(root, "train", get_svhn_train_transform(), download=download, return_index=True)
    val = SVHN(root, "test", get_svhn_test_transform(), download=download)
    return train, val, SVHN.num_classes
