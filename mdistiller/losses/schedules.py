"""Loss-weight schedules of the methods: functions of the (1-based) epoch, one place for all of them.

* :func:`linear_warmup`: the ramp 0 → 1 over the first epochs of DKD and ReviewKD (mdistiller);
* :func:`cosine_decay_weight`: WKD's weight, constant and then decayed to 0 by a half cosine (WKD release);
* :func:`wkl_ramp`, :func:`wkl_weights`: WKL's stage schedule ``g(e)`` between its Wasserstein and KL sides
  (Chang et al., release github.com/Chang-Heyu/WKL).
"""
import math

__all__ = ["SCHEDULES", "cosine_decay_weight", "linear_warmup", "wkl_ramp", "wkl_weights"]


def linear_warmup(epoch, warmup_epochs):
    """``min(epoch / warmup_epochs, 1)``, or 1 when ``warmup_epochs`` <= 0: mdistiller's warm-up of the DKD
    and ReviewKD losses (``min(kwargs["epoch"] / self.warmup, 1.0)``)."""
    return min(epoch / warmup_epochs, 1.0) if warmup_epochs > 0 else 1.0


def cosine_decay_weight(weight, epoch, decay_epoch, total_epochs):
    """The release's loss-weight schedule (``forward_train`` of its WKD distiller).

    ``weight`` while ``epoch <= decay_epoch``, then
    ``0.5·weight·(1 + cos(π·(epoch − decay_epoch)/(total_epochs − decay_epoch)))``:
    ``weight/2`` half-way, 0 at ``epoch == total_epochs`` (epochs are 1-based,
    as in mdistiller's trainer). Constant when ``total_epochs <= decay_epoch``.
    """
    if epoch <= decay_epoch or total_epochs <= decay_epoch:
        return weight
    progress = (epoch - decay_epoch) / (total_epochs - decay_epoch)
    return 0.5 * weight * (1.0 + math.cos(math.pi * progress))


SCHEDULES = ("cosine", "linear", "complementary")


def wkl_ramp(epoch, total_epochs, schedule="cosine", start_epoch=0, end_epoch=-1):
    """The schedule ``g(e)`` in [0, 1]: 1 up to ``start_epoch``, 0 from ``end_epoch`` on.

    ``t = clip((e − start)/(end − start), 0, 1)``, ``end_epoch < 0`` meaning
    ``total_epochs``; ``g = ½(1 + cos πt)`` (``cosine``, ``complementary``) or
    ``1 − t`` (``linear``); a step at ``start_epoch`` when end ≤ start. With the
    defaults the cosine form is the release's ``g_t = 0.5·(1 + cos(epoch/EPOCHS·π))``.
    """
    if schedule not in SCHEDULES:
        raise ValueError("Unknown WKL.SCHEDULE {!r}; valid: {}".format(schedule, ", ".join(SCHEDULES)))
    end = total_epochs if end_epoch < 0 else end_epoch
    if end <= start_epoch:
        return 1.0 if epoch < start_epoch else 0.0
    t = min(max((epoch - start_epoch) / (end - start_epoch), 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - t
    return 0.5 * (1.0 + math.cos(math.pi * t))


def wkl_weights(epoch, total_epochs, schedule="cosine", start_epoch=0, end_epoch=-1):
    """``(wasserstein_side, kl_side)`` multipliers at ``epoch``: ``(1, 1 − g)``, or ``(g, 1 − g)`` for ``complementary``.

    ``(1, 1 − g)`` is the released objective (``loss_dwkd + (1 − g_t)·KL_WEIGHT·loss_dkd``);
    ``(g, 1 − g)`` is the interpolation the paper describes (Fig. 1).
    """
    g = wkl_ramp(epoch, total_epochs, schedule, start_epoch, end_epoch)
    return (g if schedule == "complementary" else 1.0), 1.0 - g
