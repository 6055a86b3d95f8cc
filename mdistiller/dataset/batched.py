"""Batched data path for the in-memory datasets (CIFAR-10/100, SVHN, digits), independent of the config
(``mdistiller.engine.data`` decides the pipeline and builds the loaders).

The per-sample path (``DATASET.PIPELINE per_sample``) runs the dataset's
torchvision transform on one image at a time in DataLoader workers. The batched
path keeps the dataset's image tensor (``uint8`` for CIFAR/SVHN, normalised
``float32`` for digits) on the training device and produces a whole batch with
one set of tensor ops:

* ``RandomCrop(size, padding, fill)``: the source tensor is padded once
  (``fill``, constant mode, exactly as torchvision pads a tensor); crop offsets
  ``(dy, dx)`` are uniform over ``{0..Hp-h} x {0..Wp-w}`` -- the 9 x 9 = 81
  positions of CIFAR's ``RandomCrop(32, padding=4)``, as
  ``RandomCrop.get_params`` draws them;
* ``RandomHorizontalFlip(p)``: each image is mirrored with probability ``p``;
* crop and flip are one ``index_select`` of the batch's ``B*C*h`` source rows
  and one ``gather`` of each image's columns ``dx .. dx+w-1`` (reversed where
  flipped);
* ``ToFloatTensor`` and ``Normalize(mean, std)``: ``x / 255`` (fused with the
  conversion, for ``uint8``), ``- mean``, ``/ std``: the float32 operations of
  the per-sample transforms, so a batch without augmentation equals the
  stacked per-sample items bit for bit.

Sample order and sharding follow the trainer's per-sample loaders:

* train (``train=True``): the epoch's global order is
  ``torch.randperm(N)`` drawn from a generator seeded with ``seed + epoch``,
  padded by repetition to a multiple of the world size and dealt round-robin to
  the ranks -- the indices ``DistributedSampler(shuffle=True, seed=seed)``
  yields after ``set_epoch(epoch)``; batches of ``batch_size``, the last one
  partial unless ``drop_last``;
* eval (``train=False``): rank ``r`` gets ``r, r + W, r + 2W, ...`` in order
  (the trainer's ``ShardSampler``), no augmentation.

Randomness (crop offsets, flips, contrastive draws) comes from one
``torch.Generator`` on the training device, re-seeded at every pass over the
data from ``(seed, epoch, rank)`` (:func:`epoch_seed`); the global RNG is never
used. Two runs with the same seed give identical batches, iterating the same
epoch twice gives the same batches, and a run resumed at an epoch boundary
continues as an uninterrupted one. The streams of CPU and CUDA generators
differ, so the augmentations of a CPU run and a CUDA run with the same seed
differ (the sample order does not).

Contrastive train sets (:class:`~mdistiller.dataset.contrastive.ContrastiveSample`)
yield ``(image, target, index, contrastive_index)`` with CRD's sampling, drawn
for the whole batch at once: the positive is the sample itself (``exact``) or a
uniformly drawn sample of its class (``relax``); the ``k`` negatives are a
uniformly random ``k``-subset of the samples of all other classes (random
integer keys, the ``k`` smallest), with replacement only when ``k`` exceeds the
number of such samples. Their order within a row is that of ``topk``, not
shuffled; CRD and WCoRD treat the negatives of a row symmetrically.
"""
import contextlib
import math

import numpy as np
import torch
from torchvision import transforms
from torchvision.transforms import functional as TF

from .common import TensorImageDataset, ToFloatTensor
from .contrastive import ContrastiveSample

__all__ = [
    "BatchTransform",
    "BatchedLoader",
    "check_batched_support",
    "epoch_seed",
    "shard_indices",
]


def epoch_seed(seed, epoch, rank):
    """The 64-bit seed of the augmentation generator of ``(seed, epoch, rank)``.

    Mixed with numpy's ``SeedSequence``, so nearby triples give unrelated streams.
    """
    entropy = [int(seed) % 2 ** 64, int(epoch) % 2 ** 64, int(rank) % 2 ** 64]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


def shard_indices(length, epoch, seed, rank, world_size, train=True):
    """The sample indices rank ``rank`` visits in one epoch (CPU ``int64`` tensor).

    ``train``: ``DistributedSampler(shuffle=True, seed=seed, drop_last=False)``
    after ``set_epoch(epoch)``: ``randperm(length)`` seeded with ``seed + epoch``,
    padded by repetition to ``ceil(length / W) * W`` and dealt round-robin.
    Otherwise ``rank, rank + W, ...`` in order (each sample on exactly one rank).
    """
    if not 0 <= rank < world_size:
        raise ValueError("rank must be in [0, %d), got %d" % (world_size, rank))
    if not train:
        return torch.arange(rank, length, world_size, dtype=torch.int64)
    gen = torch.Generator()
    gen.manual_seed(int(seed) + int(epoch))
    order = torch.randperm(length, generator=gen)
    total = int(math.ceil(length / world_size)) * world_size
    if total > length:
        pad = total - length
        order = torch.cat([order, order.repeat(int(math.ceil(pad / length)))[:pad]])
    return order[rank:total:world_size]


class BatchTransform:
    """``RandomCrop`` / ``RandomHorizontalFlip`` / ``ToFloatTensor`` / ``Normalize`` on whole batches.

    Args:
        crop_size: ``(h, w)`` of ``RandomCrop``, or None (no crop).
        padding: ``(left, top, right, bottom)`` zero-or-``fill`` padding before the crop.
        fill: constant padding value (in the source dtype's units).
        flip_p: probability of a horizontal flip (0 = no flip step).
        to_float: ``ToFloatTensor`` step (float32; ``uint8`` is divided by 255).
        mean, std: ``Normalize`` per-channel statistics, or None.
    """

    def __init__(self, crop_size=None, padding=(0, 0, 0, 0), fill=0, flip_p=0.0, to_float=False,
                 mean=None, std=None):
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.padding = tuple(int(p) for p in padding)
        self.fill = fill
        self.flip_p = float(flip_p)
        self.to_float = bool(to_float)
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std go together")
        self._cache = {}
        if self.std is not None and any(s == 0 for s in self.std):
            raise ValueError("std evaluated to zero, leading to division by zero")

    def __repr__(self):
        return "BatchTransform(crop_size=%s, padding=%s, fill=%s, flip_p=%s, to_float=%s, mean=%s, std=%s)" % (
            self.crop_size, self.padding, self.fill, self.flip_p, self.to_float, self.mean, self.std)

    @classmethod
    def from_transform(cls, transform):
        """Read a per-sample transform of this package (None, one step or a ``Compose``).

        Accepted steps, in this order, each optional: ``RandomCrop`` (constant
        padding), ``RandomHorizontalFlip``, ``ToFloatTensor``, ``Normalize``.
        Anything else raises ``ValueError`` naming the step.
        """
        if transform is None:
            steps = []
        elif isinstance(transform, transforms.Compose):
            steps = list(transform.transforms)
        else:
            steps = [transform]
        kinds = (transforms.RandomCrop, transforms.RandomHorizontalFlip, ToFloatTensor, transforms.Normalize)
        found = {}
        last = -1
        for step in steps:
            position = next((i for i, kind in enumerate(kinds) if type(step) is kind), None)
            if position is None or position <= last:
                raise ValueError(
                    "the batched data path runs RandomCrop (constant padding), RandomHorizontalFlip, "
                    "ToFloatTensor and Normalize, in this order; cannot batch %r in %r -- use "
                    "DATASET.PIPELINE per_sample" % (step, transform)
                )
            found[kinds[position]] = step
            last = position
        kwargs = {}
        crop = found.get(transforms.RandomCrop)
        if crop is not None:
            if crop.padding_mode != "constant":
                raise ValueError("batched RandomCrop supports padding_mode='constant' only, got %r"
                                 % crop.padding_mode)
            if not isinstance(crop.fill, (int, float)):
                raise ValueError("batched RandomCrop needs a scalar fill, got %r" % (crop.fill,))
            kwargs.update(crop_size=tuple(crop.size), padding=_parse_padding(crop.padding), fill=crop.fill)
        flip = found.get(transforms.RandomHorizontalFlip)
        if flip is not None:
            kwargs["flip_p"] = flip.p
        kwargs["to_float"] = ToFloatTensor in found
        norm = found.get(transforms.Normalize)
        if norm is not None:
            kwargs.update(mean=_as_tuple(norm.mean), std=_as_tuple(norm.std))
        return cls(**kwargs)

    # --------------------------------------------------------------- pieces
    def prepare(self, images):
        """The source tensor batches are cut from: ``images`` padded once (no copy without crop)."""
        if images.dim() != 4:
            raise ValueError("expected images N x C x H x W, got shape %s" % (tuple(images.shape),))
        images = images.contiguous()
        if self.crop_size is None:
            return images
        if any(self.padding):
            images = TF.pad(images, list(self.padding), fill=self.fill, padding_mode="constant")
        height, width = images.shape[-2:]
        if height < self.crop_size[0] or width < self.crop_size[1]:
            raise ValueError("crop size %s is larger than the padded images %s"
                             % (self.crop_size, (height, width)))
        return images.contiguous()

    def offset_range(self, source):
        """Number of crop positions ``(rows, cols)`` in a prepared ``source``."""
        if self.crop_size is None:
            return 1, 1
        return source.shape[-2] - self.crop_size[0] + 1, source.shape[-1] - self.crop_size[1] + 1

    def draw(self, source, count, generator):
        """Random ``(dy, dx, flip)`` for ``count`` images, on the generator's device.

        ``flip`` is None when the transform has no flip step.
        """
        device = generator.device
        rows, cols = self.offset_range(source)
        dy = torch.randint(0, rows, (count,), generator=generator, device=device)
        dx = torch.randint(0, cols, (count,), generator=generator, device=device)
        flip = None
        if self.flip_p > 0:
            flip = torch.rand(count, generator=generator, device=device) < self.flip_p
        return dy, dx, flip

    def identity(self, count, device):
        """``(dy, dx, flip)`` that place the original image: no augmentation."""
        left, top = self.padding[0], self.padding[1]
        dy = torch.full((count,), top if self.crop_size else 0, dtype=torch.int64, device=device)
        dx = torch.full((count,), left if self.crop_size else 0, dtype=torch.int64, device=device)
        return dy, dx, None

    def _statistics(self, dtype, device):
        key = (dtype, device)
        if key not in self._cache:  # built once per device: no host-to-device copy per batch
            self._cache[key] = tuple(
                torch.as_tensor(values, dtype=dtype).view(1, -1, 1, 1).to(device) for values in (self.mean, self.std)
            )
        return self._cache[key]

    def apply(self, source, index, dy, dx, flip):
        """The batch of images ``index`` of a prepared ``source``, cropped at ``(dy, dx)``, flipped where ``flip``.

        Returns a new ``B x C x h x w`` tensor (float32 when ``to_float``).
        """
        if self.crop_size is None and flip is None:
            x = source.index_select(0, index)
        else:
            count, channels, height, width = source.shape
            out_h, out_w = self.crop_size or (height, width)
            device = source.device
            # 1) the B*C*h source rows of the crops (contiguous rows of the padded images)
            rows = ((index[:, None, None] * channels + torch.arange(channels, device=device)[None, :, None]) * height
                    + dy[:, None, None] + torch.arange(out_h, device=device)[None, None, :])
            x = source.view(count * channels * height, width).index_select(0, rows.reshape(-1))
            # 2) each image's columns dx .. dx + w - 1, in reverse order where flipped
            ramp = torch.arange(out_w, device=device)
            columns = dx[:, None] + ramp[None, :]
            if flip is not None:
                columns = torch.where(flip[:, None], dx[:, None] + (out_w - 1) - ramp[None, :], columns)
            x = x.view(len(index), channels * out_h, width)
            x = torch.gather(x, 2, columns[:, None, :].expand(len(index), channels * out_h, out_w))
            x = x.view(len(index), channels, out_h, out_w)
        if self.to_float:
            if x.dtype == torch.uint8:
                x = torch.div(x, 255.0)  # float32, bit-identical to .to(float32).div_(255.0)
            else:
                x = x.to(torch.float32)
        if self.mean is not None:
            mean, std = self._statistics(x.dtype, x.device)
            x = x.sub_(mean).div_(std)
        return x


def _as_tuple(values):
    if isinstance(values, torch.Tensor):
        return tuple(values.reshape(-1).tolist())
    if isinstance(values, (int, float)):
        return (float(values),)
    return tuple(values)


def _parse_padding(padding):
    """torchvision's padding argument as ``(left, top, right, bottom)``."""
    if padding is None:
        return (0, 0, 0, 0)
    if isinstance(padding, int):
        return (padding,) * 4
    padding = list(padding)
    if len(padding) == 1:
        return (padding[0],) * 4
    if len(padding) == 2:
        return (padding[0], padding[1], padding[0], padding[1])
    if len(padding) == 4:
        return tuple(padding)
    raise ValueError("padding must be an int or a 1, 2 or 4 element sequence, got %r" % (padding,))


def _unwrap(dataset):
    """``(images dataset, contrastive wrapper or None)``."""
    if isinstance(dataset, ContrastiveSample):
        return dataset.dataset, dataset
    return dataset, None


def check_batched_support(dataset, name=None):
    """Raise ``ValueError`` unless ``dataset`` (or its contrastive wrapper) holds its images in memory and
    its transform can be batched.

    The error names the dataset (``name``, e.g. ``DATASET.TYPE``) and the fix.
    """
    images_set, _ = _unwrap(dataset)
    label = name or type(images_set).__name__
    if not isinstance(images_set, TensorImageDataset) or not isinstance(images_set.images, torch.Tensor):
        raise ValueError(
            "the batched data path needs a dataset that holds its images in one tensor; %s reads its images "
            "from files: use DATASET.PIPELINE per_sample" % label
        )
    if images_set.target_transform is not None:
        raise ValueError("the batched data path does not run target transforms (%s has one); "
                         "use DATASET.PIPELINE per_sample" % label)
    BatchTransform.from_transform(images_set.transform)


class BatchedLoader:
    """Loader-like iterator over an in-memory dataset, one batch per set of tensor ops.

    Args:
        dataset: a :class:`~mdistiller.dataset.common.TensorImageDataset` (CIFAR, SVHN,
            digits) or a :class:`~mdistiller.dataset.contrastive.ContrastiveSample` of one.
        batch_size: images per batch on this rank.
        device: where the images live and the batches are produced.
        train: shuffle and shard like ``DistributedSampler`` and augment (True), or
            visit ``rank::world_size`` in order without augmentation (False).
        seed: the run's seed (``EXPERIMENT.SEED``).
        rank, world_size: this process's share of every epoch.
        drop_last: drop the last partial batch.
        augment: run the random steps (default: ``train``); without them the crop
            is taken at the original image's place and nothing is flipped.
        cpu_threads: on a CPU device, intra-op threads while a batch is cut (the
            previous count is restored before the batch is handed out; None leaves
            it alone). A batch is ~0.2 M elements: one thread is as fast as two on an
            idle machine and much faster on a busy one, where OpenMP's fork/join
            waits for a descheduled thread.

    Batches are tuples of tensors on ``device``, as the per-sample DataLoader collates
    the dataset's items: ``(image, target)``, ``(image, target, index)`` when the
    dataset returns indices, ``(image, target, index, contrastive_index)`` for a
    contrastive set; ``image`` float32 ``B x C x h x w`` (the transform's dtype),
    the rest ``int64``. Call :meth:`set_epoch` before every epoch.
    """

    def __init__(self, dataset, batch_size, device="cpu", train=True, seed=0, rank=0, world_size=1,
                 drop_last=False, augment=None, cpu_threads=1):
        check_batched_support(dataset)
        images_set, contrastive = _unwrap(dataset)
        if int(batch_size) < 1:
            raise ValueError("batch_size must be positive, got %r" % (batch_size,))
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.train = bool(train)
        self.augment = self.train if augment is None else bool(augment)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.cpu_threads = None if cpu_threads is None or self.device.type != "cpu" else int(cpu_threads)
        if not 0 <= self.rank < self.world_size:
            raise ValueError("rank must be in [0, %d), got %d" % (self.world_size, self.rank))
        self.transform = BatchTransform.from_transform(images_set.transform)
        self.return_index = contrastive is not None or bool(getattr(images_set, "return_index", False))
        with torch.no_grad():
            self.source = self.transform.prepare(images_set.images.detach().to(self.device))
        self.targets = torch.as_tensor(images_set.targets, dtype=torch.int64).to(self.device)
        self.length = len(images_set)
        self.contrastive = None if contrastive is None else contrastive.batch_draw(self.device)

    def set_epoch(self, epoch):
        """Select the epoch whose order and augmentations the next pass produces."""
        self.epoch = int(epoch)

    @property
    def num_samples(self):
        """Samples this rank visits per epoch."""
        if self.train:
            return int(math.ceil(self.length / self.world_size))
        return len(range(self.rank, self.length, self.world_size))

    def __len__(self):
        if self.drop_last:
            return self.num_samples // self.batch_size
        return int(math.ceil(self.num_samples / self.batch_size))

    def indices(self):
        """This rank's sample indices for the current epoch (CPU ``int64``)."""
        return shard_indices(self.length, self.epoch, self.seed, self.rank, self.world_size, self.train)

    def generator(self):
        """A fresh generator on ``device`` seeded from ``(seed, epoch, rank)``."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(epoch_seed(self.seed, self.epoch, self.rank))
        return gen

    def __iter__(self):
        with self._threads():
            gen = self.generator()
            index = self.indices().to(self.device)
            count = len(index)
            if self.augment:
                dy, dx, flip = self.transform.draw(self.source, count, gen)
            else:
                dy, dx, flip = self.transform.identity(count, self.device)
        stop = min(len(self) * self.batch_size, count)
        for start in range(0, stop, self.batch_size):
            part = slice(start, start + self.batch_size)
            with self._threads():
                batch_index = index[part]
                image = self.transform.apply(
                    self.source, batch_index, dy[part], dx[part], None if flip is None else flip[part]
                )
                target = self.targets.index_select(0, batch_index)
                batch = (image, target)
                if self.return_index:
                    batch += (batch_index,)
                if self.contrastive is not None:
                    batch += (self.contrastive.sample(batch_index, target, gen),)
            yield batch

    @contextlib.contextmanager
    def _threads(self):
        previous = torch.get_num_threads()
        change = self.cpu_threads is not None and self.cpu_threads != previous
        if change:
            torch.set_num_threads(self.cpu_threads)
        try:
            with torch.no_grad():
                yield
        finally:
            if change:
                torch.set_num_threads(previous)
