"""The base class of every method: one student/teacher forward, one fp32 scope, cross-entropy once.

A method subclasses :class:`Distiller`, declares its config block (``DEFAULTS``)
and what it needs (``data_needs``), and implements only its distillation
terms (``distill_losses``). mdistiller's contract is kept:
``forward_train(image=, target=, epoch=, **batch) -> (student_logits, losses)``
and the training objective is the sum of the dict's values.
"""
from collections import namedtuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses.standardize import standardize_logits
from ..registry import DataNeeds, register_distiller
from ._common import at_least_fp32

# One network's output on the batch: logits (fp32 inside distill_losses) and its feature dict.
ModelOutput = namedtuple("ModelOutput", ["logits", "feats"])


def fp32_losses(tensor):
    """Context in which loss arithmetic runs in float32 even inside an autocast region."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


class Distiller(nn.Module):
    """A student trained against a frozen teacher (which stays in eval mode and gets no gradient).

    Class-level self-description, read by the config, the dataset layer, the
    benchmark tables and the diagnostics:

    * ``DEFAULTS``: the method's yacs block ``cfg[<KEY>]`` as nested dicts (None: no block);
    * ``ALIASES``: ``{"OLD.DOTTED.KEY": "NEW.DOTTED.KEY"}`` renamed when a yaml or the command line is merged;
    * ``LOGIT_STANDARDIZATION``: the method's logit terms follow ``EXPERIMENT.LOGIT_STAND``;
    * :meth:`label`, :meth:`logit_temperature`, :meth:`data_needs` (classmethods of the config);
    * :meth:`variants`, :meth:`pair_settings`: its representative configurations, and the settings a
      student/teacher pair needs (read by ``benchmarks/throughput.py`` and the registry-wide tests);
    * ``SEARCH_SPACE`` / :meth:`search_space`: the knobs ``mdistiller-tune`` searches, ``{dotted key: spec}`` with a
      spec ``{"low", "high"[, "log"]}``, ``{"factor"}`` (log-uniform within that factor of the config's value) or
      ``{"choices"}`` (:mod:`mdistiller.tune.space`);
    * the first line of the class docstring is the method's one-line description.
    """

    DEFAULTS = None
    ALIASES = {}
    SEARCH_SPACE = {}
    # True when the method's logit terms follow EXPERIMENT.LOGIT_STAND (they call distillation_logits).
    LOGIT_STANDARDIZATION = False
    # Key of the cross-entropy term in the losses dict.
    ce_key = "loss_ce"
    # The task of the datasets the class trains on (set by register_distiller; see mdistiller.registry).
    task = "classification"

    def __init__(self, student, teacher, cfg=None):
        """``cfg``: the run's config; with it, a method with ``LOGIT_STANDARDIZATION`` standardizes its logits
        when ``EXPERIMENT.LOGIT_STAND`` is on (:meth:`distillation_logits`)."""
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.ce_weight = 1.0
        self.logit_stand = bool(self.LOGIT_STANDARDIZATION and cfg is not None and cfg.EXPERIMENT.LOGIT_STAND)
        if teacher is not None:
            for p in teacher.parameters():
                p.requires_grad_(False)

    # -- self-description ------------------------------------------------------

    @classmethod
    def label(cls, cfg):
        """The method's name in result tables and in ``published_results.csv``."""
        return cls.registry_name

    @classmethod
    def description(cls):
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else cls.registry_name

    @classmethod
    def logit_temperature(cls, cfg):
        """``(T, "BLOCK.KEY")``: the temperature of the method's logit distributions, or None."""
        return None

    @classmethod
    def data_needs(cls, cfg):
        return DataNeeds()

    @classmethod
    def variants(cls):
        """``[(overrides, note)]``: the method's representative configurations (``overrides``: dotted keys over the
        defaults; one per part or solver worth timing), e.g. ``[({}, "")]``."""
        return [({}, "")]

    @classmethod
    def search_space(cls, cfg):
        """``{dotted config key: spec}``: what a hyper-parameter study of this method samples (``SEARCH_SPACE``)."""
        return dict(cls.SEARCH_SPACE)

    @classmethod
    def pair_settings(cls, cfg, student, teacher):
        """Dotted config keys a student/teacher pair needs on top of ``cfg`` (the widths of the method's heads,
        its level lists), read from the models at the dataset's input size; {} when the defaults fit any pair."""
        return {}

    # -- training ----------------------------------------------------------------

    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for name, module in self.named_children():
            module.train(False if name == "teacher" else mode)
        return self

    def get_learnable_parameters(self):
        """Everything the optimizer updates: the student plus any extra modules."""
        return [p for name, p in self.named_parameters() if not name.startswith("teacher.") and p.requires_grad]

    def get_extra_parameters(self):
        """Number of trainable parameters beyond the student's (projectors, embeddings, ...)."""
        student = {id(p) for p in self.student.parameters()}
        return sum(p.numel() for p in self.get_learnable_parameters() if id(p) not in student)

    def teacher_forward(self, image):
        # Not inference_mode: losses save teacher tensors for backward, which inference tensors cannot be,
        # and cloning the outputs costs more than inference_mode saves.
        with torch.no_grad():
            return self.teacher(image)

    def forward_train(self, image, target, epoch=0, **batch):
        logits_student, feats_student = self.student(image)
        teacher = None
        if self.teacher is not None:
            logits_teacher, feats_teacher = self.teacher_forward(image)
        with fp32_losses(logits_student):
            student = ModelOutput(at_least_fp32(logits_student), feats_student)
            if self.teacher is not None:
                teacher = ModelOutput(at_least_fp32(logits_teacher), feats_teacher)
            losses = {self.ce_key: self.ce_weight * F.cross_entropy(student.logits, target)}
            losses.update(self.distill_losses(student, teacher, target, epoch, **batch))
        return logits_student, losses

    def distill_losses(self, student, teacher, target, epoch, **batch):
        """The method's weighted distillation terms (an ordered dict), computed in fp32.

        ``student`` and ``teacher`` are :data:`ModelOutput` of the one forward of the step.
        """
        raise NotImplementedError

    def distillation_logits(self, logits_student, logits_teacher):
        """The logits the method's softmaxes see: z-scored per sample when ``EXPERIMENT.LOGIT_STAND`` is on."""
        if not self.logit_stand:
            return logits_student, logits_teacher
        return standardize_logits(logits_student), standardize_logits(logits_teacher)

    def logit_loss(self, logits_student, logits_teacher, target, epoch):
        """Logit methods: the distillation term as a function of the logits (the diagnostics' gradients)."""
        return None

    def ground_cost(self):
        """Methods with a class-to-class ground cost: ``(cost, reg, num_iter)`` for the diagnostics, else None."""
        return None

    @property
    def task_loss_keys(self):
        """The keys of the task's own loss terms (the rest are distillation terms): DOT's split of the objective."""
        return (self.ce_key,)

    def forward_test(self, image):
        return self.student(image)[0]

    def forward(self, **kwargs):
        if self.training:
            return self.forward_train(**kwargs)
        return self.forward_test(kwargs["image"])

    def share_models(self, student, teacher):
        """Refer to ``student``/``teacher`` without registering them as submodules (a part of COMBINE)."""
        for name, model in (("student", student), ("teacher", teacher)):
            self._modules.pop(name, None)
            object.__setattr__(self, name, model)


@register_distiller("NONE")
class Vanilla(Distiller):
    """The student alone, trained with cross-entropy."""

    # mdistiller's Vanilla logs its cross-entropy as "ce"; every other method uses "loss_ce".
    ce_key = "ce"

    @classmethod
    def label(cls, cfg):
        """``student``, or ``teacher`` when the config names the same model as teacher and student."""
        return "teacher" if cfg.DISTILLER.STUDENT == cfg.DISTILLER.TEACHER else "student"

    @classmethod
    def data_needs(cls, cfg):
        return DataNeeds(teacher=False)

    def __init__(self, student, teacher=None, cfg=None):
        super().__init__(student, None)

    def distill_losses(self, student, teacher, target, epoch, **batch):
        return {}
