"""Evaluation: the one loop that the trainer, ``mdistiller.eval`` and mdistiller's ``validate`` share, and the
trainer's evaluators.

An evaluator measures the model on one evaluation set and returns named metrics; the trainer runs one
per evaluation set (today the validation split of ``DATASET.TYPE``, named ``test`` in the records) and
selects the best epoch on the first one's ``key``. Which evaluator a dataset gets follows the task of
its spec (:data:`EVALUATORS`).
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F

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

    def __init__(self, name, loader, runtime, channels_last=False, amp=False):
        self.name = name
        self.loader = loader
        self.runtime = runtime
        self.channels_last = bool(channels_last)
        self.amp = bool(amp)
        self.key = name + "_acc"

    def __call__(self, model, loader=None):
        """The metrics of ``model`` (a distiller in eval mode) on ``loader`` (default: the evaluation set)."""
        sums = evaluation_sums(lambda image: model(image=image), self.loader if loader is None else loader,
                               self.runtime.device, self.channels_last, self.amp)
        top1, top5, loss = as_percentages(*all_reduce_sum(sums, self.runtime))
        return OrderedDict([(self.key, top1), (self.name + "_acc_top5", top5), (self.name + "_loss", loss)])


EVALUATORS = {"classification": TopKEvaluator}  # DatasetSpec.task -> its evaluator
