"""Shared helpers of the OT toolbox: uniform histograms, batching of (a, b, cost), the cosine ground cost.

Shapes: histograms ``a`` (n,) or (B, n), ``b`` (m,) or (B, m) (None = uniform),
cost (n, m) or (B, n, m). One unbatched problem (every input unbatched) gives an
unbatched result; otherwise the batch size is taken from whichever input is
batched and the others are broadcast.
"""
import torch


def uniform(n, like, dtype=None, batch=None):
    """The uniform histogram ``1/n``, shape (n,) or (batch, n), on ``like``'s device, ``dtype`` (default ``like``'s)."""
    shape = (n,) if batch is None else (batch, n)
    return torch.full(shape, 1.0 / n, dtype=like.dtype if dtype is None else dtype, device=like.device)


def fill_uniform(a, b, n, m, like, dtype=None):
    """``a`` and ``b`` with None replaced by the uniform histograms ``1/n`` (n,) and ``1/m`` (m,)."""
    a = uniform(n, like, dtype) if a is None else a
    b = uniform(m, like, dtype) if b is None else b
    return a, b


def batch_histograms(a, b, cost_shape):
    """Check ``a``, ``b`` against a cost of shape (n, m) or (B, n, m); expand them to (B, n), (B, m).

    Returns ``(a, b, batched)``, ``batched`` telling whether any input was batched.
    """
    if len(cost_shape) not in (2, 3):
        raise ValueError("cost must be (n, m) or (B, n, m), got shape {}".format(tuple(cost_shape)))
    if a.dim() not in (1, 2) or b.dim() not in (1, 2):
        raise ValueError("a and b must be (n,) / (B, n), got {} and {}".format(tuple(a.shape), tuple(b.shape)))
    batched = len(cost_shape) == 3 or a.dim() == 2 or b.dim() == 2
    sizes = {t.shape[0] for t in (a, b) if t.dim() == 2}
    if len(cost_shape) == 3:
        sizes.add(cost_shape[0])
    if len(sizes) > 1:
        raise ValueError("inconsistent batch sizes {}".format(sorted(sizes)))
    batch = sizes.pop() if sizes else 1
    n, m = cost_shape[-2], cost_shape[-1]
    if a.shape[-1] != n or b.shape[-1] != m:
        raise ValueError("a has {} and b {} entries, cost is {}x{}".format(a.shape[-1], b.shape[-1], n, m))
    a = a.expand(batch, n) if a.dim() == 1 else a
    b = b.expand(batch, m) if b.dim() == 1 else b
    return a, b, batched


def batch_problem(a, b, cost, dtype=None):
    """``a``, ``b``, ``cost`` broadcast to (B, n), (B, m), (B, n, m), None histograms uniform (``dtype``,
    default the cost's); also returns whether any input was batched."""
    if cost.dim() not in (2, 3):
        raise ValueError("cost must be (n, m) or (B, n, m), got shape {}".format(tuple(cost.shape)))
    a, b = fill_uniform(a, b, cost.shape[-2], cost.shape[-1], cost, dtype)
    a, b, batched = batch_histograms(a, b, cost.shape)
    cost = cost.expand(a.shape[0], *cost.shape[-2:]) if cost.dim() == 2 else cost
    return a, b, cost, batched


def unbatch(value, plan, batched):
    """``(value, plan)``, with the batch dimension dropped for an unbatched problem."""
    return (value, plan) if batched else (value[0], plan[0])


def cosine_cost(x, y, eps=1e-8):
    r"""Cosine ground cost :math:`C_{ij} = 1 - \frac{x_i^\top y_j}{\max(\lVert x_i\rVert, \epsilon)\,
    \max(\lVert y_j\rVert, \epsilon)}` between the rows of ``x`` (..., n, d) and ``y`` (..., m, d).

    The ground cost of Lohit & Jones, "Model Compression Using Optimal
    Transport" (WACV 2022), between flattened stage features, and of the local
    (primal) term of Chen et al., "Wasserstein Contrastive Representation
    Distillation" (CVPR 2021), between embeddings.

    Args:
        x: (..., n, d) rows.
        y: (..., m, d) rows.
        eps: lower bound of the norms (as ``F.normalize``'s).

    Returns:
        (..., n, m) cost, values in [0, 2].

    The inner products of the raw rows are formed before the division, so pass
    float32 (or float64) rows: in float16, wide rows can overflow them. The
    distillers cast their features to float32 first.
    """
    # Inner products of the raw rows scaled by the (n, m) outer product of inverse norms: the same C as
    # normalizing the rows first, without writing (and differentiating) normalized copies of wide features.
    x_norm = torch.linalg.vector_norm(x, dim=-1).clamp_min(eps)
    y_norm = torch.linalg.vector_norm(y, dim=-1).clamp_min(eps)
    return 1.0 - (x @ y.transpose(-1, -2)) / (x_norm.unsqueeze(-1) * y_norm.unsqueeze(-2))
