"""Images/s of the training data path: per-sample DataLoader vs the batched path.

Generates a CIFAR-100-like train set (official pickle layout, random pixels,
``--images`` images) in a temporary folder, builds it with
``mdistiller.dataset.build_datasets`` and times whole epochs of

* ``per_sample``: ``DataLoader(train_set, batch_size, sampler=DistributedSampler(...),
  num_workers=--workers, persistent_workers=False)`` -- the trainer's loader: the
  dataset's per-image RandomCrop(32, 4) / flip / ToFloatTensor / Normalize in worker
  processes (worker start-up at every epoch included, as in training);
* ``batched``: :class:`mdistiller.dataset.batched.BatchedLoader` on ``--device``.

Only the loaders run (no model). Epochs of the two alternate; the median epoch
time over ``--repeats`` gives images/s. With ``--k`` > 0 the train set is
CRD's contrastive wrapper (k negatives per sample) in both paths.
``benchmarks/throughput.py`` runs the same measurement (:func:`measure_data_path`)
next to the training-step timings.

    python benchmarks/data_throughput.py                 # from the repository root
    python benchmarks/data_throughput.py --k 4096 --repeats 3
    python benchmarks/data_throughput.py --device cuda
"""
import argparse
import os
import pickle
import platform
import statistics
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from mdistiller.dataset import build_datasets
from mdistiller.dataset.batched import BatchedLoader
from mdistiller.engine.cfg import CFG
from mdistiller.registry import DataNeeds


def write_cifar100(root, n_train, n_test=100, seed=0):
    """Write ``root/cifar-100-python/{train,test,meta}`` in the official pickle layout (random pixels,
    labels balanced over the 100 classes)."""
    rng = np.random.RandomState(seed)
    folder = os.path.join(str(root), "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = np.arange(n) % 100
        rng.shuffle(fine)
        entry = {
            b"filenames": [("img_%d.png" % i).encode() for i in range(n)],
            b"batch_label": ("%sing batch 1 of 1" % split).encode(),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine // 5).tolist(),
            b"data": rng.randint(0, 256, size=(n, 3072)).astype(np.uint8),
        }
        with open(os.path.join(folder, split), "wb") as f:
            pickle.dump(entry, f, protocol=2)
    meta = {
        b"fine_label_names": [("class_%d" % i).encode() for i in range(100)],
        b"coarse_label_names": [("super_%d" % i).encode() for i in range(20)],
    }
    with open(os.path.join(folder, "meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epoch(loader, epoch, device):
    loader_epoch = getattr(loader, "set_epoch", None) or loader.sampler.set_epoch
    loader_epoch(epoch)
    sync(device)
    start = time.perf_counter()
    count = 0
    for batch in loader:
        count += len(batch[0])
    sync(device)
    return count, time.perf_counter() - start


def measure_data_path(images=10000, batch_size=64, workers=2, repeats=5, device="cpu", k=0):
    """``{"per_sample": images/s, "batched": images/s}``: median epoch over ``repeats`` alternating epochs
    (one warm-up epoch each) on a generated ``images``-image CIFAR-100 train set."""
    device = torch.device(device)
    with tempfile.TemporaryDirectory() as root:
        write_cifar100(root, n_train=images, n_test=100)
        cfg = CFG.clone()
        cfg.defrost()
        cfg.DATASET.TYPE = "cifar100"
        cfg.DATASET.ROOT = root
        cfg.DATASET.DOWNLOAD = False
        needs = DataNeeds(contrastive_k=k) if k else None
        train_set, _, _ = build_datasets(cfg, needs=needs)

    sampler = DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=0)
    per_sample = DataLoader(train_set, batch_size=batch_size, sampler=sampler, num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=False)
    batched = BatchedLoader(train_set, batch_size, device, train=True, seed=0)

    loaders = (("per_sample", per_sample, torch.device("cpu")), ("batched", batched, device))
    times = {name: [] for name, _, _ in loaders}
    for name, loader, dev in loaders:  # warm-up epoch
        time_epoch(loader, 0, dev)
    for epoch in range(1, repeats + 1):
        for name, loader, dev in loaders:
            count, seconds = time_epoch(loader, epoch, dev)
            times[name].append(seconds)
    return {name: count / statistics.median(t) for name, t in times.items()}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000, help="train images (default 10000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the per-sample path")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per path (median)")
    parser.add_argument("--device", default="cpu", help="device of the batched path")
    parser.add_argument("--k", type=int, default=0, help="CRD negatives (0: plain train set)")
    return parser.parse_args()


def main():
    args = parse_args()
    device = torch.device(args.device)
    rates = measure_data_path(args.images, args.batch_size, args.workers, args.repeats, device, args.k)
    print("machine: {} CPU cores ({}), torch {} ({} intra-op threads), batched device {}".format(
        os.cpu_count(), platform.processor() or platform.machine(), torch.__version__, torch.get_num_threads(),
        device))
    print("data: {} generated CIFAR-100 images, batch {}, {}, median of {} epochs".format(
        args.images, args.batch_size, "CRD k={}".format(args.k) if args.k else "no contrastive sampling",
        args.repeats))
    print("per_sample (DataLoader, {} workers): {:>9.0f} images/s".format(args.workers, rates["per_sample"]))
    print("batched    ({}):{} {:>9.0f} images/s".format(
        device, " " * max(0, 20 - len(str(device))), rates["batched"]))
    print("ratio batched / per_sample: {:.1f}x".format(rates["batched"] / rates["per_sample"]))


if __name__ == "__main__":
    main()
