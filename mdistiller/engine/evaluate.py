"""Validation: the one loop that the trainer, ``mdistiller.eval`` and mdistiller's ``validate`` share."""
import torch
import torch.nn.functional as F

from .device import autocast, move_to
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
