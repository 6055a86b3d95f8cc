"""Per-epoch teacher-student alignment diagnostics (what the WKL paper's figures plot).

Every run of every logit-based method is measured the same way, on a fixed
probe batch from the validation set (``LOG.DIAGNOSTICS_SAMPLES`` images, 256 by
default, chosen once by the trainer):

* ``kl``  = T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), summed over classes, batch mean
  (with T², the scale of KD's loss and of DKD's terms);
* ``tc``, ``nc`` = DKD's target-class and non-target terms at the same T, each
  with T² (:func:`mdistiller.distillers.DKD.dkd_parts`, ground-truth labels);
* ``w``   = WKD-L's non-target Wasserstein term, unweighted, batch mean
  (:func:`mdistiller.distillers.WKD.wkd_logit_parts`) at the same T;
* ``grad_top1`` … ``grad_top6`` (only for distillers with a ``logit_loss``
  method) = ∂ logit_loss / ∂z_s at the teacher's top-1 class and at its next
  five classes by teacher probability, *per sample* (the gradient of the
  batch-mean loss times the probe size, i.e. of the summed loss), averaged over
  the probe batch. Multiply by 1/B to get the released WKL trainer's numbers
  (``grad_output`` of the batch-mean loss at the classifier, batch B = 64),
  which also include the CE term; ours is the distillation term alone.

Choices, fixed once per run from the config:

* T = the method's temperature — ``KD.TEMPERATURE`` (KD), ``DKD.T`` (DKD),
  ``WKD.TEMPERATURE`` (WKD, WKL; for ``COMBINE`` the first listed part that has
  one) — else 4.0 (``DEFAULT_TEMPERATURE``).
* Ground cost of ``w``: the distiller's own ``cost_matrix`` buffer with its
  Sinkhorn λ and iteration count when it has one (WKD/WKL with WKD-L on, also
  as a ``COMBINE`` part); otherwise ``1 − cos`` between the teacher's classifier
  rows, post-processed like ``WKD.COST_MATRIX fc`` with WKD's defaults
  (sharpen 1.0, then ``relu + 1e-8``; λ = 0.05, 10 iterations), computed once.

Side effects: none on training. The probe forward runs in eval mode under
``torch.no_grad`` and fp32 (autocast off); the train/eval flag of every
submodule is restored afterwards; gradients are taken with
``torch.autograd.grad`` w.r.t. a detached leaf copy of the student logits, so
no parameter's ``.grad`` is touched. Student and teacher each run one forward
on the probe batch per call (once per epoch).
"""
import torch
import torch.nn.functional as F

from ..distillers.DKD import dkd_parts
from ..distillers.WKD import fc_cost_matrix, prepare_cost_matrix, wkd_logit_parts

DEFAULT_TEMPERATURE = 4.0
# WKD's defaults for runs without a cost matrix of their own.
DEFAULT_SHARPEN = 1.0
DEFAULT_SINKHORN_LAMBDA = 0.05
DEFAULT_SINKHORN_ITER = 10
NUM_GRAD_CLASSES = 6  # teacher's top-1 class and the next five
# registry key -> (config block, key) of the logit temperature
_TEMPERATURE_KEYS = {
    "KD": ("KD", "TEMPERATURE"),
    "DKD": ("DKD", "T"),
    "WKD": ("WKD", "TEMPERATURE"),
    "WKL": ("WKD", "TEMPERATURE"),
}


def diagnostics_temperature(cfg):
    """``(T, source)``: the run's logit temperature and where it came from (see the module docstring)."""
    kind = str(cfg.DISTILLER.TYPE)
    keys = [kind]
    if kind == "COMBINE" and "COMBINE" in cfg:
        keys = [str(k) for k in cfg.COMBINE.METHODS]
    for key in keys:
        if key in _TEMPERATURE_KEYS:
            block, name = _TEMPERATURE_KEYS[key]
            if block in cfg and name in cfg[block]:
                return float(cfg[block][name]), "{}.{}".format(block, name)
    return DEFAULT_TEMPERATURE, "default"


def kl_at_temperature(logits_student, logits_teacher, temperature):
    """T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), summed over classes, batch mean."""
    log_p_s = F.log_softmax(logits_student / temperature, dim=1)
    log_p_t = F.log_softmax(logits_teacher / temperature, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean() * temperature**2


def _own_cost(distiller):
    """``(cost, reg, num_iter)`` from the first submodule holding a WKD cost-matrix buffer, else None."""
    for module in distiller.modules():
        cost = getattr(module, "cost_matrix", None)
        if torch.is_tensor(cost) and cost.dim() == 2 and hasattr(module, "sinkhorn_lambda"):
            return cost, float(module.sinkhorn_lambda), int(module.sinkhorn_iter)
    return None


class AlignmentDiagnostics:
    """Alignment metrics of a distiller on a fixed probe batch; ``compute(distiller, epoch) -> dict``."""

    def __init__(self, cfg, images, targets):
        samples = int(cfg.LOG.get("DIAGNOSTICS_SAMPLES", 256)) if "LOG" in cfg else 256
        if samples > 0:
            images, targets = images[:samples], targets[:samples]
        self.images = images.detach().cpu().float()
        self.targets = targets.detach().cpu().long().view(-1)
        if self.images.shape[0] != self.targets.shape[0]:
            raise ValueError("probe batch: {} images but {} targets".format(self.images.shape[0], self.targets.shape[0]))
        self.temperature, self.temperature_source = diagnostics_temperature(cfg)
        # forward chunk size: the validation batch size (known to fit next to training)
        self.chunk = int(cfg.DATASET.TEST.BATCH_SIZE) if "DATASET" in cfg else 0
        self._cost = None  # (cost on CPU, reg, num_iter, source)

    def describe(self):
        """One line stating the run's choices (for the log)."""
        cost = self._cost[3] if self._cost else "distiller's cost_matrix if any, else 1-cos(teacher classifier)"
        return "alignment diagnostics: {} probe images, T={:g} ({}), kl/tc/nc with T^2, w cost: {}".format(
            self.images.shape[0], self.temperature, self.temperature_source, cost
        )

    # -- helpers --------------------------------------------------------------

    def _logits(self, model, device):
        """fp32 logits of ``model`` on the probe batch, in chunks (eval mode: chunking changes nothing)."""
        size = self.chunk if self.chunk > 0 else self.images.shape[0]
        parts = [model(self.images[i : i + size].to(device))[0].float() for i in range(0, self.images.shape[0], size)]
        return torch.cat(parts)

    def _cost_for(self, distiller):
        own = _own_cost(distiller)
        if own is not None:  # the run's own matrix (a buffer: follows the distiller's device)
            cost, reg, num_iter = own
            self._cost = (None, reg, num_iter, "the distiller's cost_matrix")
            return cost.float(), reg, num_iter
        if self._cost is None or self._cost[0] is None:
            cost = prepare_cost_matrix(fc_cost_matrix(distiller.teacher), DEFAULT_SHARPEN).cpu()
            self._cost = (cost, DEFAULT_SINKHORN_LAMBDA, DEFAULT_SINKHORN_ITER, "1-cos(teacher classifier), sharpen 1.0")
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
                logits_t = self._logits(teacher, device)
        finally:
            for module, mode in modes:
                module.training = mode

        T = self.temperature
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            kl = kl_at_temperature(logits_s, logits_t, T)
            tc, nc = dkd_parts(logits_s, logits_t, targets, T)
            cost, reg, num_iter = self._cost_for(distiller)
            _, w = wkd_logit_parts(logits_s, logits_t, targets, cost.to(device), T, reg, num_iter)
        out = {"kl": kl.item(), "tc": tc.item(), "nc": nc.item(), "w": w.item()}

        logit_loss = getattr(distiller, "logit_loss", None)
        if callable(logit_loss):
            out.update(self._logit_gradients(logit_loss, logits_s, logits_t, targets, epoch))
        return out

    def _logit_gradients(self, logit_loss, logits_s, logits_t, targets, epoch):
        """Per-sample ∂ logit_loss/∂z_s at the teacher's top-6 classes, averaged over the probe batch."""
        batch = logits_s.shape[0]
        z = logits_s.detach().clone().requires_grad_(True)
        with torch.enable_grad(), torch.autocast(device_type=z.device.type, enabled=False):
            loss = logit_loss(z, logits_t, targets, epoch)
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
