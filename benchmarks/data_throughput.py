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

    python -m benchmarks.data_throughput                 # from the repository root
    python -m benchmarks.data_throughput --k 4096 --repeats 3
    python -m benchmarks.data_throughput --device cuda
"""
import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from mdistiller.dataset import build_datasets
from mdistiller.dataset.batched import BatchedLoader
from mdistiller.registry import DataNeeds
from tests.helpers.datagen import make_cifar100_folder, make_dataset_cfg


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000, help="train images (default 10000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the per-sample path")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per path (median)")
    parser.add_argument("--device", default="cpu", help="device of the batched path")
    parser.add_argument("--k", type=int, default=0, help="CRD negatives (0: plain train set)")
    return parser.parse_args()


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


def main():
    args = parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as root:
        make_cifar100_folder(root, n_train=args.images, n_test=100)
        cfg = make_dataset_cfg("cifar100", root)
        needs = DataNeeds(contrastive_k=args.k) if args.k else None
        train_set, _, _ = build_datasets(cfg, needs=needs)

    sampler = DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=0)
    per_sample = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                            pin_memory=device.type == "cuda", persistent_workers=False)
    batched = BatchedLoader(train_set, args.batch_size, device, train=True, seed=0)

    loaders = (("per_sample", per_sample, torch.device("cpu")), ("batched", batched, device))
    times = {name: [] for name, _, _ in loaders}
    for name, loader, dev in loaders:  # warm-up epoch
        time_epoch(loader, 0, dev)
    for epoch in range(1, args.repeats + 1):
        for name, loader, dev in loaders:
            count, seconds = time_epoch(loader, epoch, dev)
            times[name].append(seconds)
    rates = {name: count / statistics.median(t) for name, t in times.items()}

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
