"""Class-to-class ground costs (C, C) of WKD-L and WKL: construction, post-processing and files.

Shared by the WKD/WKL distillers, the alignment diagnostics and ``mdistiller-cost-matrix``:

* from a classifier: ``D_ij = 1 − cos(w_i, w_j)`` of its weight rows (:func:`fc_cost_matrix`,
  :func:`classifier_weight`; the release's ``COST_MATRIX fc``);
* from class features: ``D_ij = 1 − CKA(X_i, X_j)``, linear CKA between per-class feature matrices
  (:func:`collect_class_features`, :func:`linear_cka_matrix`, :func:`finalize`; the release's
  ``tools/generate_class_proto.py`` + ``tools/generate_cost_matrix.py``); for a detector the classes are its
  K classes and the background, the features its box head's on sampled RoIs (:func:`collect_roi_features`,
  this project's extension to detection);
* the release's post-processing (:func:`prepare_cost_matrix`) and ``torch.save`` files (:func:`load_cost_matrix`).

Source: Lv, Yang & Li, "Wasserstein Distance Rivals Kullback-Leibler Divergence for Knowledge
Distillation", NeurIPS 2024, Sec. 3.1 (the ground cost of WKD-L); release github.com/JiamingLv/WKD.
"""
import os
import pickle

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

__all__ = [
    "COST_FLOOR",
    "COST_MATRIX_HINT",
    "classifier_weight",
    "collect_class_features",
    "collect_roi_features",
    "cosine_cost",
    "fc_cost_matrix",
    "finalize",
    "linear_cka_matrix",
    "load_cost_matrix",
    "prepare_cost_matrix",
]

# The release clips the ground cost with relu(D) + this constant.
COST_FLOOR = 1e-8
COST_MATRIX_HINT = (
    "Fetch the released matrices with `mdistiller-download cost-matrices` (they go to wkd_cost_matrix/...), or "
    "compute one with `mdistiller-cost-matrix --teacher NAME --dataset cifar100|imagenet`, or use "
    "`WKD.COST_MATRIX fc` (1 - cos of the teacher's classifier weights, no file needed)."
)
# Above this many bytes for the stacked per-class Gram matrices, CKA is computed pair by pair.
GRAM_BUDGET_BYTES = 1 << 30


def classifier_weight(model):
    """The (C, d) weight of a model's final linear classifier.

    A ``nn.Linear`` named ``fc``, ``linear``, ``classifier`` or ``head`` (or the
    last ``nn.Linear`` of an ``nn.Sequential`` of that name), else the last
    ``nn.Linear`` among the model's modules; ValueError when there is none.
    """
    for name in ("fc", "linear", "classifier", "head"):
        module = getattr(model, name, None)
        if isinstance(module, nn.Sequential):
            linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
            module = linears[-1] if linears else None
        if isinstance(module, nn.Linear):
            return module.weight
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("{} has no nn.Linear classifier; WKD.COST_MATRIX fc needs one".format(type(model).__name__))
    return linears[-1].weight


def cosine_cost(weight):
    """``D_ij = 1 − cos(w_i, w_j)`` between the rows of a (C, d) weight: a (C, C) tensor in float32 (float64 for a
    float64 weight)."""
    with torch.no_grad():
        weight = weight.detach()
        weight = F.normalize(weight.to(torch.promote_types(weight.dtype, torch.float32)), p=2, dim=-1)
        return 1.0 - weight @ weight.t()


def fc_cost_matrix(model):
    """``D_ij = 1 − cos(w_i, w_j)`` between the rows of the model's classifier weight: a (C, C) tensor in float32
    (float64 for a float64 classifier).

    The release's ``COST_MATRIX fc`` (the teacher's classifier rows as category prototypes).
    """
    return cosine_cost(classifier_weight(model))


def load_cost_matrix(path):
    """A (C, C) cost matrix saved with ``torch.save``, as a contiguous float32 CPU tensor without grad.

    ``path`` is used as given: a relative path resolves against the current
    directory (the release's layout is ``wkd_cost_matrix/<dataset>/<teacher>/<name>.pth``).
    A file holding a dict with exactly one tensor is accepted.
    """
    if not path:
        raise FileNotFoundError("WKD.COST_MATRIX_PATH is empty. " + COST_MATRIX_HINT)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            "WKD cost matrix not found: expected {} (WKD.COST_MATRIX_PATH {!r}, relative to the current directory {}). "
            "{}".format(os.path.abspath(path), path, os.getcwd(), COST_MATRIX_HINT)
        )
    try:
        matrix = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            "Refusing to load {}: it is not a plain tensor file (it asks to run code while unpickling), so nothing "
            "in it was run. {}\nDetails: {}".format(path, COST_MATRIX_HINT, str(e).splitlines()[0] if str(e) else e)
        ) from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # torch raises RuntimeError, OSError, EOFError... for a damaged file
        raise ValueError("Cannot read {}: it is not a complete PyTorch file, perhaps truncated ({}: {}). {}".format(
            path, type(e).__name__, (str(e).splitlines() or [""])[0].split(". ")[0], COST_MATRIX_HINT)) from None
    if isinstance(matrix, dict):
        tensors = [v for v in matrix.values() if torch.is_tensor(v)]
        if len(tensors) != 1:
            raise ValueError("{} holds a dict without a single tensor; expected a (C, C) tensor".format(path))
        matrix = tensors[0]
    if not torch.is_tensor(matrix):
        matrix = torch.as_tensor(matrix)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("{} holds a tensor of shape {}, expected a square (C, C) matrix".format(path, tuple(matrix.shape)))
    return matrix.detach().float().contiguous().clone()


def prepare_cost_matrix(dist, sharpen):
    """The release's post-processing: ``D ← 1 − exp(−sharpen·D)`` unless sharpen is 0, then ``relu(D) + 1e-8``.

    Keeps a floating dtype (float64 stays float64); other dtypes become float32.
    """
    if not dist.is_floating_point():
        dist = dist.float()
    if sharpen != 0:
        dist = 1.0 - torch.exp(-sharpen * dist)
    return F.relu(dist) + COST_FLOOR


def _center(feats):
    return feats - feats.mean(dim=1, keepdim=True)


def linear_cka_matrix(feats, gram_budget=GRAM_BUDGET_BYTES, chunk=16):
    """(C, C) linear CKA between the classes' feature matrices ``feats`` (C, N, d), rows paired by index.

    ``CKA(X, Y) = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)`` after centring each column.
    Uses the N×N Grams (``‖YᵀX‖²_F = ⟨XXᵀ, YYᵀ⟩_F``, all pairs in one product)
    when N ≤ d and they fit in ``gram_budget`` bytes, else the d×d cross
    products pair by pair (in chunks of ``chunk`` classes). Accumulates in
    float64.
    """
    feats = _center(feats.double())
    num_classes, n, d = feats.shape
    if n <= d and num_classes * n * n * 8 <= gram_budget:
        grams = torch.bmm(feats, feats.transpose(1, 2)).reshape(num_classes, -1)
        hsic = grams @ grams.t()
        norms = hsic.diagonal().clamp_min(1e-24).sqrt()
        return hsic / (norms[:, None] * norms[None, :])
    covs = torch.bmm(feats.transpose(1, 2), feats)  # (C, d, d)
    norms = covs.flatten(1).norm(dim=1).clamp_min(1e-12)
    cka = torch.empty(num_classes, num_classes, dtype=torch.float64, device=feats.device)
    for i in range(num_classes):
        xi = feats[i]
        for start in range(i, num_classes, chunk):
            stop = min(start + chunk, num_classes)
            cross = torch.matmul(feats[start:stop].transpose(1, 2), xi)  # (k, d, d): X_jᵀ X_i
            values = cross.flatten(1).pow(2).sum(1) / (norms[i] * norms[start:stop])
            cka[i, start:stop] = values
            cka[start:stop, i] = values
    return cka


def finalize(dist):
    """Symmetrise, zero the diagonal, float32 CPU, contiguous."""
    dist = dist.detach().double().cpu()
    dist = 0.5 * (dist + dist.t())
    dist.fill_diagonal_(0.0)
    return dist.float().contiguous()


def collect_class_features(model, dataset, num_classes, feature, device, batch_size=256, workers=0,
                           max_per_class=0):
    """Per-class feature matrices stacked as (C, N, d) and N's image count m: ``(feats, m)``.

    ``model`` runs on ``dataset`` in order (give it the test-time transform). ``feature`` ``"feature"``:
    the last-stage maps ``feats[-1]`` (B, c, h, w), each image flattened into its h·w spatial rows of c
    channels (rows of X_k: m·h·w, columns c); ``"logit"``: the logits (X_k: m × C). Every class keeps its
    first m images in dataset order, m the smallest class count (at most ``max_per_class`` when > 0).
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    per_class = [[] for _ in range(num_classes)]
    counts = [0] * num_classes
    cap = max_per_class if max_per_class > 0 else None
    model.eval()
    with torch.no_grad():
        for batch in loader:
            image, target = batch[0].to(device), batch[1]
            logits, out = model(image)
            values = logits if feature == "logit" else out["feats"][-1]
            values = values.float().cpu()
            for row, label in zip(values, target.tolist()):
                if cap is not None and counts[label] >= cap:
                    continue
                if feature == "logit":
                    per_class[label].append(row.unsqueeze(0))
                else:
                    c = row.shape[0]
                    per_class[label].append(row.reshape(c, -1).t())  # (h·w, c)
                counts[label] += 1
    missing = [k for k, n in enumerate(counts) if n == 0]
    if missing:
        raise ValueError("classes without training images: {}".format(missing[:20]))
    m = min(counts)
    return torch.stack([torch.cat(rows[:m], dim=0) for rows in per_class]), m


def collect_roi_features(detector, dataset, device, feature="feature", batch_size=8, workers=0, max_per_class=0,
                         seed=0):
    """Per-class sets of a detector's RoI features, the K classes then the background: ``(feats, m)``, feats (K + 1, m, d).

    The detector (eval mode) runs on ``dataset`` in order (give it the test-time transform): its RPN's proposals plus
    the ground-truth boxes are matched to the ground truth and sampled as in training (``select_training_samples``:
    IoU ≥ 0.5 → the box's class, below → background; the RoI heads' sample size and foreground fraction, drawn from
    a generator seeded with ``seed``). ``feature`` ``"feature"``: the box head's output on each RoI (d = its FC
    width); ``"logit"``: the box predictor's class logits in the distillation order (d = K + 1). Every class keeps its
    first m RoIs in dataset order, m the smallest class count (at most ``max_per_class`` when > 0, which also ends
    the pass once every class has that many). This project's reading of WKD's class-wise CKA cost for detection
    (WKD released no detection code): the background is a class of its own, its features those of background RoIs.
    """
    from ..models.detection import background_last  # the detection models import torchvision's detection code

    from ..dataset.coco import collate_detection

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_detection)
    num_classes = detector.num_classes + 1
    per_class = [[] for _ in range(num_classes)]
    counts = [0] * num_classes
    cap = max_per_class if max_per_class > 0 else None
    detector.eval()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            for images, targets in loader:
                images = [image.to(device) for image in images]
                targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
                image_list = detector.preprocess(images)
                features = detector.backbone(image_list.tensors)
                proposals, _ = detector.rpn(image_list, features)
                heads = detector.roi_heads
                proposals, _, labels, _ = heads.select_training_samples(proposals, targets)
                values = heads.box_head(heads.box_roi_pool(features, proposals, image_list.image_sizes))
                if feature == "logit":
                    values = heads.box_predictor(values)[0][:, detector.distill_columns]
                labels = background_last(torch.cat(labels), detector.num_classes)
                for row, label in zip(values.float().cpu(), labels.tolist()):
                    if cap is None or counts[label] < cap:
                        per_class[label].append(row)
                        counts[label] += 1
                if cap is not None and min(counts) >= cap:
                    break
    finally:
        torch.random.set_rng_state(state)
    missing = [k for k, n in enumerate(counts) if n == 0]
    if missing:
        raise ValueError("classes without RoIs (background is the last): {}".format(missing[:20]))
    m = min(counts)
    return torch.stack([torch.stack(rows[:m]) for rows in per_class]), m
