"""Optimal-transport toolbox: small pure functions on (batched) tensors.

One discipline for every solver (as POT's): ``f(a, b, cost, reg, num_iter, ...,
return_plan=False)`` — histograms ``a``, ``b`` first (None = uniform), then the
ground cost, the regulariser (``reg``; IPOT's proximal step ``beta``), the
iteration counts; the transport cost is returned, ``(value, plan)`` with
``return_plan=True``. Each function's docstring gives its equation and source.
"""
from ._utils import cosine_cost  # noqa: F401
from .sinkhorn import sinkhorn_fixed, sinkhorn_kernel, sinkhorn_masked  # noqa: F401
from .sinkhorn_log import sinkhorn_log  # noqa: F401
from .ipot import ipot  # noqa: F401
from .emd import emd, relaxed_emd, pairwise_sqeuclidean  # noqa: F401
from .gaussian import (  # noqa: F401
    empirical_gaussian,
    gaussian_kl_diag,
    gaussian_kl_full,
    gaussian_w2_diag,
    gaussian_w2_full,
    sqrtm_psd,
)
