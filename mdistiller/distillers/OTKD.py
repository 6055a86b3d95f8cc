"""Model compression using optimal transport (Lohit & Jones, WACV 2022).

The paper's four stages (Sec. 4.1): "All the student networks are divided into
4 stages of approximately equal depth … The output of the fourth stage is the
penultimate layer output, immediately before the softmax operation", and "for
all of our main experiments, we compute and add the OT loss between all four
sets". Stage ``k`` of a zoo model (``feats`` as its ``forward`` returns them):

=====================================================  ===========================================  ==============
family (models)                                        stages 1, 2, 3                                stage 4
=====================================================  ===========================================  ==============
CIFAR ResNets (resnet8…110, resnet8x4, resnet32x4)     ``feats[1..3]``: the three residual groups    ``pooled_feat``
WRNs (wrn_16_x, wrn_40_x)                              ``feats[1..3]``: the three residual groups    ``pooled_feat``
ShuffleV1, ShuffleV2                                   ``feats[1..3]``: the three shuffle stages     ``pooled_feat``
VGG (vgg8…19)                                          ``feats[1..3]``: conv blocks 1-3              ``pooled_feat`` (block 4, pooled)
MobileNetV2 (CIFAR; Tiny-ImageNet)                     ``feats[1..3]``: the 1st-3rd returned stages  ``pooled_feat`` (last stage + 1×1 conv, pooled)
ResNet18/50 (CIFAR), ImageNet ResNets                  ``feats[1..3]``: layer1-layer3                ``pooled_feat`` (layer4, pooled)
MobileNetV1 (ImageNet; ``feats`` has no stem entry)    ``feats[0..2]``: units 3, 5, 11               ``pooled_feat`` (unit 13, pooled)
=====================================================  ===========================================  ==============

The stem (``feats[0]``, all models but MobileNetV1) is never one of the four
stages. A model outside the zoo uses ``feats[1..3]`` and ``pooled_feat``.
"""
import math

import torch
import torch.nn as nn

from ..losses.otkd import SOLVERS, otkd_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import (
    PENULTIMATE,
    CommonSpaceEmbed,
    TeacherConvEmbed,
    at_least_fp32,
    parse_stage,
    probe_features,
    probe_input_size,
    select_stage,
)

PAPER_STAGES = (1, 2, 3, 4)
# OTKD.EMBED_SIDE: "teacher" = Appendix C (a trained convolution maps the teacher's map to the student's shape,
# separate trained linear layers map both penultimate features to a common space); "student" = the student's
# feature is mapped to the teacher's shape or width and the teacher's is compared as it is.
EMBED_SIDES = ("teacher", "student")
# Model classes whose ``feats`` has no stem entry: their stages 1-3 are feats[0..2].
_STEMLESS = ("MobileNetV1",)


def paper_stage(model, stage):
    """The feature of paper stage ``stage`` (1-4, Lohit & Jones Sec. 4.1) of ``model``: a ``feats`` index or
    :data:`~mdistiller.distillers._common.PENULTIMATE` (``pooled_feat``), per the table of this module."""
    if stage not in PAPER_STAGES:
        raise ValueError("paper stage must be one of {}, got {!r}".format(PAPER_STAGES, stage))
    if stage == 4:
        return PENULTIMATE
    offset = 1 if type(model).__name__ not in _STEMLESS else 0
    return stage - 1 + offset


def parse_otkd_stage(value):
    """An ``OTKD.STAGES`` entry: an int 1-4 (a paper stage), or ``"pooled"`` / ``"feats<i>"`` (a raw feature)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in PAPER_STAGES:
            raise ValueError(
                "OTKD.STAGES entry {} is not a paper stage: 1-4 (Lohit & Jones Sec. 4.1; 4 = the penultimate "
                "feature); raw features are 'feats<i>' or 'pooled' (the stem is 'feats0')".format(value)
            )
        return value
    return ("raw", parse_stage(value, "OTKD.STAGES"))


class StudentSideEmbed(nn.Module):
    """``OTKD.EMBED_SIDE student``: the student's feature mapped into the teacher's space, the teacher's unchanged.

    Maps: the convolution (+ BatchNorm) of :class:`~mdistiller.distillers._common.TeacherConvEmbed` built from
    the student's shape to the teacher's (state ``map.conv.*``, ``map.bn.*``); vectors: ``Linear(d_s, d_t)``
    (state ``map.*``); no module when shapes or widths agree. The teacher's features are the fixed target, so
    no trained module can make the cost independent of them (Appendix C's teacher-side embeddings can: see
    docs/methods.md, OTKD). ``forward(s, t)`` returns ``(e(s), t)``.
    """

    def __init__(self, student_shape, teacher_shape):
        super().__init__()
        student_shape, teacher_shape = tuple(student_shape), tuple(teacher_shape)
        if len(student_shape) == 3 and len(teacher_shape) == 3:
            # TeacherConvEmbed(a, b) maps a map of shape a to shape b (its second forward argument)
            self.map = TeacherConvEmbed(student_shape, teacher_shape)
            self.is_map = True
        else:
            d_s, d_t = math.prod(student_shape), math.prod(teacher_shape)
            self.map = None if d_s == d_t else nn.Linear(d_s, d_t)
            self.is_map = False

    def forward(self, s, t):
        if self.is_map:
            t, s = self.map(t, s)
        elif self.map is not None:
            s = self.map(s.reshape(s.shape[0], -1))
        return s, t


@register_distiller("OTKD")
class OTKD(Distiller):
    """Model Compression Using Optimal Transport (Lohit & Jones, WACV 2022): IPOT or REMD on the four stages.

    ``loss_kd = ALPHA · Σ_{l ∈ STAGES} L_OT(X^(l), Y^(l))`` — Eq. (1), with
    :func:`mdistiller.losses.otkd.otkd_loss` (cosine cost, Eq. (3); IPOT,
    Algorithm 1, or REMD, Eq. (8)). ``STAGES`` default ``[1, 2, 3, 4]``, the
    paper's four stages (Sec. 4.1; see the module's table); a subset is Table
    3's ablation. Embeddings (Appendix C), built from one eval-mode forward of
    both models at construction: penultimate features of different widths go
    through separate linear layers to a common ``EMBED_DIM`` space
    (:class:`~mdistiller.distillers._common.CommonSpaceEmbed`); intermediate
    maps of different shapes: a convolution maps the teacher's to the student's
    shape (:class:`~mdistiller.distillers._common.TeacherConvEmbed`); identity
    when they agree. State dict: ``embeds.<i>.*``. ``EMBED_SIDE student`` maps the
    student's feature into the teacher's space instead (:class:`StudentSideEmbed`):
    Appendix C's trained teacher-side embeddings admit a minimiser that ignores the
    teacher (every teacher sample mapped to one point), the student side does not.
    """

    DEFAULTS = {
        "SOLVER": "ipot",  # "ipot" (Sec. 3.1) | "remd" (relaxed EMD, Sec. 3.2)
        "BETA": 20.0,  # IPOT proximal step β (Sec. 4.1: 20)
        "ITER": 50,  # IPOT iterations N (Sec. 4.1: 50)
        "ALPHA": 0.9,  # weight α of the OT term, Eq. (1); Table 7 reports 0.9 and 1.0 per pair
        # Paper stages 1-4 (Sec. 4.1; 4 = the penultimate feature); a subset = Table 3's ablation.
        # "feats<i>" / "pooled" select a model's raw feature instead.
        "STAGES": [1, 2, 3, 4],
        "EMBED_DIM": 128,  # common space of penultimate features of different widths (Appendix C)
        # Where the trained embeddings of features of different shapes sit: "teacher" (Appendix C: teacher map ->
        # student shape, both penultimate features -> EMBED_DIM) | "student" (student -> teacher shape / width; the
        # teacher's feature is the fixed target: no minimiser that ignores the teacher). See docs/methods.md (OTKD).
        "EMBED_SIDE": "teacher",
        "DETACH_PLAN": False,  # True: IPOT plan held constant (envelope gradient); False: unrolled autodiff
        "LOSS": {"CE_WEIGHT": 1.0},
    }
    SEARCH_SPACE = {"OTKD.ALPHA": {"factor": 10.0}}

    @classmethod
    def label(cls, cfg):
        """``IPOT`` or ``REMD`` (the solver) on the paper's four stages, else e.g. ``IPOT (stage 1)`` (Table 3)."""
        name = str(cfg.OTKD.SOLVER).upper()
        stages = [str(s) for s in cfg.OTKD.STAGES]
        if sorted(stages) == [str(s) for s in PAPER_STAGES]:
            return name
        return "{} (stage{} {})".format(name, "s" if len(stages) > 1 else "", " ".join(stages))

    @classmethod
    def variants(cls):
        return [({}, "4 stages, {} iterations".format(cls.DEFAULTS["ITER"])), ({"OTKD.SOLVER": "remd"}, "4 stages")]

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        c = cfg.OTKD
        self.solver = str(c.SOLVER).lower()
        if self.solver not in SOLVERS:
            raise ValueError("OTKD.SOLVER must be 'ipot' or 'remd', got {!r}".format(c.SOLVER))
        self.beta = float(c.BETA)
        self.num_iter = int(c.ITER)
        self.alpha = float(c.ALPHA)
        self.detach_plan = bool(c.DETACH_PLAN)
        self.ce_weight = float(c.LOSS.CE_WEIGHT)
        embed_side = str(c.EMBED_SIDE).lower()
        if embed_side not in EMBED_SIDES:
            raise ValueError("OTKD.EMBED_SIDE must be one of {}, got {!r}".format(EMBED_SIDES, c.EMBED_SIDE))
        stages = [parse_otkd_stage(v) for v in c.STAGES]
        if not stages:
            raise ValueError("OTKD.STAGES is empty")
        self.select_s = [s[1] if isinstance(s, tuple) else paper_stage(student, s) for s in stages]
        self.select_t = [s[1] if isinstance(s, tuple) else paper_stage(teacher, s) for s in stages]
        size = probe_input_size(cfg)
        f_s, f_t = probe_features(student, size), probe_features(teacher, size)
        self.embeds = torch.nn.ModuleList()
        for sel_s, sel_t in zip(self.select_s, self.select_t):
            s = select_stage(f_s, sel_s, "OTKD.STAGES (student)")
            t = select_stage(f_t, sel_t, "OTKD.STAGES (teacher)")
            if embed_side == "student":
                self.embeds.append(StudentSideEmbed(s.shape[1:], t.shape[1:]))
            elif s.dim() == 4 and t.dim() == 4:
                self.embeds.append(TeacherConvEmbed(t.shape[1:], s.shape[1:]))
            else:
                self.embeds.append(CommonSpaceEmbed(s[0].numel(), t[0].numel(), int(c.EMBED_DIM)))

    def distill_losses(self, student, teacher, target, epoch, **batch):
        feats_s, feats_t = [], []
        for sel_s, sel_t, embed in zip(self.select_s, self.select_t, self.embeds):
            s = at_least_fp32(select_stage(student.feats, sel_s))
            t = at_least_fp32(select_stage(teacher.feats, sel_t))
            s, t = embed(s, t)
            feats_s.append(s)
            feats_t.append(t)
        loss_ot = otkd_loss(feats_s, feats_t, self.solver, self.beta, self.num_iter, self.detach_plan)
        return {"loss_kd": self.alpha * loss_ot}
