"""Wasserstein Contrastive Representation Distillation (Chen et al., CVPR 2021).

Two terms on the penultimate features (``pooled_feat``) of student and teacher,
both computed on the embeddings ``v_s = e_s(f_s)``, ``v_t = e_t(f_t)``:

* **Global transfer (dual form).** The Wasserstein dependency between teacher
  and student representations is estimated through its dual, a critic
  ``g(s, t) = <v_s, v_t> / τ`` maximised over 1-Lipschitz functions; the critic
  is trained with CRD's contrastive objective — the same memory banks, negatives
  from the dataset's contrastive sampling, NCE loss and normalisation constant
  (``ContrastMemory`` and ``nce_loss`` reused from ``CRD.py``):
  ``loss_global = GLOBAL_WEIGHT · (NCE(P_s) + NCE(P_t))``.
* **Local transfer (primal form).** Entropic OT between the batch's student and
  teacher embeddings with uniform masses ``1/B``, solved by log-domain Sinkhorn
  (``mdistiller.ot.sinkhorn_log``, ``SINKHORN.ITER`` iterations, ``ε =
  SINKHORN.REG``, no early stop): ``loss_local = LOCAL_WEIGHT · Σ P ⊙ C``.

Choices (the paper's full text was not at hand; the README quotes these):

* **Lipschitz critic: spectral normalisation** (Miyato et al. 2018,
  ``torch.nn.utils.parametrizations.spectral_norm``) of both embedding heads,
  not a gradient penalty. A WGAN-style penalty needs interpolates between
  samples of one space, but the critic scores (student, teacher) *pairs* of two
  different spaces, mostly against memory-bank rows that have no input to
  differentiate; SN bounds the critic everywhere at the cost of one power
  iteration per step and adds no hyper-parameter. Because CRD's heads
  L2-normalise their *output* — which would make SN a no-op in the forward pass
  (``normalize(W x / σ) = normalize(W x)``) — WCoRD's heads normalise the
  *input* feature and apply the spectrally normalised linear map without output
  normalisation: ``v = W_sn · f / ‖f‖`` (bias-free, ``‖v‖ ≤ 1``), so the critic
  ``<v_s, v_t>/τ`` and its scores against the unit-norm memory rows are
  ``1/τ``-Lipschitz in each (normalised) feature argument. Memory rows are updated as in
  CRD (momentum, then L2 normalisation).
* **Local cost: ``C_ij = 1 − cos(v_s_i, v_t_j)``**, i.e. on the L2-normalised
  embeddings (equal to half their squared Euclidean distance), so the cost lies
  in [0, 2] whatever the embedding norms and one ``ε`` (default 0.05) fits every
  pair of models.
* **Plan as a constant**: ``loss_local = Σ P.detach() ⊙ C`` (the envelope-theorem
  gradient of the entropic objective, no unrolled graph); the value is what
  ``ot.sinkhorn2(a, b, C, ε, numItermax=ITER, stopThr=0)`` returns.
* Both heads and the student receive the gradients of both terms. The train set
  samples ``CRD.NCE.K`` negatives (the dataset reads the CRD block), so
  ``WCORD.NCE.K`` must equal ``CRD.NCE.K`` (checked at construction).
* Default weights: ``GLOBAL_WEIGHT`` 0.8 (CRD's feature weight, so that
  ``LOCAL_WEIGHT = 0`` is CRD with a Lipschitz critic), ``LOCAL_WEIGHT`` 1.0 —
  our choice, not a published value.

Losses (fp32): ``{"loss_ce", "loss_global", "loss_local"}``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ..ot import cosine_cost, sinkhorn_log
from ._base import Distiller, fp32_losses
from .CRD import ContrastMemory, nce_loss
from ..registry import DataNeeds, register_distiller


class LipschitzEmbed(nn.Module):
    """``v = W_sn · f / ‖f‖``: input L2 normalisation, then a spectrally normalised linear map (``‖v‖ ≤ 1``)."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.linear = spectral_norm(nn.Linear(dim_in, dim_out, bias=False))

    def forward(self, x):
        return self.linear(F.normalize(x.reshape(x.shape[0], -1), dim=1))


@register_distiller("WCORD")
class WCORD(Distiller):
    """Wasserstein Contrastive Representation Distillation (Chen et al. CVPR 2021)."""

    @classmethod
    def label(cls, cfg):
        return "WCoRD"

    @classmethod
    def data_needs(cls, cfg):
        return DataNeeds(contrastive_k=int(cfg.WCORD.NCE.K), contrastive_mode=str(cfg.CRD.MODE), num_data=True)

    def __init__(self, student, teacher, cfg, num_data):
        super().__init__(student, teacher)
        c = cfg.WCORD
        self.ce_weight = float(c.LOSS.CE_WEIGHT)
        self.global_weight = float(c.LOSS.GLOBAL_WEIGHT)
        self.local_weight = float(c.LOSS.LOCAL_WEIGHT)
        self.sinkhorn_reg = float(c.SINKHORN.REG)
        self.sinkhorn_iter = int(c.SINKHORN.ITER)
        self.num_data = int(num_data)
        if self.num_data <= 0:
            raise ValueError("WCORD needs the training-set size, got num_data={}".format(num_data))
        if int(c.NCE.K) != int(cfg.CRD.NCE.K):
            raise ValueError(
                "WCORD.NCE.K = {} but the train set samples CRD.NCE.K = {} negatives; set both to the "
                "same value".format(c.NCE.K, cfg.CRD.NCE.K)
            )
        self.embed_s = LipschitzEmbed(c.FEAT.STUDENT_DIM, c.FEAT.DIM)
        self.embed_t = LipschitzEmbed(c.FEAT.TEACHER_DIM, c.FEAT.DIM)
        self.contrast = ContrastMemory(c.FEAT.DIM, self.num_data, c.NCE.K, c.NCE.TEMPERATURE, c.NCE.MOMENTUM)

    def _embed(self, feat, embed, key):
        flat = feat.reshape(feat.shape[0], -1)
        if flat.shape[1] != embed.linear.in_features:
            raise ValueError(
                "WCORD: pooled_feat has {} features but WCORD.FEAT.{} = {}".format(
                    flat.shape[1], key, embed.linear.in_features
                )
            )
        return embed(flat)

    def local_loss(self, v_s, v_t):
        """Σ P ⊙ C, P the Sinkhorn plan (uniform masses, ITER iterations, as a constant)."""
        cost = cosine_cost(v_s, v_t)
        return sinkhorn_log(None, None, cost, self.sinkhorn_reg, num_iter=self.sinkhorn_iter, tol=0, detach_plan=True)

    def distill_losses(self, student, teacher, target, epoch, index=None, contrastive_index=None, **batch):
        if index is None or contrastive_index is None:
            raise ValueError("WCORD needs the batch's index and contrastive_index (contrastive train set)")
        v_s = self._embed(student.feats["pooled_feat"].float(), self.embed_s, "STUDENT_DIM")
        v_t = self._embed(teacher.feats["pooled_feat"].float(), self.embed_t, "TEACHER_DIM")
        device = self.contrast.memory_v1.device
        out_s, out_t = self.contrast(
            v_s, v_t, index.to(device=device, dtype=torch.long), contrastive_index.to(device=device, dtype=torch.long)
        )
        loss_global = self.global_weight * (nce_loss(out_s, self.num_data) + nce_loss(out_t, self.num_data))
        loss_local = self.local_weight * self.local_loss(v_s, v_t)
        return {"loss_global": loss_global, "loss_local": loss_local}
