"""KD²M's six distances as pure functions, against POT / closed forms in float64 numpy."""
import numpy as np
import ot
import pytest
import torch

from mdistiller.losses.kd2m import (
    COVARIANCES,
    DISTANCES,
    LABEL_COSTS,
    batch_gaussian,
    class_conditional_gaussian_w2,
    class_conditional_w2,
    class_gaussians,
    empirical_w2,
    gaussian_kl,
    gaussian_w2,
    joint_cost,
    joint_w2,
    kd2m_distance,
)
from tests.helpers.loss_reference import gauss_kl, gauss_w2, per_class, softmax, w2

# class 2 has a single sample
LABELS = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 3, 3, 4, 4])
DIM, CLASSES, EPS = 4, 6, 1e-3


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    n = len(LABELS)
    x = torch.randn(n, DIM, generator=g, dtype=torch.float64)
    y = torch.randn(n, DIM, generator=g, dtype=torch.float64) + 0.3
    logits_x = torch.randn(n, CLASSES, generator=g, dtype=torch.float64)
    logits_y = torch.randn(n, CLASSES, generator=g, dtype=torch.float64)
    return x, y, logits_x, logits_y


def test_names():
    assert DISTANCES == ("w2", "cw2", "jw2", "gw2", "cgw2", "gkl")
    assert COVARIANCES == ("diag", "full") and LABEL_COSTS == ("sqeuclidean", "ce")


def test_w2_and_cw2(data):
    x, y, _, _ = data
    assert empirical_w2(x, y).item() == pytest.approx(w2(x.numpy(), y.numpy()), rel=1e-10)
    expected = per_class(w2, x.numpy(), y.numpy(), LABELS)
    assert class_conditional_w2(x, y, LABELS).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("label_cost", ["sqeuclidean", "ce"])
@pytest.mark.parametrize("normalize", [True, False])
def test_jw2_joint_cost(data, label_cost, normalize):
    x, y, lx, ly = data
    feat = ot.dist(x.numpy(), y.numpy())
    if normalize:
        feat = feat / feat.max()
    p, q = softmax(lx.numpy()), softmax(ly.numpy())
    label = ot.dist(p, q) if label_cost == "sqeuclidean" else -np.log(p) @ q.T
    cost = feat + 0.5 * label
    np.testing.assert_allclose(joint_cost(x, y, lx, ly, 0.5, label_cost, normalize).numpy(), cost, rtol=1e-10, atol=1e-12)
    n = len(x)
    expected = ot.emd2(np.full(n, 1 / n), np.full(n, 1 / n), cost)
    assert joint_w2(x, y, lx, ly, 0.5, label_cost, normalize).item() == pytest.approx(float(expected), rel=1e-10)
    with pytest.raises(ValueError, match="label_cost"):
        joint_cost(x, y, lx, ly, label_cost="hinge")


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_gaussian_distances(data, covariance):
    x, y, _, _ = data
    diagonal = covariance == "diag"
    xn, yn = x.numpy(), y.numpy()
    assert gaussian_w2(x, y, diagonal, EPS).item() == pytest.approx(gauss_w2(xn, yn, EPS, diagonal), rel=1e-6)
    assert gaussian_kl(x, y, diagonal, EPS).item() == pytest.approx(gauss_kl(xn, yn, EPS, diagonal), rel=1e-8)
    expected = per_class(lambda a, b: gauss_w2(a, b, EPS, diagonal), xn, yn, LABELS)
    assert class_conditional_gaussian_w2(x, y, LABELS, diagonal, EPS).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("diagonal", [True, False])
def test_class_gaussians_equal_per_class_batch_gaussians(data, diagonal):
    x = data[0]
    means, seconds = class_gaussians(x, LABELS, diagonal, EPS)
    for row, c in enumerate(LABELS.unique()):
        mean, second = batch_gaussian(x[LABELS == c], diagonal, EPS)
        torch.testing.assert_close(means[row], mean)
        torch.testing.assert_close(seconds[row], second)


def test_dispatch(data):
    x, y, lx, ly = data
    assert kd2m_distance("w2", x, y) == empirical_w2(x, y)
    assert kd2m_distance("cw2", x, y, LABELS) == class_conditional_w2(x, y, LABELS)
    assert kd2m_distance("jw2", x, y, LABELS, lx, ly, beta=0.5, label_cost="ce") == joint_w2(x, y, lx, ly, 0.5, "ce")
    assert kd2m_distance("gw2", x, y, ridge=EPS, covariance="full") == gaussian_w2(x, y, False, EPS)
    assert kd2m_distance("cgw2", x, y, LABELS, ridge=EPS) == class_conditional_gaussian_w2(x, y, LABELS, True, EPS)
    assert kd2m_distance("gkl", x, y, ridge=EPS) == gaussian_kl(x, y, True, EPS)
    with pytest.raises(ValueError, match="distance"):
        kd2m_distance("w3", x, y)
    with pytest.raises(ValueError, match="covariance"):
        kd2m_distance("gw2", x, y, covariance="low")
