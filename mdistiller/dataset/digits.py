"""scikit-learn's bundled 8x8 handwritten digits as a tiny CIFAR-shaped dataset.

``sklearn.datasets.load_digits`` ships with scikit-learn (1,797 images, 10
classes, pixel values 0..16), so this dataset works offline and is what the
README demo and the test-suite train on.

* Split: stratified 75/25 with ``train_test_split(test_size=0.25,
  stratify=labels, random_state=0)`` (pinned as ``DIGITS_TEST_MASK_HEX``) -> 1,347 train / 450 test images
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
import importlib.util
import os
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

# Test membership of the 1,797 images (one bit each, row order, big-endian bytes): the split
# ``train_test_split(test_size=0.25, stratify=labels, random_state=0)`` gives; pinned so a run does
# not import scikit-learn (seconds per process), tests/dataset/test_dataset.py checks it against sklearn.
DIGITS_TEST_MASK_HEX = (
    "000004883526104000164101934205001a00080102240028062c1e081108960a009019120420f8a0028110e040080a9a"
    "304415244942c0a00a2030804004d821408b8020004885c400104008a0900005486800301000020ec409001224840083"
    "b8013c21a69c0a0204000f48400804a4184902124061e5008024604e94376a819216015480004842a0a4180a5000a40b"
    "8561e688108049124c80c02205068e000109f202c141398813c009190000148e01008410a0e10033282900c144c8c068"
    "0a0102930292030922a6402c26042108a8608198c8a01412861202128138a41500"
)

_CACHE = {}
_LOCK = threading.Lock()


def load_digits_arrays():
    """``(images, labels)``: scikit-learn's digits as ``load_digits()`` returns them (1797 x 8 x 8 float64
    values 0..16, int64 labels), read from its bundled ``digits.csv.gz`` without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz") if spec else None
    if path is None or not os.path.isfile(path):  # a layout we do not know: ask scikit-learn
        from sklearn.datasets import load_digits

        digits = load_digits()
        return np.asarray(digits.images, dtype=np.float64), np.asarray(digits.target, dtype=np.int64)
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def digits_split():
    """``(train_idx, val_idx)``: sorted row indices of the 1,347 / 450 split."""
    mask = np.unpackbits(np.frombuffer(bytes.fromhex(DIGITS_TEST_MASK_HEX), dtype=np.uint8))[:1797]
    return np.flatnonzero(mask == 0), np.flatnonzero(mask == 1)


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
        images, labels = load_digits_arrays()
        train_idx, val_idx = digits_split()
        imgs = torch.from_numpy(np.asarray(images, dtype=np.float32) / 16.0)
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
