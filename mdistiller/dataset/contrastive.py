"""Contrastive (CRD) sampling as one wrapper around any labeled dataset.

``ContrastiveSample(dataset, k, mode)`` turns items ``(img, target[, index])``
into ``(img, target, index, contrastive_index)`` where ``contrastive_index`` is
an int64 array of length ``k + 1``: ``[positive, k negatives]``, with the same
semantics as CRD's / mdistiller's ``CIFAR100InstanceSample``:

* ``mode="exact"``: the positive is the sample's own index;
* ``mode="relax"``: the positive is a uniformly drawn index of the same class
  (possibly the sample itself);
* negatives are drawn uniformly from the samples of all *other* classes,
  without replacement unless ``k`` exceeds how many there are.

Differences from the original (same distribution, different mechanics):

* no per-class list of negatives is materialised (that costs
  ``num_classes x N`` integers, ~5 GB on ImageNet): indices are sorted by class
  once and a class's negatives are "everything outside its contiguous block";
* randomness comes from torch's RNG (one 62-bit seed drawn per item feeds a
  numpy ``Generator``), so a run is reproducible under ``torch.manual_seed``
  and DataLoader workers get distinct streams automatically.
"""
import numpy as np
import torch
from torch.utils.data import Dataset

MODES = ("exact", "relax")
_KEY_RANGE = 2 ** 62  # random integer keys / draws of BatchDraw are in [0, 2**62)


class ContrastiveSample(Dataset):
    """Wrap ``dataset`` (which must expose ``.targets``) for contrastive sampling."""

    def __init__(self, dataset, k=4096, mode="exact", targets=None):
        if mode not in MODES:
            raise ValueError("contrastive mode must be one of %s, got %r" % (MODES, mode))
        k = int(k)
        if k < 0:
            raise ValueError("k (number of negatives) must be >= 0, got %d" % k)
        if targets is None:
            targets = getattr(dataset, "targets", None)
            if targets is None:
                raise ValueError("the wrapped dataset has no .targets; pass targets=")
        labels = np.asarray(targets, dtype=np.int64).reshape(-1)
        if len(labels) != len(dataset):
            raise ValueError("%d targets for a dataset of %d items" % (len(labels), len(dataset)))
        if len(labels) and labels.min() < 0:
            raise ValueError("targets must be non-negative class indices")
        self.dataset = dataset
        self.k = k
        self.mode = mode
        self._labels = labels
        n = len(labels)
        # indices grouped by class; class c occupies order[start[c]:start[c]+count[c]]
        self._order = np.argsort(labels, kind="stable")
        size = int(labels.max()) + 1 if n else 0
        self._count = np.bincount(labels, minlength=size).astype(np.int64)
        self._start = np.concatenate([[0], np.cumsum(self._count)[:-1]]).astype(np.int64)
        if k > 0 and n and (n - self._count.max()) == 0:
            raise ValueError("contrastive sampling needs at least two classes to draw negatives")

    @property
    def targets(self):
        return getattr(self.dataset, "targets", self._labels.tolist())

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):
        # expose the wrapped dataset's attributes (classes, transform, data, ...)
        if name.startswith("__") or name in ("dataset", "_labels"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def positives(self, target):
        """Indices of the samples of class ``target``."""
        start, count = self._start[target], self._count[target]
        return self._order[start:start + count]

    def negatives(self, target):
        """Indices of the samples of every other class."""
        start, count = self._start[target], self._count[target]
        return np.concatenate([self._order[:start], self._order[start + count:]])

    def sample(self, index, rng=None):
        """The ``k + 1`` contrastive indices for item ``index``."""
        if rng is None:
            seed = int(torch.randint(0, 2 ** 62, (1,)).item())
            rng = np.random.default_rng(seed)
        target = int(self._labels[index])
        start, count = int(self._start[target]), int(self._count[target])
        if self.mode == "exact":
            pos = int(index)
        else:
            pos = int(self._order[start + rng.integers(count)])
        pool = len(self._labels) - count
        if self.k > pool:
            pick = rng.integers(0, pool, size=self.k)
        else:
            pick = rng.choice(pool, size=self.k, replace=False)
        pick = np.asarray(pick, dtype=np.int64)
        pick[pick >= start] += count  # skip the anchor's class block
        out = np.empty(self.k + 1, dtype=np.int64)
        out[0] = pos
        out[1:] = self._order[pick]
        return out

    def __getitem__(self, index):
        item = self.dataset[index]
        img, target = item[0], item[1]
        return img, target, index, self.sample(index)

    def batch_draw(self, device):
        """The same sampling for whole batches of indices at once, on ``device`` (:class:`BatchDraw`)."""
        return BatchDraw(self, device)


class BatchDraw:
    """CRD's (positive, k negatives) for a whole batch, as :class:`ContrastiveSample` defines them, drawn on
    ``device`` from a given generator (the batched data path: ``ContrastiveSample.batch_draw(device)``)."""

    def __init__(self, wrapper, device):
        self.k = int(wrapper.k)
        self.mode = wrapper.mode
        labels = np.asarray(wrapper._labels, dtype=np.int64)
        count = np.asarray(wrapper._count, dtype=np.int64)
        self.length = len(labels)
        self.labels = torch.from_numpy(labels).to(device)
        self.order = torch.from_numpy(np.asarray(wrapper._order, dtype=np.int64)).to(device)
        self.start = torch.from_numpy(np.asarray(wrapper._start, dtype=np.int64)).to(device)
        self.count = torch.from_numpy(count).to(device)
        pools = self.length - count[count > 0]  # negatives available to an anchor of each class
        # decided once on the host: which of the two draws a batch can need
        self.any_exact_pool = bool(len(pools)) and bool((pools >= self.k).any())
        self.any_replacement = bool(len(pools)) and bool((pools < self.k).any())

    def sample(self, index, target, gen):
        device = index.device
        rows = len(index)
        count = self.count.index_select(0, target)
        start = self.start.index_select(0, target)
        if self.mode == "exact":
            positive = index
        else:
            draw = torch.randint(0, _KEY_RANGE, (rows,), generator=gen, device=device)
            positive = self.order.index_select(0, start + draw % count)
        if self.k == 0:
            return positive[:, None].clone()
        negatives = None
        if self.any_exact_pool:
            # uniform k-subset of the other classes' samples: the k smallest of iid keys
            keys = torch.randint(0, _KEY_RANGE, (rows, self.length), generator=gen, device=device)
            keys.masked_fill_(self.labels[None, :] == target[:, None], _KEY_RANGE)
            negatives = keys.topk(self.k, dim=1, largest=False, sorted=False).indices
        if self.any_replacement:
            # k exceeds the pool: k uniform draws with replacement, skipping the anchor's class block
            pool = (self.length - count)[:, None]
            pick = torch.randint(0, _KEY_RANGE, (rows, self.k), generator=gen, device=device) % pool
            pick += (pick >= start[:, None]) * count[:, None]
            drawn = self.order[pick]
            negatives = drawn if negatives is None else torch.where(pool < self.k, drawn, negatives)
        return torch.cat([positive[:, None], negatives], dim=1)
