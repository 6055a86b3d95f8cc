"""Optimal-transport toolbox: small pure functions on (batched) tensors.

Each function's docstring gives its equation and source; distillers are thin
wrappers that choose features, weights and schedules. Import lines below are
grouped by module.
"""
from .sinkhorn import sinkhorn_kernel, sinkhorn_fixed, sinkhorn_masked, sinkhorn_nontarget  # noqa: F401
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
