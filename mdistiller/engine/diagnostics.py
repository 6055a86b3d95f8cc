"""Per-epoch teacher-student alignment diagnostics (what the WKL paper's figures plot).

Every run of every logit-based method is measured the same way, on a fixed
probe batch from the validation set (``LOG.DIAGNOSTICS_SAMPLES`` images, 256 by
default, chosen once by the trainer):

* ``kl``  = T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), summed over classes, batch mean
  (with T², the scale of KD's loss and of DKD's terms);
* ``tc``, ``nc`` = DKD's target-class and non-target terms at the same T, each
  with T² (:func:`mdistiller.losses.dkd.dkd_parts`, ground-truth labels);
* ``w``   = WKD-L's non-target Wasserstein term, unweighted, batch mean
  (:func:`mdistiller.losses.wkd.wkd_logit_parts`) at the same T;
* ``grad_top1`` … ``grad_top6`` (only for distillers with a ``logit_loss``
  method) = ∂ logit_loss / ∂z_s at the teacher's top-1 class and at its next
  five classes by teacher probability, *per sample* (the gradient of the
  batch-mean loss times the probe size, i.e. of the summed loss), averaged over
  the probe batch. Multiply by 1/B to get the released WKL trainer's numbers
  (``grad_output`` of the batch-mean loss at the classifier, batch B = 64),
  which also include the CE term; ours is the distillation term alone.

With ``EXPERIMENT.LOGIT_STAND`` the four values are computed on z-scored
logits (:func:`mdistiller.losses.standardize.standardize_logits`), as the
run's own logit terms are.

Choices, fixed once per run from the config:

* T = the method's own logit temperature (``logit_temperature(cfg)`` of its
  class: ``KD.TEMPERATURE``, ``DKD.T``, ``WKD.TEMPERATURE``, ...; for ``COMBINE``
  the first listed part that has one), else 4.0 (``DEFAULT_TEMPERATURE``).
* Ground cost of ``w``: the distiller's own ``ground_cost()`` (cost, λ,
  iterations) when it has one (WKD/WKL with WKD-L on, also as a ``COMBINE``
  part); otherwise ``1 − cos`` between the teacher's classifier rows,
  post-processed like ``WKD.COST_MATRIX fc`` with the WKD class's defaults
  (``WKD.DEFAULTS``: sharpen 1.0, then ``relu + 1e-8``; λ = 0.05, 10 iterations), computed once.

Side effects: none on training. The probe forward runs in eval mode under
``torch.no_grad`` and fp32 (autocast off); the train/eval flag of every
submodule is restored afterwards; gradients are taken with
``torch.autograd.grad`` w.r.t. a detached leaf copy of the student logits, so
no parameter's ``.grad`` is touched. Student and teacher each run one forward
on the probe batch per call (once per epoch).
"""
import torch

from ..losses.class_cost import fc_cost_matrix, prepare_cost_matrix
from ..losses.wkd import wkd_logit_parts
from ..losses.dkd import dkd_parts
from ..losses.kd import kd_loss
from ..losses.standardize import standardize_logits
from ..distillers.WKD import WKD
from ..registry import get_distiller_class

DEFAULT_TEMPERATURE = 4.0
NUM_GRAD_CLASSES = 6  # teacher's top-1 class and the next five


def diagnostics_temperature(cfg):
    """``(T, source)``: the run's logit temperature and where it came from (see the module docstring)."""
    found = get_distiller_class(str(cfg.DISTILLER.TYPE)).logit_temperature(cfg)
    return found if found is not None else (DEFAULT_TEMPERATURE, "default")


class AlignmentDiagnostics:
    """Alignment metrics of a distiller on a fixed probe batch; ``compute(distiller, epoch) -> dict``."""

    def __init__(self, cfg, images, targets):
        samples = int(cfg.LOG.DIAGNOSTICS_SAMPLES)
        if samples > 0:
            images, targets = images[:samples], targets[:samples]
        self.images = images.detach().cpu().float()
        self.targets = targets.detach().cpu().long().view(-1)
        if self.images.shape[0] != self.targets.shape[0]:
            raise ValueError("probe batch: {} images but {} targets".format(self.images.shape[0], self.targets.shape[0]))
        self.temperature, self.temperature_source = diagnostics_temperature(cfg)
        self.logit_stand = bool(cfg.EXPERIMENT.LOGIT_STAND)
        # forward chunk size: the validation batch size (known to fit next to training)
        self.chunk = int(cfg.DATASET.TEST.BATCH_SIZE)
        self._cost = None  # (cost on CPU, reg, num_iter, source)
        self._teacher_logits = None  # a frozen teacher's probe logits, computed once

    # -- helpers --------------------------------------------------------------

    def _logits(self, model, device):
        """fp32 logits of ``model`` on the probe batch, in chunks (eval mode: chunking changes nothing)."""
        size = self.chunk if self.chunk > 0 else self.images.shape[0]
        parts = [model(self.images[i : i + size].to(device))[0].float() for i in range(0, self.images.shape[0], size)]
        return torch.cat(parts)

    def _teacher_probe_logits(self, teacher, device):
        """The teacher's probe logits; once per run when no teacher parameter trains (the usual frozen teacher)."""
        if any(p.requires_grad for p in teacher.parameters()):
            return self._logits(teacher, device)
        if self._teacher_logits is None or self._teacher_logits.device != device:
            self._teacher_logits = self._logits(teacher, device)
        return self._teacher_logits

    def _cost_for(self, distiller):
        own = distiller.ground_cost()
        if own is not None:  # the run's own matrix (a buffer: follows the distiller's device)
            cost, reg, num_iter = own
            self._cost = (None, reg, num_iter, "the distiller's cost_matrix")
            return cost.float(), reg, num_iter
        if self._cost is None or self._cost[0] is None:
            # WKD's defaults for runs without a cost matrix of their own
            sharpen, sinkhorn = WKD.DEFAULTS["COST_MATRIX_SHARPEN"], WKD.DEFAULTS["SINKHORN"]
            cost = prepare_cost_matrix(fc_cost_matrix(distiller.teacher), sharpen).cpu()
            self._cost = (cost, sinkhorn["LAMBDA"], sinkhorn["ITER"], "1-cos(teacher classifier), sharpen {}".format(sharpen))
        return self._cost[0], self._cost[1], self._cost[2]

    # -- the metrics ----------------------------------------------------------

    def compute(self, distiller, epoch):
        """The metrics dict (floats) for ``distiller`` (the unwrapped Distiller) at ``epoch``."""
        teacher = getattr(distiller, "teacher", None)
        if teacher is None:
            return {}
        device = next(distiller.student.parameters()).device
        targets = self.targets.to(device)
        modes = [(m, m.training) for m in distiller.modules()]
        try:
            distiller.student.eval()
            teacher.eval()
            with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
                logits_s = self._logits(distiller.student, device)
                logits_t = self._teacher_probe_logits(teacher, device)
        finally:
            for module, mode in modes:
                module.training = mode

        T = self.temperature
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            z_s, z_t = logits_s, logits_t
            if self.logit_stand:
                z_s, z_t = standardize_logits(logits_s), standardize_logits(logits_t)
            kl = kd_loss(z_s, z_t, T)
            tc, nc = dkd_parts(z_s, z_t, targets, T)
            cost, reg, num_iter = self._cost_for(distiller)
            _, w = wkd_logit_parts(z_s, z_t, targets, cost.to(device), T, reg, num_iter)
        out = {"kl": kl.item(), "tc": tc.item(), "nc": nc.item(), "w": w.item()}

        gradients = self._logit_gradients(distiller.logit_loss, logits_s, logits_t, targets, epoch)
        if gradients is not None:
            out.update(gradients)
        return out

    def _logit_gradients(self, logit_loss, logits_s, logits_t, targets, epoch):
        """Per-sample ∂ logit_loss/∂z_s at the teacher's top-6 classes, averaged over the probe batch (None: no logit loss)."""
        batch = logits_s.shape[0]
        z = logits_s.detach().clone().requires_grad_(True)
        with torch.enable_grad(), torch.autocast(device_type=z.device.type, enabled=False):
            loss = logit_loss(z, logits_t, targets, epoch)
            if loss is None:
                return None
            if torch.is_tensor(loss) and loss.requires_grad:
                (grad,) = torch.autograd.grad(loss, z, allow_unused=True)
            else:
                grad = None
        if grad is None:
            grad = torch.zeros_like(z)
        k = min(NUM_GRAD_CLASSES, logits_t.shape[1])
        order = logits_t.topk(k, dim=1).indices  # softmax is monotone: the teacher's probability ranking
        per_rank = (grad.detach() * batch).gather(1, order).mean(0)
        return {"grad_top{}".format(i + 1): per_rank[i].item() for i in range(k)}
