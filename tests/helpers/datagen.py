"""Write tiny fake copies of the on-disk datasets, in their real layouts.

Reusable by any test: each helper writes under ``root`` exactly the files
``mdistiller.dataset`` reads (same dtypes, shapes and pickle/.mat keys as the
official downloads) and returns what it wrote so tests can compare pixels and
labels. Nothing here touches the network.
"""
import os
import pickle

import numpy as np


def _balanced_labels(n, num_classes, rng):
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    return labels.astype(np.int64)


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar100_folder(root, n_train=200, n_test=100, num_classes=100, seed=0):
    """Write ``root/cifar-100-python/{train,test,meta}``.

    Labels are balanced over ``range(num_classes)`` and shuffled; ``data`` is
    uint8 ``N x 3072`` (channel-major rows of 32x32, like the real files).
    Returns ``{"train": (data, fine_labels), "test": (data, fine_labels),
    "folder": path}``.
    """
    rng = np.random.RandomState(seed)
    folder = os.path.join(str(root), "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    out = {"folder": folder}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
        fine = _balanced_labels(n, num_classes, rng)
        _dump(os.path.join(folder, split), {
            b"filenames": [("img_%d.png" % i).encode() for i in range(n)],
            b"batch_label": ("%sing batch 1 of 1" % split).encode(),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine // 5).tolist(),
            b"data": data,
        })
        out[split] = (data, fine)
    _dump(os.path.join(folder, "meta"), {
        b"fine_label_names": [("class_%d" % i).encode() for i in range(100)],
        b"coarse_label_names": [("super_%d" % i).encode() for i in range(20)],
    })
    return out


def make_cifar10_folder(root, n_train=100, n_test=50, num_classes=10, seed=0):
    """Write ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``.

    ``n_train`` images are spread over the 5 batch files in order. Returns
    ``{"train": (data, labels), "test": (data, labels), "folder": path}`` with
    the train arrays concatenated in batch order.
    """
    rng = np.random.RandomState(seed)
    folder = os.path.join(str(root), "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    out = {"folder": folder}
    train = rng.randint(0, 256, size=(n_train, 3072)).astype(np.uint8)
    train_labels = _balanced_labels(n_train, num_classes, rng)
    bounds = np.linspace(0, n_train, 6).astype(int)
    for b in range(5):
        lo, hi = bounds[b], bounds[b + 1]
        _dump(os.path.join(folder, "data_batch_%d" % (b + 1)), {
            b"batch_label": ("training batch %d of 5" % (b + 1)).encode(),
            b"labels": train_labels[lo:hi].tolist(),
            b"data": train[lo:hi],
            b"filenames": [("img_%d.png" % i).encode() for i in range(lo, hi)],
        })
    test = rng.randint(0, 256, size=(n_test, 3072)).astype(np.uint8)
    test_labels = _balanced_labels(n_test, num_classes, rng)
    _dump(os.path.join(folder, "test_batch"), {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": test_labels.tolist(),
        b"data": test,
        b"filenames": [("test_%d.png" % i).encode() for i in range(n_test)],
    })
    _dump(os.path.join(folder, "batches.meta"), {
        b"num_cases_per_batch": int(bounds[1]),
        b"label_names": [("class_%d" % i).encode() for i in range(10)],
        b"num_vis": 3072,
    })
    out["train"] = (train, train_labels)
    out["test"] = (test, test_labels)
    return out


def make_svhn_folder(root, n_train=60, n_test=30, seed=0):
    """Write ``root/svhn/{train,test}_32x32.mat`` in the official layout.

    ``X`` is uint8 ``32 x 32 x 3 x N`` and ``y`` uint8 ``N x 1`` in 1..10 (10
    is the digit 0). Returns ``{"train": (X, y), "test": (X, y), "folder": path}``
    with the arrays as written.
    """
    import scipy.io as sio

    rng = np.random.RandomState(seed)
    folder = os.path.join(str(root), "svhn")
    os.makedirs(folder, exist_ok=True)
    out = {"folder": folder}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.randint(0, 256, size=(32, 32, 3, n)).astype(np.uint8)
        y = (_balanced_labels(n, 10, rng) + 1).astype(np.uint8).reshape(n, 1)
        sio.savemat(os.path.join(folder, "%s_32x32.mat" % split), {"X": X, "y": y})
        out[split] = (X, y)
    return out


def make_imagefolder(root, classes, n_per_class, size=8, seed=0):
    """Write ``root/<class>/img_<i>.png`` RGB images of ``size`` (int or (w, h)).

    Returns ``{class: [uint8 HxWx3 arrays in file-name order]}``.
    """
    from PIL import Image

    rng = np.random.RandomState(seed)
    w, h = (size, size) if isinstance(size, int) else size
    written = {}
    for cls in classes:
        folder = os.path.join(str(root), cls)
        os.makedirs(folder, exist_ok=True)
        written[cls] = []
        for i in range(n_per_class):
            arr = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
            Image.fromarray(arr, "RGB").save(os.path.join(folder, "img_%03d.png" % i))
            written[cls].append(arr)
    return written


def make_dataset_cfg(type_, root="data", download=False, num_classes=0, k=16, mode="exact",
                     **extra):
    """The default config with the dataset keys set (``mdistiller.dataset`` reads the config object).

    ``extra`` may set ``batch_size``, ``test_batch_size``, ``num_workers`` and
    ``distiller`` (DISTILLER.TYPE) for ``get_dataset``.
    """
    from mdistiller.engine.cfg import CFG

    cfg = CFG.clone()
    cfg.DATASET.TYPE = type_
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.DOWNLOAD = download
    cfg.DATASET.NUM_CLASSES = num_classes
    cfg.DATASET.NUM_WORKERS = extra.get("num_workers", 0)
    cfg.DATASET.TEST.BATCH_SIZE = extra.get("test_batch_size", 16)
    cfg.SOLVER.BATCH_SIZE = extra.get("batch_size", 16)
    cfg.DISTILLER.TYPE = extra.get("distiller", "NONE")
    cfg.CRD.MODE = mode
    cfg.CRD.NCE.K = k
    return cfg
