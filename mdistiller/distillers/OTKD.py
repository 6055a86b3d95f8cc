"""Model compression using optimal transport (Lohit & Jones, WACV 2022)."""
import torch.nn as nn

from ..losses.otkd import SOLVERS, otkd_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import PENULTIMATE, TeacherEmbed, probe_features, probe_input_size, select_stage

PENULTIMATE_STAGE = 4  # the OTKD.STAGES entry selecting pooled_feat


def otkd_stage(features, k):
    """Stage ``k`` of ``OTKD.STAGES``: ``feats[k + len(feats) − 4]`` for k = 0..3, ``pooled_feat`` for k = 4.

    Models with 4 ``feats`` entries (CIFAR ResNets, WRNs, ShuffleNets) use
    ``feats[k]``; models with 5 (stem + 4 stages: VGG, ResNet18/50, MobileNetV2)
    use ``feats[k + 1]`` (the stem is skipped).
    """
    if k == PENULTIMATE_STAGE:
        return select_stage(features, PENULTIMATE)
    n = len(features["feats"])
    index = k + n - 4
    if not 0 <= k < PENULTIMATE_STAGE or not 0 <= index < n:
        raise ValueError(
            "OTKD.STAGES entry {} is not a stage of a model with {} feats entries "
            "(valid: 0-3 for the last four feats, 4 for pooled_feat)".format(k, n)
        )
    return select_stage(features, index, "OTKD.STAGES")


@register_distiller("OTKD")
class OTKD(Distiller):
    """Model Compression Using Optimal Transport (Lohit & Jones, WACV 2022): IPOT or REMD on stage features.

    ``loss_kd = ALPHA · Σ_{k ∈ STAGES} L_OT(s_k, e_k(t_k))``
    (:func:`mdistiller.losses.otkd.otkd_loss`), ``e_k`` a learned
    :class:`~mdistiller.distillers._common.TeacherEmbed` mapping the teacher's
    stage feature to the student's shape (identity when they agree); shapes are
    read by one eval-mode forward of both models at construction. State dict:
    ``embeds.<i>.*``.
    """

    DEFAULTS = {
        "SOLVER": "ipot",  # "ipot" | "remd" (relaxed EMD)
        "BETA": 20.0,  # IPOT proximal step β (paper: 20)
        "ITER": 50,  # IPOT outer iterations N (paper: 50)
        "ALPHA": 0.9,  # weight of the OT loss summed over stages (paper's alternative: 1.0)
        # Stage k = feats[k + len(feats) - 4] (4-entry models: feats[k]; stem + 4 stages: the
        # stem is skipped); 4 = the penultimate layer (pooled_feat).
        "STAGES": [0, 1, 2, 3],
        "DETACH_PLAN": True,  # IPOT plan treated as a constant (envelope-theorem gradient)
        "LOSS": {"CE_WEIGHT": 1.0},
    }

    @classmethod
    def label(cls, cfg):
        """``IPOT`` or ``REMD`` (the solver), as the paper's tables name the method."""
        return str(cfg.OTKD.SOLVER).upper()

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
        self.stages = [int(k) for k in c.STAGES]
        if not self.stages:
            raise ValueError("OTKD.STAGES is empty")
        size = probe_input_size(cfg)
        f_s, f_t = probe_features(student, size), probe_features(teacher, size)
        self.embeds = nn.ModuleList()
        for k in self.stages:
            s_shape = tuple(otkd_stage(f_s, k).shape[1:])
            t_shape = tuple(otkd_stage(f_t, k).shape[1:])
            self.embeds.append(TeacherEmbed(t_shape, s_shape))

    def distill_losses(self, student, teacher, target, epoch, **batch):
        feats_s, feats_t = [], []
        for k, embed in zip(self.stages, self.embeds):
            s = otkd_stage(student.feats, k).float()
            feats_s.append(s)
            feats_t.append(embed(otkd_stage(teacher.feats, k).float(), s))
        loss_ot = otkd_loss(feats_s, feats_t, self.solver, self.beta, self.num_iter, self.detach_plan)
        return {"loss_kd": self.alpha * loss_ot}
