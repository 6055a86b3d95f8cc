"""Distillation-Oriented Trainer (Zhao et al., "DOT: A Distillation-Oriented Trainer", ICCV 2023).

SGD with two momentum buffers per parameter: one for the gradient of the task
loss (cross-entropy) with momentum ``μ − Δ``, one for the gradient of the
distillation loss with momentum ``μ + Δ`` (Section 3.2, Eq. 5-6). A step takes
both gradients, from two backward passes over the same forward. The update
rules follow mdistiller's ``engine/dot.py`` exactly, including its treatment of
parameters that receive only one of the two gradients:

* task gradient ``g`` (plus weight decay ``wd·θ``): buffer ``b ← m·b + g`` where
  ``m = μ − Δ`` when the parameter also has a distillation gradient, else the
  mean ``((μ − Δ) + (μ + Δ)) / 2 = μ``; ``θ ← θ − lr·b``;
* distillation gradient ``k``: buffer ``c ← (μ + Δ)·c + k`` when the parameter
  also has a task gradient (no weight decay: the task side carries it), else
  ``c ← μ·c + (k + wd·θ)``; ``θ ← θ − lr·c``;
* a buffer's first value is the gradient itself (as ``torch.optim.SGD``), and
  on that first step the distillation side adds no weight decay.

``SOLVER.TRAINER`` names that run it: mdistiller's ``dot`` and ``crd_dot`` (its CRD data variant; here the
data variant follows the distiller, as for ``base`` / ``crd``).
"""
import torch

DOT_TRAINERS = ("dot", "crd_dot")


class DistillationOrientedSGD(torch.optim.Optimizer):
    """``step_kd()`` after the distillation backward, then ``step()`` after the task backward.

    Args:
        params: the learnable parameters (one group).
        lr: learning rate.
        momentum: the base momentum μ (``SOLVER.MOMENTUM``).
        delta: Δ (``SOLVER.DOT.DELTA``): task momentum μ − Δ, distillation momentum μ + Δ.
        weight_decay: L2 penalty added to the gradients as described above.
    """

    def __init__(self, params, lr, momentum, delta, weight_decay=0.0):
        if not (0.0 <= momentum - delta and momentum + delta < 1.0):
            raise ValueError("SOLVER.DOT.DELTA {} puts a momentum outside [0, 1) around {}".format(delta, momentum))
        defaults = dict(lr=lr, momentum=momentum, delta=delta, weight_decay=weight_decay)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("DistillationOrientedSGD takes one parameter group")
        self._kd_grads = None

    def load_state_dict(self, state_dict):
        """Load this optimizer's state, or mdistiller's ``DistillationOrientedTrainer`` state (its DOT ``latest``).

        mdistiller's parameter group stores the two momenta, ``momentum`` = μ − Δ and ``momentum_kd`` = μ + Δ,
        and ``dampening`` (0; any other value is refused: its updates are not this optimizer's); this one
        stores μ and Δ. The per-parameter buffers (``momentum_buffer``, ``momentum_kd_buffer``) have the same
        names and meaning in both, so only the groups are converted.
        """
        groups = state_dict["param_groups"]
        if any("momentum_kd" in group for group in groups):
            converted = []
            for group in groups:
                group = dict(group)
                m_task, m_kd = group.pop("momentum"), group.pop("momentum_kd")
                dampening = group.pop("dampening", 0)
                if dampening:
                    raise ValueError("an mdistiller DOT checkpoint with dampening {} cannot be continued here "
                                     "(DistillationOrientedSGD has no dampening)".format(dampening))
                group["momentum"], group["delta"] = (m_task + m_kd) / 2.0, (m_kd - m_task) / 2.0
                converted.append(group)
            state_dict = dict(state_dict, param_groups=converted)
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step_kd(self):
        """Record the distillation gradients currently in ``.grad`` (call ``zero_grad`` before the task backward)."""
        self._kd_grads = {p: p.grad.clone() for p in self.param_groups[0]["params"] if p.grad is not None}

    @torch.no_grad()
    def step(self, closure=None):
        if self._kd_grads is None:
            raise RuntimeError("DistillationOrientedSGD.step() needs step_kd() first")
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        m_task, m_kd = group["momentum"] - group["delta"], group["momentum"] + group["delta"]
        m_mean = (m_task + m_kd) / 2.0
        kd_grads, self._kd_grads = self._kd_grads, None
        task_params = [p for p in group["params"] if p.grad is not None]
        task_set = set(task_params)
        for p in task_params:
            grad = p.grad.add(p, alpha=wd) if wd != 0 else p.grad
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.clone()
            else:
                buf.mul_(m_task if p in kd_grads else m_mean).add_(grad)
            p.add_(buf, alpha=-lr)
        for p, grad in kd_grads.items():
            state = self.state[p]
            buf = state.get("momentum_kd_buffer")
            if buf is None:
                buf = state["momentum_kd_buffer"] = grad.clone()
            elif p in task_set:
                buf.mul_(m_kd).add_(grad)
            else:
                if wd != 0:
                    grad = grad.add(p, alpha=wd)
                buf.mul_(m_mean).add_(grad)
            p.add_(buf, alpha=-lr)
        return None
