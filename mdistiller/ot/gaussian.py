"""Closed forms between Gaussians: 2-Wasserstein (Bures) and Kullback-Leibler, diagonal and full.

Conventions: diagonal Gaussians are given by mean and *standard-deviation*
vectors (..., d); full ones by mean (..., d) and covariance (..., d, d). All
functions broadcast over leading dimensions and return shape (...).
"""
import torch


class _SymSqrtm(torch.autograd.Function):
    """Principal square root of a symmetric PSD matrix with a divided-difference backward.

    Forward: ``A = V diag(λ) Vᵀ`` (``torch.linalg.eigh``), ``A^{1/2} = V diag(√max(λ, 0)) Vᵀ``.
    Backward (Daleckii-Krein): ``dA^{1/2} = V (K ∘ Vᵀ dA V) Vᵀ`` with
    ``K_ij = (√λ_i − √λ_j)/(λ_i − λ_j) = 1/(√λ_i + √λ_j)``, eigenvalues clamped at
    ``eps`` — finite even for repeated eigenvalues, where eigh's own backward
    divides by ``λ_i − λ_j`` and returns NaN.
    """

    @staticmethod
    def forward(ctx, mat, eps):
        mat = 0.5 * (mat + mat.transpose(-1, -2))
        evals, evecs = torch.linalg.eigh(mat)
        root = evals.clamp_min(0.0).sqrt()
        ctx.save_for_backward(evals, evecs)
        ctx.eps = eps
        return (evecs * root.unsqueeze(-2)) @ evecs.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad):
        evals, evecs = ctx.saved_tensors
        root = evals.clamp_min(ctx.eps).sqrt()
        kernel = 1.0 / (root.unsqueeze(-1) + root.unsqueeze(-2))
        grad = 0.5 * (grad + grad.transpose(-1, -2))
        inner = evecs.transpose(-1, -2) @ grad @ evecs
        return evecs @ (kernel * inner) @ evecs.transpose(-1, -2), None


def sqrtm_psd(mat, eps=1e-12):
    """Differentiable principal square root of symmetric PSD matrices (..., d, d); see :class:`_SymSqrtm`."""
    return _SymSqrtm.apply(mat, eps)


def gaussian_w2_diag(mu_a, sigma_a, mu_b, sigma_b, mean_weight=1.0):
    r"""Squared 2-Wasserstein distance between diagonal Gaussians (std vectors ``sigma``).

    .. math::
        W_2^2 = \lambda_\mu \lVert \mu_a - \mu_b\rVert_2^2 + \lVert \sigma_a - \sigma_b\rVert_2^2

    The Bures term of :func:`gaussian_w2_full` for commuting (here diagonal)
    covariances, :math:`\mathrm{tr}(\Sigma_a + \Sigma_b - 2(\Sigma_a\Sigma_b)^{1/2})
    = \lVert\sigma_a - \sigma_b\rVert^2` (Peyré & Cuturi 2019, Remark 2.31).
    ``mean_weight`` :math:`\lambda_\mu` = 1 gives the true distance; WKD-F (Lv et
    al., NeurIPS 2024, Eq. 9) weights the mean term by ``MEAN_COV_RATIO``.
    Sums over the last dimension.
    """
    return mean_weight * (mu_a - mu_b).pow(2).sum(-1) + (sigma_a - sigma_b).pow(2).sum(-1)


def gaussian_w2_full(mu_a, cov_a, mu_b, cov_b, eps=1e-12):
    r"""Squared 2-Wasserstein (Bures-Wasserstein) distance between full Gaussians.

    .. math::
        W_2^2 = \lVert\mu_a - \mu_b\rVert_2^2 + \mathrm{tr}\big(\Sigma_a + \Sigma_b
        - 2 (\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2}\big)

    (Dowson & Landau 1982; Givens & Shortt 1984; Peyré & Cuturi 2019, Remark
    2.31 — the square of what ``ot.gaussian.bures_wasserstein_distance``
    returns). Square roots by :func:`sqrtm_psd` (eigh with eigenvalues clamped at
    0; backward clamped at ``eps``), so rank-deficient covariances give a finite
    value and gradient — the gradient in their null directions is large, add a
    ridge to the covariances when they may be singular. Can be slightly negative
    (round-off) when the two Gaussians coincide.
    """
    root_a = sqrtm_psd(cov_a, eps)
    cross = sqrtm_psd(root_a @ cov_b @ root_a, eps)
    trace = lambda m: m.diagonal(dim1=-2, dim2=-1).sum(-1)  # noqa: E731
    return (mu_a - mu_b).pow(2).sum(-1) + trace(cov_a) + trace(cov_b) - 2.0 * trace(cross)


def gaussian_kl_diag(mu_a, sigma_a, mu_b, sigma_b):
    r"""KL(N(μa, diag σa²) ‖ N(μb, diag σb²)) for std vectors ``sigma`` (> 0).

    .. math::
        \mathrm{KL} = \tfrac12 \sum_k \Big(\frac{\sigma_{a,k}^2}{\sigma_{b,k}^2}
        + \frac{(\mu_{a,k} - \mu_{b,k})^2}{\sigma_{b,k}^2} - 1 + 2\log\frac{\sigma_{b,k}}{\sigma_{a,k}}\Big)

    (the product over coordinates of the univariate closed form; e.g. Bishop,
    *Pattern Recognition and Machine Learning*, 2006, Ex. 2.13 / Eq. (1.113)).
    """
    ratio = (sigma_a / sigma_b).pow(2)
    return 0.5 * (ratio + ((mu_a - mu_b) / sigma_b).pow(2) - 1.0 - ratio.log()).sum(-1)


def gaussian_kl_full(mu_a, cov_a, mu_b, cov_b):
    r"""KL(N(μa, Σa) ‖ N(μb, Σb)) for positive-definite covariances.

    .. math::
        \mathrm{KL} = \tfrac12\Big(\mathrm{tr}(\Sigma_b^{-1}\Sigma_a) + (\mu_b - \mu_a)^\top
        \Sigma_b^{-1}(\mu_b - \mu_a) - d + \log\frac{\det\Sigma_b}{\det\Sigma_a}\Big)

    (e.g. Duchi, "Derivations for Linear Algebra and Optimization", 2007; Rasmussen
    & Williams 2006, Eq. A.23). Through Cholesky factors
    :math:`\Sigma = LL^\top`: :math:`\mathrm{tr}(\Sigma_b^{-1}\Sigma_a) = \lVert L_b^{-1}L_a\rVert_F^2`,
    :math:`\log\det\Sigma = 2\sum_k\log L_{kk}`. Raises if a covariance is not
    positive definite (add a ridge).
    """
    chol_a = torch.linalg.cholesky(cov_a)
    chol_b = torch.linalg.cholesky(cov_b)
    d = mu_a.shape[-1]
    trace_term = torch.linalg.solve_triangular(chol_b, chol_a, upper=False).pow(2).sum((-2, -1))
    diff = (mu_b - mu_a).unsqueeze(-1)
    maha = torch.linalg.solve_triangular(chol_b, diff, upper=False).pow(2).sum((-2, -1))
    logdet_a = 2.0 * chol_a.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet_b = 2.0 * chol_b.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace_term + maha - d + logdet_b - logdet_a)


def empirical_gaussian(x, diagonal=True, unbiased=False, ridge=0.0):
    r"""Mean and covariance of samples ``x`` (..., N, d) over the sample axis N.

    Returns ``(mean (..., d), var (..., d))`` when ``diagonal`` (the variances —
    take ``.sqrt()`` for the std vectors of the ``*_diag`` functions) or
    ``(mean, cov (..., d, d))`` otherwise, with

    .. math::
        \mu = \tfrac1N\sum_i x_i,\qquad \Sigma = \tfrac1{N - c}\sum_i (x_i - \mu)(x_i - \mu)^\top + r I,

    ``c = 0`` by default (**biased**, maximum-likelihood estimate): it is the
    Gaussian fitted to the batch by maximum likelihood, it stays defined for a
    single sample (zero covariance instead of 0/0), and it is what the KD²M
    reference code uses (``std(correction=0)``); ``unbiased=True`` gives
    ``c = 1`` (needs N ≥ 2). ``ridge`` r is added to the variances / the diagonal.
    """
    n = x.shape[-2]
    if unbiased and n < 2:
        raise ValueError("the unbiased covariance needs at least 2 samples, got {}".format(n))
    denom = n - 1 if unbiased else n
    mean = x.mean(-2)
    centred = x - mean.unsqueeze(-2)
    if diagonal:
        return mean, centred.pow(2).sum(-2) / denom + ridge
    cov = centred.transpose(-1, -2) @ centred / denom
    if ridge:
        cov = cov + ridge * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    return mean, cov
