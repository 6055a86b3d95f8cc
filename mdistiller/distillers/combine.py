"""COMBINE: a weighted sum of registered methods on one student/teacher forward.

``COMBINE.METHODS`` lists registry keys (e.g. ``["OTKD", "CRD", "KD"]``) and
``COMBINE.WEIGHTS`` one float per method (empty: all 1.0). Each part is built
exactly as ``DISTILLER.TYPE = <key>`` would build it and reads its own config
block. The objective is ``w₀·CE₀ + Σᵢ wᵢ·(terms of part i)``: cross-entropy
once, with the first part's CE weight; every term appears as ``"<KEY>.<term>"``.
The reported combinations of the OT papers (REMD+KD, IPOT+KD, IPOT+CRD+KD,
WCoRD+KD) are of this form. Parts' extra modules (projectors, memory banks)
are submodules ``parts.<KEY>``; the student and teacher appear once in the
state dict.
"""
import torch

from ..registry import DataNeeds, get_distiller_class, register_distiller
from ._base import Distiller
from ._detection import RCNNDistiller
from .registry import construct


@register_distiller("COMBINE")
class Combine(Distiller):
    """Weighted sum of registered methods sharing one student/teacher forward per step."""

    # Each part checks EXPERIMENT.LOGIT_STAND itself when it is built.
    LOGIT_STANDARDIZATION = True

    DEFAULTS = {
        "METHODS": [],  # registry keys, e.g. ["OTKD", "KD"]; each part reads its own block
        "WEIGHTS": [],  # one float per method; empty = all 1.0
    }

    @classmethod
    def part_classes(cls, cfg):
        return [get_distiller_class(str(m), cls.task) for m in cfg.COMBINE.METHODS]

    @classmethod
    def label(cls, cfg):
        parts = [c.label(cfg) for c in cls.part_classes(cfg) if c is not cls]
        return "+".join(parts) or "COMBINE"

    @classmethod
    def logit_temperature(cls, cfg):
        for part in cls.part_classes(cfg):
            found = part.logit_temperature(cfg)
            if found is not None:
                return found
        return None

    @classmethod
    def variants(cls):
        """Lohit & Jones' IPOT+CRD+KD, one representative combination."""
        return [({"COMBINE.METHODS": ["OTKD", "CRD", "KD"]}, "one representative combination")]

    @classmethod
    def pair_settings(cls, cfg, student, teacher):
        settings = {}
        for part in cls.part_classes(cfg):
            if part is not cls:
                settings.update(part.pair_settings(cfg, student, teacher))
        return settings

    @classmethod
    def data_needs(cls, cfg):
        needs = [c.data_needs(cfg) for c in cls.part_classes(cfg)]
        contrastive = {(n.contrastive_k, n.contrastive_mode) for n in needs if n.contrastive_k > 0}
        if len(contrastive) > 1:
            raise ValueError("COMBINE parts ask for different contrastive sampling: {}".format(sorted(contrastive)))
        k, mode = contrastive.pop() if contrastive else (0, "exact")
        return DataNeeds(
            teacher=any(n.teacher for n in needs), contrastive_k=k, contrastive_mode=mode,
            num_data=any(n.num_data for n in needs),
        )

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
        classes = [get_distiller_class(m, self.task) for m in methods]  # unknown key: the registry's error
        if any(c is Combine for c in classes):
            raise ValueError("COMBINE cannot contain COMBINE")
        self.methods, self.weights = methods, weights
        self.parts = torch.nn.ModuleDict()
        for name, part_cls in zip(methods, classes):
            part = construct(part_cls, student, teacher, cfg, num_data)
            part.share_models(student, teacher)
            self.parts[name] = part
        first = self.parts[methods[0]]
        self.ce_key = "{}.{}".format(methods[0], first.ce_key)
        self.ce_weight = weights[0] * first.ce_weight

    def distill_losses(self, student, teacher, target, epoch, **batch):
        losses = {}
        for (name, part), weight in zip(self.parts.items(), self.weights):
            for key, value in part.distill_losses(student, teacher, target, epoch, **batch).items():
                losses["{}.{}".format(name, key)] = weight * value
        return losses

    def ground_cost(self):
        for part in self.parts.values():
            found = part.ground_cost()
            if found is not None:
                return found
        return None


@register_distiller("COMBINE", task="detection")
class DetectionCombine(RCNNDistiller, Combine):
    """Weighted sum of the detection variants of registered methods on one detection step (ReviewKD+DKD: mdistiller's
    ``ReviewDKD``)."""

    def __init__(self, student, teacher, cfg, num_data=None):
        super().__init__(student, teacher, cfg, num_data)
        self.ROI_LOGITS = any(part.ROI_LOGITS for part in self.parts.values())
