"""CRD's contrastive memory bank (also WCoRD's): two banks of embeddings, one row per training sample,
updated with momentum after every step and all-gathered under torch.distributed."""
import math

import torch
import torch.distributed as dist
import torch.nn as nn

from ..losses.crd import contrast_scores, momentum_update


# Slots of ContrastMemory.params (mdistiller's layout): K, T, Z_v1, Z_v2, momentum.
_K, _T, _Z_V1, _Z_V2, _MOMENTUM = range(5)
_Z_UNSET = -1.0  # sentinel: normalisation constant not estimated yet


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


class ContrastMemory(nn.Module):
    """CRD's two memory banks and normalised contrastive scores (mdistiller's ``ContrastMemory`` layout).

    Buffers: ``memory_v1`` (student bank) and ``memory_v2`` (teacher bank), each
    (N, dim), initialised uniformly in [-stdv, stdv], stdv = 1/sqrt(dim/3);
    ``params`` = [K, T, Z_v1, Z_v2, momentum], Z = -1 until estimated.

    Per call: scores against the other network's bank read before this step's
    update (:func:`mdistiller.losses.crd.contrast_scores`), divided by
    ``Z = mean(scores) · N`` estimated on the first call and then kept; then the
    rows ``index`` of both banks are moved (:func:`mdistiller.losses.crd.momentum_update`).

    Under ``torch.distributed`` with several processes, the update all-gathers
    every rank's indices and embeddings (rank order) and every rank applies the
    same update, so the banks stay identical without buffer broadcasts; Z is
    estimated from the global batch (all-reduce). A run on R processes with
    batch B per rank then matches one process with batch R·B (up to rounding;
    BatchNorm aside). An index repeated in the (global) batch keeps its last
    occurrence. Every rank must call it in lockstep.

    Args:
        dim: embedding dimension.
        num_data: N, the training-set size.
        k: K, negatives per sample.
        temperature: τ.
        momentum: μ of the bank update.
    """

    def __init__(self, dim, num_data, k, temperature=0.07, momentum=0.5):
        super().__init__()
        self.num_data = int(num_data)
        self.register_buffer("params", torch.tensor([k, temperature, _Z_UNSET, _Z_UNSET, momentum]))
        stdv = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory_v1", torch.rand(self.num_data, dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("memory_v2", torch.rand(self.num_data, dim).mul_(2 * stdv).add_(-stdv))

    def forward(self, v1, v2, index, contrast_index):
        """Normalised scores ``(P_s, P_t)``, each (B, K+1); then updates the rows ``index`` of both banks.

        Args:
            v1, v2: (B, dim) student and teacher embeddings.
            index: (B,) dataset indices of the batch.
            contrast_index: (B, K+1) contrastive indices, column 0 the positive.
        """
        k, temperature, z_v1, z_v2, momentum = self.params.tolist()
        k = int(k)
        batch = v1.shape[0]
        if contrast_index.dim() != 2 or contrast_index.shape != (batch, k + 1):
            raise ValueError(
                "expected contrastive_index of shape (batch, K+1) = ({}, {}), got {} "
                "(the train set must sample the method's NCE.K negatives)".format(
                    batch, k + 1, tuple(contrast_index.shape)
                )
            )
        out_v2 = contrast_scores(self.memory_v1, v2, contrast_index, temperature)
        out_v1 = contrast_scores(self.memory_v2, v1, contrast_index, temperature)
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
        """Z = mean(scores) · N over the (global) batch, stored in ``params[slot]``; returns it."""
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
        """``memory[index] ← normalize(μ · memory[index] + (1 − μ) · v)`` for both banks."""
        index, v1, v2 = _all_gather_cat(index.reshape(-1), v1.detach(), v2.detach())
        keep = _last_occurrence(index)
        if keep is not None:
            index, v1, v2 = index[keep], v1[keep], v2[keep]
        for memory, v in ((self.memory_v1, v1), (self.memory_v2, v2)):
            rows = momentum_update(memory.index_select(0, index), v.to(memory.dtype), momentum)
            memory.index_copy_(0, index, rows)
