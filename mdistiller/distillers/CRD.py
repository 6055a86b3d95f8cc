"""Contrastive Representation Distillation (Tian, Krishnan & Isola, ICLR 2020)."""
import torch

from ..losses.crd import crd_loss
from ..registry import register_distiller
from ._base import Distiller
from ._common import Embed, MemoryBankMethod, at_least_fp32
from ._contrast_memory import ContrastMemory


@register_distiller("CRD")
class CRD(MemoryBankMethod, Distiller):
    """Contrastive Representation Distillation (Tian et al. ICLR 2020).

    ``loss_kd = FEAT_WEIGHT · (NCE(P_s) + NCE(P_t))`` on the embeddings of
    ``pooled_feat`` (:func:`mdistiller.losses.crd.crd_loss`). State dict as
    mdistiller's CRD: ``embed_s.linear.*``, ``embed_t.linear.*``,
    ``contrast.params``, ``contrast.memory_v1``, ``contrast.memory_v2``.
    """

    DEFAULTS = {
        "MODE": "exact",  # contrastive positive sampling: "exact" | "relax"
        "FEAT": {"DIM": 128, "STUDENT_DIM": 256, "TEACHER_DIM": 256},
        "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 0.8},
        "NCE": {"K": 16384, "MOMENTUM": 0.5, "TEMPERATURE": 0.07},
    }
    # NCE temperature around CRD's 0.07 (Tian et al. use 0.02-0.3 in their ablation).
    SEARCH_SPACE = {"CRD.LOSS.FEAT_WEIGHT": {"factor": 10.0},
                    "CRD.NCE.TEMPERATURE": {"low": 0.02, "high": 0.3, "log": True}}

    def __init__(self, student, teacher, cfg, num_data):
        super().__init__(student, teacher)
        self.ce_weight = cfg.CRD.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.CRD.LOSS.FEAT_WEIGHT
        self.num_data = int(num_data)
        if self.num_data <= 0:
            raise ValueError("CRD needs the training-set size, got num_data={}".format(num_data))
        # Construction order as in mdistiller (embed_s, embed_t, then the banks): same seed, same initial state.
        self.embed_s = Embed(cfg.CRD.FEAT.STUDENT_DIM, cfg.CRD.FEAT.DIM)
        self.embed_t = Embed(cfg.CRD.FEAT.TEACHER_DIM, cfg.CRD.FEAT.DIM)
        self.contrast = ContrastMemory(
            cfg.CRD.FEAT.DIM, self.num_data, cfg.CRD.NCE.K, cfg.CRD.NCE.TEMPERATURE, cfg.CRD.NCE.MOMENTUM
        )

    def get_extra_parameters(self):
        """As mdistiller reports it: both embeddings plus the memory banks (buffers)."""
        tensors = list(self.embed_s.parameters()) + list(self.embed_t.parameters()) + list(self.contrast.buffers())
        return sum(t.numel() for t in tensors)

    @staticmethod
    def _check_dim(feat, embed, key):
        if feat.reshape(feat.shape[0], -1).shape[1] != embed.linear.in_features:
            raise ValueError(
                "CRD: pooled_feat has {} features but CRD.FEAT.{} = {}".format(
                    feat.reshape(feat.shape[0], -1).shape[1], key, embed.linear.in_features
                )
            )

    def distill_losses(self, student, teacher, target, epoch, index=None, contrastive_index=None, **batch):
        if index is None or contrastive_index is None:
            raise ValueError("CRD needs the batch's index and contrastive_index (contrastive train set)")
        f_s, f_t = at_least_fp32(student.feats["pooled_feat"]), at_least_fp32(teacher.feats["pooled_feat"])
        self._check_dim(f_s, self.embed_s, "STUDENT_DIM")
        self._check_dim(f_t, self.embed_t, "TEACHER_DIM")
        device = self.contrast.memory_v1.device
        v1, v2 = self.embed_s(f_s), self.embed_t(f_t)
        out_s, out_t = self.contrast(
            v1, v2, index.to(device=device, dtype=torch.long), contrastive_index.to(device=device, dtype=torch.long)
        )
        return {"loss_kd": self.feat_loss_weight * crd_loss(out_s, out_t, self.num_data)}
