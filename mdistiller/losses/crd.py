"""Contrastive Representation Distillation (Tian, Krishnan & Isola, ICLR 2020): scores, NCE loss, memory update.

Notation: ``v`` (B, d) unit-norm embeddings of one network, ``memory`` (N, d)
the other network's bank (one row per training sample), ``idx`` (B, K+1) the
contrastive indices (column 0 the positive), τ the temperature, N the
training-set size. The normalisation constant Z and the bank itself are state,
kept by :class:`mdistiller.distillers._contrast_memory.ContrastMemory`.
"""
import torch

__all__ = [
    "BANK_PRODUCT_MIN_GATHER",
    "BANK_PRODUCT_RATIO",
    "NCE_EPS",
    "contrast_scores",
    "crd_loss",
    "l2_normalize",
    "momentum_update",
    "nce_loss",
    "use_bank_product",
]

# ε in the NCE denominators (CRD's released NCECriterion).
NCE_EPS = 1e-7


def l2_normalize(x):
    """``x_i / ‖x_i‖₂`` for the rows of ``x`` (B, d), without an ε (CRD's ``Normalize``)."""
    return x.div(x.pow(2).sum(1, keepdim=True).pow(0.5))


# contrast_scores scores against the whole bank when it has at most this many rows per column of scores
# and the gather it replaces would hold at least BANK_PRODUCT_MIN_GATHER numbers.
BANK_PRODUCT_RATIO = 16
BANK_PRODUCT_MIN_GATHER = 2**20


def use_bank_product(num_rows, batch, columns, dim):
    """Whether :func:`contrast_scores` multiplies by the whole (``num_rows``, ``dim``) bank rather than
    gathering the (``batch``, ``columns``, ``dim``) rows (see there)."""
    return num_rows <= BANK_PRODUCT_RATIO * columns and batch * columns * dim >= BANK_PRODUCT_MIN_GATHER


def contrast_scores(memory, v, contrast_index, temperature, bank_product=None):
    """Unnormalised critic scores ``exp(⟨memory[idx_ij], v_i⟩ / τ)``.

    Tian et al. 2020, Sec. 3 (the critic h(T, S) before its normalisation by Z,
    which makes it a probability under the NCE model).

    Two ways to the same scores (up to the summation order of the dot
    products, which ``exp(·/τ)`` turns into relative differences of ~1e-6):

    * bank product: one (B, d) × (d, N) matrix product against the whole bank,
      from which the K+1 columns of each row are picked -- far less memory
      traffic than the gather when N is a small multiple of K+1 (CIFAR: N =
      50,000, K = 16,384; the gather is ≈ 0.5 GB at B = 64, d = 128). The bank is
      saved for the backward as a copy, so in-place updates of ``memory`` after
      this call (the momentum update) do not change the gradient;
    * gather: the (B, K+1, d) rows, then a batched matrix-vector product.

    ``bank_product=None`` picks the bank product when the bank has at most
    :data:`BANK_PRODUCT_RATIO` · (K+1) rows and the gather would hold at least
    :data:`BANK_PRODUCT_MIN_GATHER` numbers (:func:`use_bank_product`); larger
    banks (ImageNet: N = 1.28 M) and small problems gather.

    Args:
        memory: (N, d) bank of the *other* network (no gradient flows into it).
        v: (B, d) embeddings.
        contrast_index: (B, K+1) long indices into ``memory``, column 0 the positive.
        temperature: τ.
        bank_product: True / False forces one way; None chooses (see above).

    Returns:
        (B, K+1) scores.
    """
    batch, dim = v.shape
    if bank_product is None:
        bank_product = use_bank_product(memory.shape[0], batch, contrast_index.shape[1], dim)
    if bank_product:
        needs_bank = torch.is_grad_enabled() and v.requires_grad
        bank = memory.detach().clone() if needs_bank else memory.detach()
        dots = torch.mm(v, bank.t()).gather(1, contrast_index)
        return torch.exp(torch.div(dots, temperature))
    weight = memory.index_select(0, contrast_index.reshape(-1)).view(batch, contrast_index.shape[1], dim)
    return torch.exp(torch.div(torch.bmm(weight, v.unsqueeze(2)), temperature)).squeeze(2)


def nce_loss(scores, num_data):
    r"""NCE loss of normalised scores ``P`` (B, K+1), column 0 the positive, with m = K noise samples.

    .. math::
        -\frac1B \sum_i \Big[\log\frac{P_{i0}}{P_{i0} + m P_n + \epsilon}
        + \sum_{j \ge 1} \log\frac{m P_n}{P_{ij} + m P_n + \epsilon}\Big],\qquad P_n = \frac1N

    Tian et al. 2020, Sec. 3 (L_critic with the binary classifier h = P / (P + m P_n)
    of noise-contrastive estimation, uniform noise); ε = :data:`NCE_EPS`.

    Args:
        scores: (B, K+1) scores divided by Z.
        num_data: N, the training-set size.

    Returns:
        Scalar loss.
    """
    batch, m = scores.shape[0], scores.shape[1] - 1
    m_pn = m * (1.0 / float(num_data))
    p_pos, p_neg = scores[:, 0], scores[:, 1:]
    log_d1 = torch.div(p_pos, p_pos + (m_pn + NCE_EPS)).log()
    log_d0 = torch.div(torch.full_like(p_neg, m_pn), p_neg + (m_pn + NCE_EPS)).log()
    return -(log_d1.sum() + log_d0.sum()) / batch


def crd_loss(scores_student, scores_teacher, num_data):
    """``NCE(P_s) + NCE(P_t)``: the student's embeddings against the teacher's bank and vice versa.

    Tian et al. 2020, Sec. 3 (the symmetric objective of the released code).

    Args:
        scores_student: (B, K+1) normalised scores of the student embeddings against the teacher bank.
        scores_teacher: (B, K+1) normalised scores of the teacher embeddings against the student bank.
        num_data: N, the training-set size.
    """
    return nce_loss(scores_student, num_data) + nce_loss(scores_teacher, num_data)


def momentum_update(rows, v, momentum):
    """New bank rows ``normalize(μ · rows + (1 − μ) · v)``.

    Tian et al. 2020, Sec. 3 (memory buffer updated with momentum μ, as in Wu et al. 2018).

    Args:
        rows: (B, d) current bank rows of the batch's samples.
        v: (B, d) the batch's embeddings (detached).
        momentum: μ.
    """
    return l2_normalize(rows * momentum + torch.mul(v, 1 - momentum))
