"""Contrastive Representation Distillation (Tian, Krishnan & Isola, ICLR 2020).

Same computation as mdistiller's ``CRD`` with its defaults, and the same
``state_dict`` layout (``embed_s.linear.*``, ``embed_t.linear.*``,
``contrast.params``, ``contrast.memory_v1``, ``contrast.memory_v2``), so
checkpoints move between the two.

Per step, with student / teacher embeddings ``v1`` / ``v2`` (linear + L2
normalization of ``pooled_feat``), the batch's dataset indices ``y`` and the
contrastive indices ``idx`` (``B × (K+1)``, column 0 the positive, i.e. ``y``):

* scores against the *other* model's memory bank, read before this step's update:
  ``P_s[i, j] = exp(<memory_v2[idx[i, j]], v1[i]> / T) / Z_v1`` (student loss) and
  ``P_t[i, j] = exp(<memory_v1[idx[i, j]], v2[i]> / T) / Z_v2`` (teacher loss);
* ``Z`` is estimated once, on the first step, as ``mean(exp(...)) · N`` (N = training
  set size) and kept constant afterwards (no gradient flows through it);
* NCE loss with noise probability ``Pn = 1/N`` and ``m = K`` negatives, for each of
  ``P = P_s, P_t``::

      -1/B Σ_i [ log(P[i,0] / (P[i,0] + m·Pn + ε)) + Σ_{j≥1} log(m·Pn / (P[i,j] + m·Pn + ε)) ]

* then the memory rows ``y`` are moved towards the new embeddings:
  ``memory_v1[y] ← normalize(μ · memory_v1[y] + (1 − μ) · v1)`` (same for v2).

The loss is ``FEAT_WEIGHT · (NCE(P_s) + NCE(P_t))``; both embeddings are trained.

Several processes (DistributedDataParallel): when ``torch.distributed`` is
initialized with more than one process, the memory update all-gathers the
indices and embeddings of every rank (in rank order) and every rank applies
the same update for the whole global batch, so the memory banks stay
identical on all ranks (DDP's default per-forward buffer sync from rank 0
is then a no-op in value; ``forward_sync_buffers=False``, formerly
``broadcast_buffers=False``, saves that traffic). The first-step ``Z`` is likewise estimated from the
global batch (an all-reduce), so a run on R processes with per-rank batch B
computes the same losses, gradients and memory as one process with batch R·B
(up to float rounding; BatchNorm statistics aside). Should an index appear
several times in one (global) batch, e.g. a DistributedSampler padding the
last batch, the last occurrence in rank order is the one written. Every rank
must call ``forward_train`` in lockstep (DDP already requires this).
(mdistiller itself uses nn.DataParallel, where only the first GPU's shard of
each batch updates the bank; one process with the full batch is the reference
we reproduce.)
"""
import math

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ._base import Distiller, fp32_losses
from ..registry import DataNeeds, register_distiller

_EPS = 1e-7
# Slots of ContrastMemory.params (mdistiller's layout): K, T, Z_v1, Z_v2, momentum.
_K, _T, _Z_V1, _Z_V2, _MOMENTUM = range(5)
_Z_UNSET = -1.0  # sentinel: normalization constant not estimated yet


def _l2_normalize(x):
    return x.div(x.pow(2).sum(1, keepdim=True).pow(0.5))


def _distributed_world():
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


@torch.no_grad()
def _all_gather_cat(*tensors):
    """Concatenate, in rank order, each tensor of every rank (first dims may differ per rank)."""
    world = _distributed_world()
    if world == 1:
        return tensors
    device = tensors[0].device
    size = torch.tensor([tensors[0].shape[0]], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    gathered = []
    for t in tensors:
        padded = t.new_zeros((longest,) + tuple(t.shape[1:]))
        padded[: t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        gathered.append(torch.cat([p[:s] for p, s in zip(parts, sizes)]))
    return tuple(gathered)


def _last_occurrence(index):
    """Positions keeping only the last occurrence of each value of ``index`` (None if all unique)."""
    unique, inverse = torch.unique(index, return_inverse=True)
    if unique.numel() == index.numel():
        return None
    positions = torch.arange(index.numel(), device=index.device)
    return torch.full_like(unique, -1).scatter_reduce_(0, inverse, positions, reduce="amax")


def nce_loss(scores, num_data):
    """CRD's NCE loss of ``scores`` (B × (K+1), column 0 the positive), summed over the K+1 terms, batch mean."""
    batch, m = scores.shape[0], scores.shape[1] - 1
    m_pn = m * (1.0 / float(num_data))  # m · Pn, Pn = 1/N: the noise distribution is uniform
    p_pos, p_neg = scores[:, 0], scores[:, 1:]
    log_d1 = torch.div(p_pos, p_pos + (m_pn + _EPS)).log()
    log_d0 = torch.div(torch.full_like(p_neg, m_pn), p_neg + (m_pn + _EPS)).log()
    return -(log_d1.sum() + log_d0.sum()) / batch


class Embed(nn.Module):
    """Linear projection then L2 normalization (flattens its input)."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return _l2_normalize(self.linear(x.reshape(x.shape[0], -1)))


class ContrastMemory(nn.Module):
    """The two memory banks (one embedding per training sample and model) and the NCE scores.

    Buffers (all in ``state_dict``): ``memory_v1`` (student bank), ``memory_v2``
    (teacher bank), each ``N × dim``, initialized uniformly in [-stdv, stdv],
    stdv = 1/sqrt(dim/3); ``params`` = [K, T, Z_v1, Z_v2, momentum] where Z = -1
    means "not estimated yet".
    """

    def __init__(self, dim, num_data, k, temperature=0.07, momentum=0.5):
        super().__init__()
        self.num_data = int(num_data)
        self.register_buffer("params", torch.tensor([k, temperature, _Z_UNSET, _Z_UNSET, momentum]))
        stdv = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory_v1", torch.rand(self.num_data, dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("memory_v2", torch.rand(self.num_data, dim).mul_(2 * stdv).add_(-stdv))

    def forward(self, v1, v2, index, contrast_index):
        """Scores ``(P_s, P_t)``, each B × (K+1); then updates the rows ``index`` of both banks."""
        k, temperature, z_v1, z_v2, momentum = self.params.tolist()
        k = int(k)
        batch, dim = v1.shape
        if contrast_index.dim() != 2 or contrast_index.shape != (batch, k + 1):
            raise ValueError(
                "CRD expects contrastive_index of shape (batch, K+1) = ({}, {}), got {} "
                "(the train set must sample K=CRD.NCE.K negatives)".format(batch, k + 1, tuple(contrast_index.shape))
            )
        flat = contrast_index.reshape(-1)
        # Memory rows are buffers: no gradient flows into the banks.
        weight_v1 = self.memory_v1.index_select(0, flat).view(batch, k + 1, dim)
        weight_v2 = self.memory_v2.index_select(0, flat).view(batch, k + 1, dim)
        out_v2 = torch.exp(torch.div(torch.bmm(weight_v1, v2.unsqueeze(2)), temperature)).squeeze(2)
        out_v1 = torch.exp(torch.div(torch.bmm(weight_v2, v1.unsqueeze(2)), temperature)).squeeze(2)
        if z_v1 < 0:
            z_v1 = self._estimate_z(_Z_V1, out_v1)
        if z_v2 < 0:
            z_v2 = self._estimate_z(_Z_V2, out_v2)
        out_v1 = torch.div(out_v1, z_v1)
        out_v2 = torch.div(out_v2, z_v2)
        self.update(v1, v2, index, momentum)
        return out_v1, out_v2

    @torch.no_grad()
    def _estimate_z(self, slot, scores):
        """Z = mean(exp scores) · N over the (global) batch, stored in ``params[slot]``; returns it."""
        scores = scores.detach()
        if _distributed_world() > 1:
            total = torch.stack([scores.sum(dtype=torch.float64), scores.new_tensor(scores.numel(), dtype=torch.float64)])
            dist.all_reduce(total)
            mean = (total[0] / total[1]).to(scores.dtype)
        else:
            mean = scores.mean()
        self.params[slot] = mean * self.num_data
        return self.params[slot].item()

    @torch.no_grad()
    def update(self, v1, v2, index, momentum):
        """memory[index] ← normalize(momentum · memory[index] + (1 − momentum) · v), for both banks."""
        index, v1, v2 = _all_gather_cat(index.reshape(-1), v1.detach(), v2.detach())
        keep = _last_occurrence(index)
        if keep is not None:
            index, v1, v2 = index[keep], v1[keep], v2[keep]
        for memory, v in ((self.memory_v1, v1), (self.memory_v2, v2)):
            rows = memory.index_select(0, index).mul_(momentum)
            rows.add_(torch.mul(v.to(memory.dtype), 1 - momentum))
            memory.index_copy_(0, index, _l2_normalize(rows))


@register_distiller("CRD")
class CRD(Distiller):
    """Contrastive Representation Distillation (Tian et al. ICLR 2020)."""

    @classmethod
    def data_needs(cls, cfg):
        return DataNeeds(contrastive_k=int(cfg.CRD.NCE.K), contrastive_mode=str(cfg.CRD.MODE), num_data=True)

    def __init__(self, student, teacher, cfg, num_data):
        super().__init__(student, teacher)
        self.ce_weight = cfg.CRD.LOSS.CE_WEIGHT
        self.feat_loss_weight = cfg.CRD.LOSS.FEAT_WEIGHT
        self.num_data = int(num_data)
        if self.num_data <= 0:
            raise ValueError("CRD needs the training-set size, got num_data={}".format(num_data))
        # Construction order as in mdistiller (embed_s, embed_t, then the two banks):
        # the same seed gives the same initial weights and memory.
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

    def crd_loss(self, f_s, f_t, index, contrast_index):
        """NCE(student) + NCE(teacher) on pooled features; updates the memory banks."""
        self._check_dim(f_s, self.embed_s, "STUDENT_DIM")
        self._check_dim(f_t, self.embed_t, "TEACHER_DIM")
        device = self.contrast.memory_v1.device
        v1 = self.embed_s(f_s)
        v2 = self.embed_t(f_t)
        out_s, out_t = self.contrast(
            v1, v2, index.to(device=device, dtype=torch.long), contrast_index.to(device=device, dtype=torch.long)
        )
        return nce_loss(out_s, self.num_data) + nce_loss(out_t, self.num_data)

    def distill_losses(self, student, teacher, target, epoch, index=None, contrastive_index=None, **batch):
        if index is None or contrastive_index is None:
            raise ValueError("CRD needs the batch's index and contrastive_index (contrastive train set)")
        loss_crd = self.feat_loss_weight * self.crd_loss(
            student.feats["pooled_feat"].float(), teacher.feats["pooled_feat"].float(), index, contrastive_index
        )
        return {"loss_kd": loss_crd}
