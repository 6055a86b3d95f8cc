"""Sum of several registered distillers' losses (registry key ``COMBINE``).

``COMBINE.METHODS`` lists registry keys (e.g. ``["OTKD", "CRD", "KD"]``) and
``COMBINE.WEIGHTS`` one float per method (empty: all 1.0); each part is built
exactly as ``DISTILLER.TYPE = <key>`` would build it, so it reads its own config
block (``cfg.OTKD``, ``cfg.KD``, ...). The reported combinations of the OT
papers (REMD+KD, IPOT+KD, IPOT+CRD+KD, WCoRD+KD) are CE + Σ distillation terms.

Rules:

* **One forward per step.** Every part receives the same student and teacher
  behind a memoizing proxy: during ``forward_train`` the first call of the
  student (or teacher) on a given input tensor runs the model, later calls with
  the *same tensor object* (and grad mode) return the cached ``(logits, feats)``.
  The cache is dropped when the step ends, so BatchNorm statistics, dropout
  masks and the autograd graph are those of a single forward. Outside
  ``forward_train`` the proxy calls the model directly. Other attributes
  (``get_stage_channels``, ``parameters``, ...) are forwarded to the model. Parts
  must not modify the returned features in place (none of ours does).
* **Cross-entropy counted once**: the first part in ``METHODS`` order whose
  losses contain a cross-entropy term (key ``loss_ce`` or ``ce``) keeps it; the
  other parts' CE terms are dropped. The CE weight is therefore that part's
  own ``<KEY>.LOSS.CE_WEIGHT`` (times its COMBINE weight, see below).
* **Keys and weights**: every kept term of part ``i`` appears as
  ``"<KEY>.<term>"`` (e.g. ``"OTKD.loss_kd"``), multiplied by ``WEIGHTS[i]``;
  the objective is the sum of the dict's values, as for any distiller.
* ``uses_contrastive_data(cfg)`` is true when any part's is; the batch's extra
  items (``index``, ``contrastive_index``, ...) and ``epoch`` go to every part.
  ``requires_num_data`` is True; ``num_data`` is passed to the parts that need it.
* Parts are registered as submodules (``parts.<KEY>``), so their projectors,
  embeddings and memory banks are learnable and saved; the student and teacher
  appear once in ``state_dict`` (``student.*``, ``teacher.*``), not once per part.
  A key may appear only once in ``METHODS`` (its config block is shared anyway).
"""
import torch

from ._base import Distiller
from .registry import get_distiller_class, register_distiller

_CE_KEYS = ("loss_ce", "ce")


class SharedForward:
    """Callable stand-in for a model that memoizes its output for one input tensor while ``active``.

    Not an ``nn.Module``: a part stores it as a plain attribute, so the model is
    not registered a second time under the part.
    """

    def __init__(self, model):
        self.__dict__["_model"] = model
        self.__dict__["_active"] = False
        self.__dict__["_cache"] = None  # (input tensor, grad enabled, output)
        self.__dict__["calls"] = 0  # number of real forwards run while active (for tests / diagnostics)

    def __getattr__(self, name):
        if name.startswith("__") or "_model" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["_model"], name)

    def __setattr__(self, name, value):
        setattr(self._model, name, value)

    def __call__(self, x, *args, **kwargs):
        if not self._active or args or kwargs:
            return self._model(x, *args, **kwargs)
        grad = torch.is_grad_enabled()
        cache = self._cache
        if cache is not None and cache[0] is x and cache[1] == grad:
            return cache[2]
        out = self._model(x)
        self.__dict__["_cache"] = (x, grad, out)
        self.__dict__["calls"] += 1
        return out

    def start(self):
        self.__dict__.update(_active=True, _cache=None, calls=0)

    def stop(self):
        self.__dict__.update(_active=False, _cache=None)


@register_distiller("COMBINE")
class Combine(Distiller):
    """Weighted sum of registered distillers sharing one student/teacher forward per step."""

    requires_num_data = True

    def __init__(self, student, teacher, cfg, num_data=None):
        super().__init__(student, teacher)
        methods = [str(m) for m in cfg.COMBINE.METHODS]
        if not methods:
            raise ValueError("COMBINE.METHODS is empty; list registry keys, e.g. ['OTKD', 'KD']")
        if len(set(methods)) != len(methods):
            raise ValueError("COMBINE.METHODS lists a method twice: {}".format(methods))
        weights = [float(w) for w in cfg.COMBINE.WEIGHTS] or [1.0] * len(methods)
        if len(weights) != len(methods):
            raise ValueError(
                "COMBINE.WEIGHTS has {} entries for {} methods ({})".format(len(weights), len(methods), methods)
            )
        classes = [get_distiller_class(m) for m in methods]  # unknown key: the registry's error
        if any(cls is Combine for cls in classes):
            raise ValueError("COMBINE cannot contain COMBINE")
        self.methods, self.weights = methods, weights
        self._student_proxy = SharedForward(student)
        self._teacher_proxy = SharedForward(teacher) if teacher is not None else None
        self.parts = torch.nn.ModuleDict()
        for name, cls in zip(methods, classes):
            args = (self._student_proxy, self._teacher_proxy, cfg)
            if getattr(cls, "requires_num_data", False):
                if num_data is None:
                    raise ValueError("COMBINE part {} needs the training-set size (num_data)".format(name))
                args = args + (num_data,)
            self.parts[name] = cls(*args)

    @classmethod
    def uses_contrastive_data(cls, cfg):
        return any(get_distiller_class(str(m)).uses_contrastive_data(cfg) for m in cfg.COMBINE.METHODS)

    def forward_train(self, image, target, **kwargs):
        proxies = [p for p in (self._student_proxy, self._teacher_proxy) if p is not None]
        for p in proxies:
            p.start()
        try:
            losses, logits, ce_taken = {}, None, False
            for (name, part), weight in zip(self.parts.items(), self.weights):
                part_logits, part_losses = part.forward_train(image=image, target=target, **kwargs)
                if logits is None:
                    logits = part_logits
                has_ce = any(k in _CE_KEYS for k in part_losses)
                for key, value in part_losses.items():
                    if key in _CE_KEYS and ce_taken:
                        continue
                    losses["{}.{}".format(name, key)] = weight * value
                ce_taken = ce_taken or has_ce
        finally:
            for p in proxies:
                p.stop()
        return logits, losses
