"""Training meters that stay on the device: no host synchronisation per step.

Sums are kept in float64 with the same operations as a host-side ``AverageMeter`` fed with
``loss.item()`` and ``100 * hits / batch``, so the epoch averages are bit-identical to it.
"""
from collections import OrderedDict

import torch

from .utils import correct_counts_tensor

NO_BAD_ITERATION = 2**62  # ``first_bad`` while every loss of the epoch was finite
SUMMARY_NAMES = ("loss", "top1")  # kept before the loss terms


@torch.no_grad()
def top1_percent(logits, target):
    """Training top-1 (%) of a classification batch: ``100 · hits / batch`` (as mdistiller's meter)."""
    (hits,) = correct_counts_tensor(logits.detach(), target, topk=(1,))
    return 100.0 * hits.double() / target.size(0)


@torch.no_grad()
def roi_top1_percent(output, target):
    """Training accuracy (%) of a detector's RoI classifier: the share of the sampled RoIs (background ones
    included) whose top-scoring class is their label, Detectron2's ``fast_rcnn/cls_accuracy``. ``output`` is the
    detection step's ``(class_logits, labels)`` of the sampled RoIs; ``target`` (the images' boxes) is not needed."""
    logits, labels = output
    return 100.0 * (logits.detach().argmax(1) == labels).sum().double() / max(labels.numel(), 1)


# DatasetSpec.task -> the training accuracy of a step: f(the distiller's first output, the batch's targets) -> %.
TRAIN_ACCURACY = {"classification": top1_percent, "detection": roi_top1_percent}


class DeviceMeters:
    """Sample-weighted sums of loss, training accuracy % (top-1 of the task: :data:`TRAIN_ACCURACY`) and every
    loss term, plus a non-finite flag (training logs top-1 only, as mdistiller does; top-5 is an evaluation metric).

    ``first_bad``: the first iteration whose total loss was non-finite (``NO_BAD_ITERATION`` if none);
    ``bad_losses``: the loss terms at that iteration.
    """

    def __init__(self, device):
        self.device = device
        self.names = None
        self.sums = None
        self.count = 0
        self.first_bad = torch.full((), NO_BAD_ITERATION, dtype=torch.int64, device=device)
        self.bad_values = None

    @torch.no_grad()
    def update(self, loss, losses, accuracy, batch_size, iteration):
        """Add one step: the objective ``loss``, its terms ``losses``, the batch's training ``accuracy`` (%, a
        0-dim tensor: :data:`TRAIN_ACCURACY`), weighted by ``batch_size`` (samples)."""
        values = [loss.detach().double(), accuracy.double()]
        values += [value.detach().float().mean().double() for value in losses.values()]
        values = torch.stack(values)
        if self.sums is None:
            self.names = list(SUMMARY_NAMES) + list(losses)
            self.sums = torch.zeros_like(values)
            self.bad_values = torch.zeros_like(values)
        self.sums += values * batch_size
        self.count += batch_size
        newly_bad = ~torch.isfinite(values[0]) & (self.first_bad == NO_BAD_ITERATION)
        self.first_bad = torch.where(newly_bad, torch.full_like(self.first_bad, iteration), self.first_bad)
        self.bad_values = torch.where(newly_bad, values, self.bad_values)

    @property
    def bad_losses(self):
        """``{"loss": total, term: value, ...}`` at the first non-finite iteration (host floats)."""
        if self.names is None:
            return {}
        first = len(SUMMARY_NAMES)
        return OrderedDict(zip(["loss"] + self.term_names, [self.bad_values[0]] + list(self.bad_values[first:])))

    @property
    def term_names(self):
        """The names of the loss terms (the keys of ``forward_train``'s dict), in order."""
        return [] if self.names is None else self.names[len(SUMMARY_NAMES):]

    def averages(self, *names):
        """Running averages of ``names`` (one host read)."""
        if self.sums is None:
            return [0.0 for _ in names]
        values = (self.sums / max(self.count, 1)).tolist()
        return [values[self.names.index(name)] for name in names]

    def read(self):
        """``(names, sums as floats, count)``: the one host read at the end of an epoch."""
        if self.sums is None:
            return list(SUMMARY_NAMES), [0.0] * len(SUMMARY_NAMES), 0
        return list(self.names), self.sums.tolist(), self.count
