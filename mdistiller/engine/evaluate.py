"""Evaluation: the one loop that the trainer, ``mdistiller.eval`` and mdistiller's ``validate`` share, and the
trainer's evaluators.

An evaluator measures the model on one evaluation set and returns named metrics (``names``, in order); the
trainer runs one per evaluation set (today the validation split of ``DATASET.TYPE``, named ``test`` in the
records) and selects the best epoch on the first one's ``key``. Which evaluator a dataset gets follows the task
of its spec (:data:`EVALUATORS`): top-1/top-5 for classification, COCO box mAP for detection. Each evaluator class
also says what its key means in result tables (``METRIC``, ``LABEL``) and which other metrics a table shows
(``TABLE_EXTRAS``).
"""
import contextlib
import io
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F

from .._cli import UsageError
from .device import all_reduce_sum, autocast, move_to
from .utils import correct_counts


def evaluation_sums(predict, loader, device, channels_last=False, amp=False):
    """``(top-1 hits, top-5 hits, summed cross-entropy, count)`` of ``predict(images)`` over ``loader``.

    Sums rather than means, so shards of a distributed evaluation add up exactly.
    """
    top1 = top5 = loss_sum = count = 0.0
    with torch.no_grad():
        for image, target in loader:
            image = move_to(image, device, channels_last)
            target = move_to(target, device)
            with autocast(device, amp):
                logits = predict(image)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
            c1, c5 = correct_counts(logits, target, topk=(1, 5))
            top1, top5, count = top1 + c1, top5 + c5, count + target.size(0)
    return top1, top5, loss_sum, count


def as_percentages(top1, top5, loss_sum, count):
    """``(top-1 %, top-5 %, mean loss)`` from ``evaluation_sums``."""
    return 100.0 * top1 / count, 100.0 * top5 / count, loss_sum / count


def validate(val_loader, distiller):
    """mdistiller's ``validate(val_loader, distiller)``: ``(top-1 %, top-5 %, mean loss)`` in eval mode."""
    distiller.eval()
    device = next(distiller.parameters()).device
    return as_percentages(*evaluation_sums(lambda image: distiller(image=image), val_loader, device))


class TopKEvaluator:
    """Top-1 and top-5 accuracy (percent) and mean cross-entropy of a classifier on one evaluation set, summed
    over the processes (each evaluates its shard of ``loader``).

    Metrics ``<name>_acc``, ``<name>_acc_top5``, ``<name>_loss``; ``key`` (``<name>_acc``) selects the best epoch.
    """

    METRIC, LABEL = "acc", "top-1"
    TABLE_EXTRAS = ()
    CONSOLE = (("acc", "acc"), ("acc_top5", "top5"))  # (metric, label) of the console line

    def __init__(self, name, loader, runtime, channels_last=False, amp=False):
        self.name = name
        self.loader = loader
        self.runtime = runtime
        self.channels_last = bool(channels_last)
        self.amp = bool(amp)
        self.key = name + "_acc"
        self.names = [self.key, name + "_acc_top5", name + "_loss"]

    def __call__(self, model, loader=None):
        """The metrics of ``model`` (a distiller in eval mode) on ``loader`` (default: the evaluation set)."""
        sums = evaluation_sums(lambda image: model(image=image), self.loader if loader is None else loader,
                               self.runtime.device, self.channels_last, self.amp)
        top1, top5, loss = as_percentages(*all_reduce_sum(sums, self.runtime))
        return OrderedDict([(self.key, top1), (self.name + "_acc_top5", top5), (self.name + "_loss", loss)])


PYCOCOTOOLS_HINT = "pip install 'mdistiller[detection]' (or: pip install pycocotools)"


def require_pycocotools():
    """pycocotools' ``(COCO, COCOeval)``; without it a one-line error naming the extra to install."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise UsageError("COCO evaluation needs pycocotools, the optional extra 'detection': {}".format(
            PYCOCOTOOLS_HINT)) from None
    return COCO, COCOeval


# COCOeval.stats indices of the box metrics: AP@[.5:.95], AP50, AP75, AP small / medium / large.
COCO_METRICS = (("ap", 0), ("ap50", 1), ("ap75", 2), ("aps", 3), ("apm", 4), ("apl", 5))


def coco_box_metrics(ground_truth, detections, image_ids):
    """``{"ap", "ap50", "ap75", "aps", "apm", "apl"}`` in percent, pycocotools' ``COCOeval(gt, dt, "bbox")`` on the
    images ``image_ids`` (NaN where COCOeval has no ground truth to score, its -1, as Detectron2 reports it).

    ``ground_truth``: a pycocotools ``COCO``; ``detections``: COCO results, ``{"image_id", "category_id",
    "bbox": [x, y, w, h], "score"}`` each (an empty list scores 0 wherever there is ground truth).
    """
    COCO, COCOeval = require_pycocotools()
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and its table
        if detections:
            results = ground_truth.loadRes(list(detections))
        else:
            results = COCO()
            results.dataset = {"images": ground_truth.dataset["images"], "annotations": [],
                               "categories": ground_truth.dataset["categories"]}
            results.createIndex()
        evaluation = COCOeval(ground_truth, results, "bbox")
        evaluation.params.imgIds = sorted(set(int(i) for i in image_ids))
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    return OrderedDict((name, 100.0 * float(stats[i]) if stats[i] >= 0 else math.nan) for name, i in COCO_METRICS)


def coco_results(detections, targets):
    """COCO results of one batch: the detector's ``boxes`` (xyxy, in the resized input) mapped back to the original
    image (``target["scale"]``) as ``[x, y, w, h]``, with ``labels`` (category ids) and ``scores``."""
    results = []
    for found, target in zip(detections, targets):
        boxes = (found["boxes"].float() / target["scale"].to(found["boxes"].device)).cpu()
        boxes[:, 2:] -= boxes[:, :2]
        for box, label, score in zip(boxes.tolist(), found["labels"].tolist(), found["scores"].float().tolist()):
            results.append({"image_id": int(target["image_id"]), "category_id": int(label), "bbox": box,
                            "score": score})
    return results


class COCOEvaluator:
    """COCO box mAP of a detector on one evaluation set (pycocotools' ``COCOeval``, bbox), as Detectron2's
    ``COCOEvaluator`` reports it: AP, AP50, AP75, AP small/medium/large in percent.

    Each process detects on its shard of ``loader``; the detections are gathered and scored on rank 0 against the
    set's json (``loader.dataset.annotation_file``), over the images evaluated; the numbers are shared with every
    process. The model is called as ``model(image=images)`` in eval mode and returns, per image, ``boxes`` (in the
    input image), ``labels`` (category ids) and ``scores``. Metrics ``<name>_ap``, ``<name>_ap50``, ...; ``key``
    (``<name>_ap``) selects the best epoch.
    """

    METRIC, LABEL = "ap", "AP"
    TABLE_EXTRAS = (("ap50", "AP50"), ("ap75", "AP75"))
    CONSOLE = (("ap", "AP"), ("ap50", "AP50"), ("ap75", "AP75"))

    def __init__(self, name, loader, runtime, channels_last=False, amp=False):
        require_pycocotools()
        self.name = name
        self.loader = loader
        self.runtime = runtime
        self.amp = bool(amp)
        self.key = name + "_ap"
        self.names = [name + "_" + metric for metric, _ in COCO_METRICS]
        self.annotation_file = loader.dataset.annotation_file
        self._ground_truth = None

    def ground_truth(self):
        """The set's pycocotools ``COCO`` (read once)."""
        if self._ground_truth is None:
            COCO, _ = require_pycocotools()
            with contextlib.redirect_stdout(io.StringIO()):
                self._ground_truth = COCO(self.annotation_file)
        return self._ground_truth

    def __call__(self, model, loader=None):
        device = self.runtime.device
        detections, image_ids = [], []
        with torch.no_grad():
            for images, targets in (self.loader if loader is None else loader):
                images = move_to(images, device)
                with autocast(device, self.amp):
                    found = model(image=images)
                detections += coco_results(found, targets)
                image_ids += [int(t["image_id"]) for t in targets]
        if self.runtime.distributed:
            shards = [None] * self.runtime.world_size
            torch.distributed.all_gather_object(shards, (detections, image_ids))
            detections = [d for shard, _ in shards for d in shard]
            image_ids = [i for _, shard in shards for i in shard]
        values = [0.0] * len(COCO_METRICS)
        if self.runtime.is_main:
            values = list(coco_box_metrics(self.ground_truth(), detections, image_ids).values())
        values = all_reduce_sum(values, self.runtime)  # rank 0's numbers on every process (NaN stays NaN)
        return OrderedDict(zip(self.names, values))


EVALUATORS = {"classification": TopKEvaluator, "detection": COCOEvaluator}  # DatasetSpec.task -> its evaluator
