"""scikit-learn's bundled 8x8 handwritten digits as a tiny CIFAR-shaped dataset.

``sklearn.datasets.load_digits`` ships with scikit-learn (1,797 images, 10
classes, pixel values 0..16), so this dataset works offline and is what the
README demo and the test-suite train on.

* Split: stratified 75/25 with ``train_test_split(test_size=0.25,
  stratify=labels, random_state=0)`` -> 1,347 train / 450 test images
  (130-137 per class in train, 43-46 in test). Both splits keep the original
  sample order (indices sorted).
* Images: values / 16 -> [0, 1], bilinearly upscaled 8x8 -> 32x32
  (``F.interpolate``, ``align_corners=False``), grey replicated to 3 channels so
  every CIFAR model accepts them. ``size`` (``DATASET.INPUT_SIZE``) picks another
  side, e.g. 16 for runs four times cheaper; the crop padding scales with it
  (``size // 16``, at least 1).
* Normalization: one mean/std over all pixels of the *train* split after
  upscaling (about 0.305 / 0.324 at 32x32), the same value for the 3 channels.
* Train augmentation: RandomCrop(size, padding=2 at 32) padding with the background
  (raw value 0). No flip: digits are not mirror-symmetric. It draws from
  torch's RNG (global, or the DataLoader worker's), so runs are reproducible
  under ``torch.manual_seed``.

The tensors are computed once per process (module-level cache) and items are
slices of them: no PIL round trip.
"""
import threading

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms

from .common import TensorImageDataset

DIGITS_TEST_SIZE = 0.25
DIGITS_SPLIT_SEED = 0
DIGITS_NUM_CLASSES = 10
DIGITS_TRAIN_SIZE = 1347
DIGITS_VAL_SIZE = 450
DIGITS_SIZE = 32

_CACHE = {}
_LOCK = threading.Lock()


def digits_size(input_size):
    """The image side for ``DATASET.INPUT_SIZE`` (None, an int, or a square ``[h, w]``)."""
    if input_size is None:
        return DIGITS_SIZE
    sides = [int(v) for v in (input_size if isinstance(input_size, (list, tuple)) else [input_size])]
    if len(set(sides)) != 1 or sides[0] < 8:
        raise ValueError("digits images are square and at least 8x8: DATASET.INPUT_SIZE {!r}".format(input_size))
    return sides[0]


def _prepare(size=DIGITS_SIZE):
    """Return the cached dict with ``train_x``, ``train_y``, ``val_x``, ``val_y``, ``mean``, ``std``."""
    with _LOCK:
        if size in _CACHE:
            return _CACHE[size]
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        labels = np.asarray(digits.target, dtype=np.int64)
        train_idx, val_idx = train_test_split(
            np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, stratify=labels,
            random_state=DIGITS_SPLIT_SEED,
        )
        train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
        imgs = torch.from_numpy(np.asarray(digits.images, dtype=np.float32) / 16.0)
        imgs = F.interpolate(imgs.unsqueeze(1), size=(size, size), mode="bilinear",
                             align_corners=False).clamp_(0.0, 1.0)
        train_raw = imgs[torch.from_numpy(train_idx)]
        mean = float(train_raw.mean())
        std = float(train_raw.std())

        def norm(x):
            return ((x - mean) / std).expand(-1, 3, -1, -1).contiguous()

        data = {
            "train_x": norm(train_raw),
            "train_y": labels[train_idx].tolist(),
            "val_x": norm(imgs[torch.from_numpy(val_idx)]),
            "val_y": labels[val_idx].tolist(),
            "train_idx": train_idx,
            "val_idx": val_idx,
            "mean": mean,
            "std": std,
        }
        for key in ("train_x", "val_x"):
            data[key].requires_grad_(False)
        _CACHE[size] = data
        return data


def digits_stats(size=DIGITS_SIZE):
    """``(mean, std)`` of the upscaled train split in [0, 1] units."""
    data = _prepare(size)
    return data["mean"], data["std"]


def get_digits_train_transform(size=DIGITS_SIZE):
    mean, std = digits_stats(size)
    # pad with the normalized background value so padding looks like blank paper
    return transforms.RandomCrop(size, padding=max(1, size // 16), fill=(0.0 - mean) / std)


class Digits(TensorImageDataset):
    """Normalized 3 x size x size float images (default 32); ``train`` picks the 1,347 / 450 split.

    ``sample_indices`` holds each item's row in ``load_digits()``.
    """

    num_classes = DIGITS_NUM_CLASSES

    def __init__(self, train=True, transform=None, target_transform=None, return_index=False, size=DIGITS_SIZE):
        data = _prepare(size)
        key = "train" if train else "val"
        self.train = train
        self.data = data[key + "_x"]
        self.sample_indices = data[key + "_idx"]
        self.classes = [str(i) for i in range(DIGITS_NUM_CLASSES)]
        super().__init__(self.data, data[key + "_y"], transform, target_transform, return_index)

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if self.transform is None:  # never hand out a view of the shared cache
            item = (item[0].clone(),) + tuple(item[1:])
        return item


def build_digits(root=None, download=False, size=DIGITS_SIZE):
    """``root``/``download`` are ignored: the data ships with scikit-learn."""
    train = Digits(True, get_digits_train_transform(size), return_index=True, size=size)
    val = Digits(False, size=size)
    return train, val, DIGITS_NUM_CLASSES
