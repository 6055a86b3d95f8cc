"""Wasserstein Contrastive Representation Distillation (Chen et al., CVPR 2021).

Only the paper's abstract is available; this design is the project's
reconstruction (docs/methods.md (WCORD)).
"""
import torch

from ..losses.crd import crd_loss
from ..losses.wcord import wcord_local_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import LipschitzEmbed, MemoryBankMethod, at_least_fp32
from ._contrast_memory import ContrastMemory


@register_distiller("WCORD")
class WCORD(MemoryBankMethod, Distiller):
    """Wasserstein Contrastive Representation Distillation (Chen et al. CVPR 2021).

    On the embeddings ``v = W_sn · f / ‖f‖`` of ``pooled_feat`` (spectrally
    normalised heads, :class:`~mdistiller.distillers._common.LipschitzEmbed`):
    ``loss_global = GLOBAL_WEIGHT · (NCE(P_s) + NCE(P_t))`` with CRD's memory
    banks (:func:`mdistiller.losses.crd.crd_loss`) and
    ``loss_local = LOCAL_WEIGHT · Σ P^ε ⊙ (1 − cos)`` within the batch
    (:func:`mdistiller.losses.wcord.wcord_local_loss`). State dict:
    ``embed_s.*``, ``embed_t.*``, ``contrast.*`` (CRD's layout).
    """

    DEFAULTS = {
        "MODE": "exact",  # contrastive positive sampling: "exact" | "relax"
        "FEAT": {"DIM": 128, "STUDENT_DIM": 256, "TEACHER_DIM": 256},
        "LOSS": {
            "CE_WEIGHT": 1.0,
            "GLOBAL_WEIGHT": 0.8,  # dual form: contrastive NCE with a Lipschitz (spectral-norm) critic
            "LOCAL_WEIGHT": 1.0,  # primal form: Sinkhorn OT between the batch's embeddings
        },
        "NCE": {"K": 16384, "MOMENTUM": 0.5, "TEMPERATURE": 0.07},
        "SINKHORN": {
            "LAMBDA": 0.05,  # entropic regulariser on the 1 - cos cost (values in [0, 2])
            "ITER": 100,
        },
    }
    # The entropic regulariser on the 1 - cos cost (values in [0, 2]) within 5x of the default 0.05.
    SEARCH_SPACE = {"WCORD.LOSS.GLOBAL_WEIGHT": {"factor": 10.0}, "WCORD.LOSS.LOCAL_WEIGHT": {"factor": 10.0},
                    "WCORD.SINKHORN.LAMBDA": {"low": 0.01, "high": 0.25, "log": True}}
    ALIASES = {"WCORD.SINKHORN.REG": "WCORD.SINKHORN.LAMBDA"}

    @classmethod
    def label(cls, cfg):
        return "WCoRD"

    def __init__(self, student, teacher, cfg, num_data):
        super().__init__(student, teacher)
        c = cfg.WCORD
        self.ce_weight = float(c.LOSS.CE_WEIGHT)
        self.global_weight = float(c.LOSS.GLOBAL_WEIGHT)
        self.local_weight = float(c.LOSS.LOCAL_WEIGHT)
        self.sinkhorn_lambda = float(c.SINKHORN.LAMBDA)
        self.sinkhorn_iter = int(c.SINKHORN.ITER)
        self.num_data = int(num_data)
        if self.num_data <= 0:
            raise ValueError("WCORD needs the training-set size, got num_data={}".format(num_data))
        self.embed_s = LipschitzEmbed(c.FEAT.STUDENT_DIM, c.FEAT.DIM)
        self.embed_t = LipschitzEmbed(c.FEAT.TEACHER_DIM, c.FEAT.DIM)
        self.contrast = ContrastMemory(c.FEAT.DIM, self.num_data, c.NCE.K, c.NCE.TEMPERATURE, c.NCE.MOMENTUM)

    @staticmethod
    def _embed(feat, embed, key):
        flat = feat.reshape(feat.shape[0], -1)
        if flat.shape[1] != embed.linear.in_features:
            raise ValueError(
                "WCORD: pooled_feat has {} features but WCORD.FEAT.{} = {}".format(
                    flat.shape[1], key, embed.linear.in_features
                )
            )
        return embed(flat)

    def distill_losses(self, student, teacher, target, epoch, index=None, contrastive_index=None, **batch):
        if index is None or contrastive_index is None:
            raise ValueError("WCORD needs the batch's index and contrastive_index (contrastive train set)")
        v_s = self._embed(at_least_fp32(student.feats["pooled_feat"]), self.embed_s, "STUDENT_DIM")
        v_t = self._embed(at_least_fp32(teacher.feats["pooled_feat"]), self.embed_t, "TEACHER_DIM")
        device = self.contrast.memory_v1.device
        out_s, out_t = self.contrast(
            v_s, v_t, index.to(device=device, dtype=torch.long), contrastive_index.to(device=device, dtype=torch.long)
        )
        loss_global = self.global_weight * crd_loss(out_s, out_t, self.num_data)
        loss_local = self.local_weight * wcord_local_loss(v_s, v_t, self.sinkhorn_lambda, self.sinkhorn_iter)
        return {"loss_global": loss_global, "loss_local": loss_local}
