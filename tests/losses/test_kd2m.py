"""KD²M's six distances as pure functions, against POT / closed forms in float64 numpy."""
import numpy as np
import ot
import pytest
import torch

from mdistiller.losses.kd2m import (
    COVARIANCES,
    DISTANCES,
    LABEL_COSTS,
    active_units,
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
    label_cost_matrix,
    variance_floor,
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


def label_reference(lx, ly, label_cost):
    """Pairwise label costs in numpy, one pair at a time (student i, teacher j)."""
    p, q = softmax(lx), softmax(ly)
    out = np.zeros((len(lx), len(ly)))
    for i in range(len(lx)):
        for j in range(len(ly)):
            if label_cost == "logit_sqeuclidean":
                out[i, j] = ((lx[i] - ly[j]) ** 2).sum()
            elif label_cost == "kl":
                out[i, j] = (p[i] * (np.log(p[i]) - np.log(q[j]))).sum()
            elif label_cost == "prob_sqeuclidean":
                out[i, j] = ((p[i] - q[j]) ** 2).sum()
            else:
                out[i, j] = -(q[j] * np.log(p[i])).sum()
    return out


def test_names():
    assert DISTANCES == ("w2", "cw2", "jw2", "gw2", "cgw2", "gkl")
    assert COVARIANCES == ("diag", "full")
    assert LABEL_COSTS == ("logit_sqeuclidean", "kl", "prob_sqeuclidean", "ce")


def test_w2_and_cw2(data):
    x, y, _, _ = data
    assert empirical_w2(x, y).item() == pytest.approx(w2(x.numpy(), y.numpy()), rel=1e-10)
    expected = per_class(w2, x.numpy(), y.numpy(), LABELS)  # the released code's sum over the 5 classes present
    assert class_conditional_w2(x, y, LABELS).item() == pytest.approx(expected, rel=1e-10)
    # Eq. (3): 1/n_c with n_c the number of classes (6 here; class 5 has no sample and no term)
    assert class_conditional_w2(x, y, LABELS, CLASSES).item() == pytest.approx(expected / CLASSES, rel=1e-10)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_class_reduction_forms(data, covariance):
    """"sum" (released) = n_c × "mean" (Eq. 3) for both class-conditional distances; λ·n_c with "mean" is the same loss."""
    x, y, _, _ = data
    for distance in ("cw2", "cgw2"):
        summed = kd2m_distance(distance, x, y, LABELS, covariance=covariance)
        mean = kd2m_distance(distance, x, y, LABELS, covariance=covariance, class_reduction="mean", num_classes=100)
        assert mean.item() == pytest.approx(summed.item() / 100, rel=1e-12), distance
    with pytest.raises(ValueError, match="num_classes"):
        kd2m_distance("cw2", x, y, LABELS, class_reduction="mean")
    with pytest.raises(ValueError, match="class_reduction"):
        kd2m_distance("cw2", x, y, LABELS, class_reduction="present")


def test_jw2_gradient_variants(data):
    """feature_grad=True: the gradient of Σ γ* ⊙ C through both terms; False (the released code's): the feature
    term is a constant, the features get no gradient and the logits the label term's."""
    x0, y, lx0, ly = data
    grads = {}
    for feature_grad in (True, False):
        x, lx = x0.clone().requires_grad_(True), lx0.clone().requires_grad_(True)
        value = joint_w2(x, y, lx, ly, 0.5, feature_grad=feature_grad)
        value.backward()
        grads[feature_grad] = (x.grad, lx.grad, value.item())
    n = len(x0)
    u = np.full(n, 1 / n)
    feat = ot.dist(x0.numpy(), y.numpy())
    cost = feat / feat.max() + 0.5 * ot.dist(lx0.numpy(), ly.numpy())
    plan = torch.from_numpy(ot.emd(u, u, cost))
    # the same value either way
    assert grads[True][2] == pytest.approx(grads[False][2], rel=1e-12)
    assert grads[True][2] == pytest.approx(float((plan.numpy() * cost).sum()), rel=1e-10)
    # released: no feature gradient; both: the label term's gradient, 0.5·Σ_j γ_ij·2(l_i − m_j)
    assert grads[False][0] is None  # the features are not in the graph at all
    label_grad = 0.5 * 2 * (plan.sum(1, keepdim=True) * lx0 - plan @ ly)
    torch.testing.assert_close(grads[False][1], label_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[True][1], label_grad, rtol=1e-10, atol=1e-12)
    # Eq. (4): Σ_j γ_ij·2(x_i − y_j) / max C_feat (the max held constant)
    feat_grad = 2 * (plan.sum(1, keepdim=True) * x0 - plan @ y) / feat.max()
    torch.testing.assert_close(grads[True][0], feat_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("label_cost", LABEL_COSTS)
def test_label_costs(data, label_cost):
    _, _, lx, ly = data
    expected = label_reference(lx.numpy(), ly.numpy(), label_cost)
    np.testing.assert_allclose(label_cost_matrix(lx, ly, label_cost).numpy(), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="label_cost"):
        label_cost_matrix(lx, ly, "sqeuclidean")  # ambiguous: the released code means logits, ours meant softmax


@pytest.mark.parametrize("label_cost", LABEL_COSTS)
@pytest.mark.parametrize("normalize", [True, False])
def test_jw2_joint_cost(data, label_cost, normalize):
    x, y, lx, ly = data
    feat = ot.dist(x.numpy(), y.numpy())  # student i vs teacher j
    if normalize:
        feat = feat / feat.max()
    cost = feat + 0.5 * label_reference(lx.numpy(), ly.numpy(), label_cost)
    np.testing.assert_allclose(joint_cost(x, y, lx, ly, 0.5, label_cost, normalize).numpy(), cost, rtol=1e-10, atol=1e-12)
    n = len(x)
    expected = ot.emd2(np.full(n, 1 / n), np.full(n, 1 / n), cost)
    assert joint_w2(x, y, lx, ly, 0.5, label_cost, normalize).item() == pytest.approx(float(expected), rel=1e-10)


def test_jw2_compares_the_student_with_the_teacher_not_with_itself(data):
    x, y, lx, ly = data
    # feature term only: the empirical W2 between student and teacher
    assert joint_w2(x, y, lx, ly, beta=0.0, normalize=False).item() == pytest.approx(w2(x.numpy(), y.numpy()), rel=1e-10)
    # the released code's student-student feature cost has a zero diagonal; ours does not
    feature = joint_cost(x, y, lx, ly, beta=0.0, normalize=False)
    assert torch.diagonal(feature).min() > 0
    np.testing.assert_allclose(feature.numpy(), ot.dist(x.numpy(), y.numpy()), rtol=1e-10)
    # the teacher's features and logits both move the value
    base = joint_w2(x, y, lx, ly).item()
    assert joint_w2(x, y + 1.0, lx, ly).item() != pytest.approx(base, rel=1e-6)
    assert joint_w2(x, y, lx, ly + torch.linspace(0, 1, CLASSES, dtype=torch.float64)).item() != pytest.approx(base, rel=1e-6)
    # label costs: student logits on the rows, teacher logits on the columns
    kl = label_cost_matrix(lx, ly, "kl")
    assert not torch.allclose(kl, label_cost_matrix(ly, lx, "kl").t())


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


# ----------------------------------------------------------------------------- each distance through kd2m_distance


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_each_distance_equals_its_pot_or_closed_form_value(data, covariance):
    """kd2m_distance (the distiller's entry point) against POT / closed forms, float64, relative ridge included."""
    x, y, lx, ly = data
    xn, yn, ln_x, ln_y = x.numpy(), y.numpy(), lx.numpy(), ly.numpy()
    diagonal, var_floor = covariance == "diag", 0.05
    ridge = var_floor * yn.var(0).mean()  # ε · the teacher's mean biased variance
    kw = dict(covariance=covariance, var_floor=var_floor)
    n = len(xn)
    u = np.full(n, 1 / n)
    joint = ot.dist(xn, yn) / ot.dist(xn, yn).max() + ot.dist(ln_x, ln_y)  # released code's default JW2 cost
    expected = {
        "w2": w2(xn, yn),
        "cw2": per_class(w2, xn, yn, LABELS),
        "jw2": float(ot.emd2(u, u, joint)),
        "gw2": gauss_w2(xn, yn, ridge, diagonal),
        "cgw2": per_class(lambda a, b: gauss_w2(a, b, ridge, diagonal), xn, yn, LABELS),
        "gkl": gauss_kl(xn, yn, ridge, diagonal),  # every teacher unit varies: none left out
    }
    for distance, value in expected.items():
        got = kd2m_distance(distance, x, y, LABELS, lx, ly, **kw)
        assert got.dtype == torch.float64
        assert got.item() == pytest.approx(value, rel=1e-6), distance


def test_variance_floor_is_relative_to_the_teacher_scale(data):
    x, y, _, _ = data
    assert variance_floor(y, 0.0) == 0.0
    assert variance_floor(y, 0.1).item() == pytest.approx(0.1 * y.numpy().var(0).mean(), rel=1e-12)
    assert variance_floor(torch.ones(5, 3), 0.1) > 0  # a constant teacher still gets a positive ridge
    # a common rescaling leaves KL unchanged and multiplies W2 by the square of the scale
    for distance, power in (("gkl", 0), ("gw2", 2), ("cgw2", 2)):
        for covariance in ("diag", "full"):
            base = kd2m_distance(distance, x, y, LABELS, covariance=covariance, var_floor=0.1).item()
            scaled = kd2m_distance(distance, 30 * x, 30 * y, LABELS, covariance=covariance, var_floor=0.1).item()
            assert scaled == pytest.approx(30**power * base, rel=1e-6), (distance, covariance)


# ----------------------------------------------------------------------------- Gaussian KL with dead teacher units


def relu_features(n=128, d=64, seed=0):
    """Post-ReLU teacher features and an independent post-ReLU student (float64)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(d, generator=g, dtype=torch.float64) + 0.5
    y = torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64) * scale + 0.5 * scale)
    x = torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64) * scale + 0.3 * scale)
    return x, y


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_gaussian_kl_with_dead_teacher_units_stays_within_a_small_factor(covariance):
    x, y = relu_features()
    dead = 8
    y_dead = y.clone()
    y_dead[:, :dead] = 0.0  # inactive for the whole batch (post-ReLU zeros)
    kw = dict(covariance=covariance)
    without = kd2m_distance("gkl", x[:, dead:], y[:, dead:], **kw).item()  # the same pair without those units
    alive = kd2m_distance("gkl", x, y, **kw).item()  # the same units alive
    with_dead = kd2m_distance("gkl", x, y_dead, **kw).item()
    assert np.isfinite(with_dead)
    assert 0.5 * without <= with_dead <= 2.0 * without
    assert 0.5 * alive <= with_dead <= 2.0 * alive
    # an absolute ridge alone (the previous behaviour) lets the dead units dominate by orders of magnitude
    assert gaussian_kl(x, y_dead, covariance == "diag", 1e-5).item() > 1000 * without
    # the dead units are left out: the value is the KL of the marginals on the teacher's active units
    units = active_units(y_dead, variance_floor(y_dead, 1e-3))
    assert units.tolist() == [False] * dead + [True] * (y.shape[1] - dead)
    ridge = variance_floor(y_dead, 1e-3).item()
    expected = gauss_kl(x[:, dead:].numpy(), y[:, dead:].numpy(), ridge, covariance == "diag")
    assert with_dead == pytest.approx(expected, rel=1e-6)


def test_gaussian_kl_gradient_is_finite_with_dead_units_on_either_side():
    x, y = relu_features(n=32, d=16)
    x = x.clone()
    x[:, 3] = 0.0  # a dead student unit
    y = y.clone()
    y[:, :4] = 0.0  # dead teacher units
    x.requires_grad_(True)
    value = kd2m_distance("gkl", x, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()
    assert x.grad[:, :4].abs().sum() == 0  # no signal on units the teacher leaves constant


def test_dispatch(data):
    x, y, lx, ly = data
    r = variance_floor(y, 1e-3)
    assert kd2m_distance("w2", x, y) == empirical_w2(x, y)
    assert kd2m_distance("cw2", x, y, LABELS) == class_conditional_w2(x, y, LABELS)
    assert kd2m_distance("jw2", x, y, LABELS, lx, ly, beta=0.5, label_cost="ce") == joint_w2(x, y, lx, ly, 0.5, "ce")
    assert kd2m_distance("jw2", x, y, LABELS, lx, ly) == joint_w2(x, y, lx, ly, 1.0, "logit_sqeuclidean", True)
    assert kd2m_distance("gw2", x, y, covariance="full") == gaussian_w2(x, y, False, r)
    assert kd2m_distance("cgw2", x, y, LABELS) == class_conditional_gaussian_w2(x, y, LABELS, True, r)
    assert kd2m_distance("gkl", x, y) == gaussian_kl(x, y, True, r)
    assert kd2m_distance("gkl", x, y, var_floor=0.0) == gaussian_kl(x, y, True, 0.0)
    with pytest.raises(ValueError, match="distance"):
        kd2m_distance("w3", x, y)
    with pytest.raises(ValueError, match="covariance"):
        kd2m_distance("gw2", x, y, covariance="low")
