"""Model compression using optimal transport (Lohit & Jones, WACV 2022).

Per selected stage, the batch's student features ``s_1..s_B`` and teacher
features ``t_1..t_B`` (each flattened per sample) are two empirical
distributions with uniform masses ``1/B``; the cost between every
student/teacher pair is the cosine distance ``C_ij = 1 − cos(s_i, t_j)`` (B × B),
and the loss is the transport cost of the plan:

    loss_kd = ALPHA · Σ_stages Σ_ij T*_ij C_ij

with ``T*`` from IPOT (Xie et al. 2019; ``OTKD.BETA`` = 20, ``OTKD.ITER`` = 50
outer iterations, one inner Sinkhorn sweep, ``T⁽¹⁾ = 1 1ᵀ``, as in the paper)
or, with ``OTKD.SOLVER = "remd"``, the relaxed EMD
``max(mean_i min_j C_ij, mean_j min_i C_ij)`` (no plan to compute).

Choices (the README's method table quotes these):

* **IPOT plan detached** (``OTKD.DETACH_PLAN = True``): the plan is computed
  without gradient and the loss is ``Σ T*.detach() ⊙ C``. Lohit & Jones follow
  IPOT (Xie et al.), where ``W = <T*, C>`` is differentiated with ``T*`` held
  constant (envelope theorem / Danskin: ∂W/∂C = T* at the optimum), which is
  also what we recall of their text; we could not re-read the paper to confirm
  it. ``DETACH_PLAN = False`` unrolls the 50 iterations instead.
* **Stages.** ``OTKD.STAGES`` indexes a model's last four ``feats`` entries:
  stage ``k`` is ``feats[k + len(feats) − 4]``. Models with 4 entries (CIFAR
  ResNets, WRNs, ShuffleNets: stem + 3 groups) use ``feats[k]``; models with 5
  entries (stem + 4 stages: VGG, ResNet18/50, ImageNet ResNets, MobileNetV2) use
  ``feats[k + 1]``, i.e. the stem is skipped and stage 0 is the first residual
  group / block. Index 4 selects the penultimate layer (``pooled_feat``).
  Default ``[0, 1, 2, 3]``.
* **Embeddings** (paper's appendix): when a stage's teacher and student shapes
  differ, a learned module maps the *teacher* feature to the student's shape —
  ``adaptive_avg_pool2d`` to the student's spatial size when those differ, then
  a 1x1 convolution + BatchNorm when the channel counts differ; a linear layer
  for the penultimate layer. Identical shapes use the teacher feature as is.
  The embeddings are trained with the student (``get_learnable_parameters``).
  Shapes are found at construction by one forward of both models in eval mode
  (no BatchNorm statistic changes) on an input of the dataset's size.

Losses (fp32): ``{"loss_ce": CE_WEIGHT · CE, "loss_kd": ALPHA · Σ OT}``.
"""
import torch.nn as nn
import torch.nn.functional as F

from ..ot import cosine_cost, ipot, relaxed_emd
from ._base import Distiller, fp32_losses
from ._common import probe_features, probe_input_size
from ..registry import register_distiller

PENULTIMATE = 4  # stage index selecting pooled_feat


def select_stage(features, k):
    """Stage ``k`` of a model's feature dict (see the module docstring for the mapping)."""
    if k == PENULTIMATE:
        return features["pooled_feat"]
    feats = features["feats"]
    index = k + len(feats) - 4
    if not 0 <= k < PENULTIMATE or not 0 <= index < len(feats):
        raise ValueError(
            "OTKD.STAGES entry {} is not a stage of a model with {} feats entries "
            "(valid: 0-3 for the last four feats, 4 for pooled_feat)".format(k, len(feats))
        )
    return feats[index]


class TeacherEmbed(nn.Module):
    """Maps a teacher feature to the student's shape (pool, then 1x1 conv + BN; or linear)."""

    def __init__(self, teacher_shape, student_shape):
        super().__init__()
        if len(teacher_shape) != len(student_shape) or len(teacher_shape) not in (1, 3):
            raise ValueError("OTKD: cannot map teacher feature {} to student {}".format(teacher_shape, student_shape))
        self.out_size = tuple(student_shape[1:])  # spatial size for maps, () for vectors
        self.pool = len(teacher_shape) == 3 and tuple(teacher_shape[1:]) != self.out_size
        if len(teacher_shape) == 1:
            self.proj = nn.Linear(teacher_shape[0], student_shape[0]) if teacher_shape[0] != student_shape[0] else None
        elif teacher_shape[0] != student_shape[0]:
            self.proj = nn.Sequential(
                nn.Conv2d(teacher_shape[0], student_shape[0], kernel_size=1, bias=False),
                nn.BatchNorm2d(student_shape[0]),
            )
        else:
            self.proj = None

    def forward(self, t, student_feat=None):
        if t.dim() == 4:
            size = tuple(student_feat.shape[2:]) if student_feat is not None else self.out_size
            if tuple(t.shape[2:]) != size:
                t = F.adaptive_avg_pool2d(t, size)
        return t if self.proj is None else self.proj(t)


@register_distiller("OTKD")
class OTKD(Distiller):
    """Model Compression Using Optimal Transport (Lohit & Jones, WACV 2022): IPOT or REMD on stage features."""

    @classmethod
    def label(cls, cfg):
        """``IPOT`` or ``REMD`` (the solver), as the paper's tables name the method."""
        return str(cfg.OTKD.SOLVER).upper()

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        c = cfg.OTKD
        self.solver = str(c.SOLVER).lower()
        if self.solver not in ("ipot", "remd"):
            raise ValueError("OTKD.SOLVER must be 'ipot' or 'remd', got {!r}".format(c.SOLVER))
        self.beta = float(c.BETA)
        self.num_iter = int(c.ITER)
        self.alpha = float(c.ALPHA)
        self.detach_plan = bool(c.DETACH_PLAN)
        self.ce_weight = float(c.LOSS.CE_WEIGHT)
        self.stages = [int(k) for k in c.STAGES]
        if not self.stages:
            raise ValueError("OTKD.STAGES is empty")
        size = probe_input_size(cfg)
        f_s, f_t = probe_features(student, size), probe_features(teacher, size)
        self.embeds = nn.ModuleList()
        for k in self.stages:
            s_shape = tuple(select_stage(f_s, k).shape[1:])
            t_shape = tuple(select_stage(f_t, k).shape[1:])
            self.embeds.append(TeacherEmbed(t_shape, s_shape))

    def ot_loss(self, f_s, f_t):
        """Transport cost between the batch's student and teacher features of one stage (already embedded)."""
        cost = cosine_cost(f_s.reshape(f_s.shape[0], -1), f_t.reshape(f_t.shape[0], -1))
        if self.solver == "remd":
            return relaxed_emd(None, None, cost)
        return ipot(None, None, cost, beta=self.beta, num_iter=self.num_iter, detach_plan=self.detach_plan)

    def distill_losses(self, student, teacher, target, epoch, **batch):
        loss_ot = 0.0
        for k, embed in zip(self.stages, self.embeds):
            s = select_stage(student.feats, k).float()
            t = embed(select_stage(teacher.feats, k).float(), s)
            loss_ot = loss_ot + self.ot_loss(s, t)
        return {"loss_kd": self.alpha * loss_ot}
