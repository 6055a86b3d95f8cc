"""KD²M (registry key KD2M): built from the config with zoo models, each distance checked against POT / closed forms.

The expected values are computed here from features extracted by running the
distiller's own student and teacher (student in train mode, as in
``forward_train``: BatchNorm uses the batch statistics, so the outputs are
identical) and, when the dimensions differ, its projector — in float64 numpy
with POT, independently of ``mdistiller.ot``.
"""
import glob
import os

import numpy as np
import ot
import pytest
import torch

from mdistiller.distillers import build_distiller
from mdistiller.engine.cfg import get_cfg
from mdistiller.models import cifar_model_dict
from tests.helpers.loss_reference import gauss_kl, gauss_w2, per_class, softmax, w2
from tests.helpers.runutil import REPO

NUM_CLASSES = 12
# class 2 has a single sample; classes 0, 1, 3, 4 have several
LABELS = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 3, 3, 4, 4])


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {name: cifar_model_dict[name][0](num_classes=NUM_CLASSES) for name in ("resnet8", "resnet20", "resnet8x4")}


@pytest.fixture(scope="module")
def images():
    return torch.randn(len(LABELS), 3, 32, 32, generator=torch.Generator().manual_seed(1))


def make(nets, distance, student="resnet8", teacher="resnet20", **opts):
    pairs = ["DISTILLER.TYPE", "KD2M", "DISTILLER.STUDENT", student, "DISTILLER.TEACHER", teacher]
    pairs += ["KD2M.DISTANCE", distance]
    for key, value in opts.items():
        pairs += ["KD2M." + key, value]
    cfg = get_cfg(opts=pairs)
    distiller = build_distiller(cfg, nets[student], nets[teacher])
    distiller.train()
    return cfg, distiller


def extract(distiller, images, feature="pooled"):
    """float64 numpy (student feature after the projector, teacher feature, student logits, teacher logits)."""
    with torch.no_grad():
        logits_s, feats_s = distiller.student(images)
        logits_t, feats_t = distiller.teacher(images)

        def pick(feats):
            if feature == "pooled":
                return feats["pooled_feat"]
            return feats["feats"][int(feature[len("feats"):])].mean((2, 3))

        f_s, f_t = pick(feats_s).double(), pick(feats_t).double()
        if isinstance(distiller.projector, torch.nn.Linear):
            f_s = f_s @ distiller.projector.weight.double().t() + distiller.projector.bias.double()
    return f_s.numpy(), f_t.numpy(), logits_s.double().numpy(), logits_t.double().numpy()


def kd_value(distiller, images, labels=LABELS):
    logits, losses = distiller(image=images, target=labels)
    assert set(losses) == {"loss_ce", "loss_kd"}
    assert losses["loss_kd"].dtype == torch.float32
    return losses["loss_kd"].item() / distiller.kd_loss_weight


# ----------------------------------------------------------------------------- one test per distance


def test_config_defaults():
    cfg = get_cfg()
    k = cfg.KD2M
    assert (k.LOSS.CE_WEIGHT, k.DISTANCE, k.FEATURE, k.COVARIANCE) == (1.0, "w2", "pooled", "diag")
    assert k.LOSS.LAMBDA > 0 and k.EPS > 0 and k.LABEL_COST == "sqeuclidean"


def test_w2_equals_pot_emd2(nets, images):
    _, d = make(nets, "w2")
    assert isinstance(d.projector, torch.nn.Identity) and d.get_extra_parameters() == 0
    value = kd_value(d, images)
    f_s, f_t, _, _ = extract(d, images)
    assert value == pytest.approx(w2(f_s, f_t), rel=1e-4)


def test_w2_on_a_stage_feature(nets, images):
    _, d = make(nets, "w2", FEATURE="feats2")
    value = kd_value(d, images)
    f_s, f_t, _, _ = extract(d, images, "feats2")
    assert f_s.shape[1] == 32
    assert value == pytest.approx(w2(f_s, f_t), rel=1e-4)


def test_cw2_mean_over_classes_with_a_one_sample_class(nets, images):
    _, d = make(nets, "cw2")
    value = kd_value(d, images)
    f_s, f_t, _, _ = extract(d, images)
    assert value == pytest.approx(per_class(w2, f_s, f_t, LABELS), rel=1e-4)
    # the singleton class contributes the squared distance between its two points
    assert w2(f_s[7:8], f_t[7:8]) == pytest.approx(float(((f_s[7] - f_t[7]) ** 2).sum()), rel=1e-12)


@pytest.mark.parametrize("label_cost", ["sqeuclidean", "ce"])
def test_jw2_joint_cost_student_vs_teacher(nets, images, label_cost):
    cfg, d = make(nets, "jw2", LABEL_COST=label_cost, BETA="0.5")
    value = kd_value(d, images)
    f_s, f_t, l_s, l_t = extract(d, images)
    feat_cost = ot.dist(f_s, f_t)  # student i vs teacher j
    feat_cost = feat_cost / feat_cost.max()
    p_s, p_t = softmax(l_s), softmax(l_t)
    label = ot.dist(p_s, p_t) if label_cost == "sqeuclidean" else -np.log(p_s) @ p_t.T
    n = len(f_s)
    expected = ot.emd2(np.full(n, 1 / n), np.full(n, 1 / n), feat_cost + cfg.KD2M.BETA * label)
    assert value == pytest.approx(float(expected), rel=1e-4)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_gw2_closed_form(nets, images, covariance):
    cfg, d = make(nets, "gw2", COVARIANCE=covariance)
    value = kd_value(d, images)
    f_s, f_t, _, _ = extract(d, images)
    assert value == pytest.approx(gauss_w2(f_s, f_t, cfg.KD2M.EPS, covariance == "diag"), rel=1e-3)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_cgw2_closed_form_with_a_one_sample_class(nets, images, covariance):
    cfg, d = make(nets, "cgw2", COVARIANCE=covariance, FEATURE="feats1")
    value = kd_value(d, images)
    f_s, f_t, _, _ = extract(d, images, "feats1")
    eps, diagonal = cfg.KD2M.EPS, covariance == "diag"
    expected = per_class(lambda x, y: gauss_w2(x, y, eps, diagonal), f_s, f_t, LABELS)
    assert value == pytest.approx(expected, rel=1e-3)
    # the singleton class: the ridge cancels in W2, leaving the mean term = the two points' squared distance
    single = gauss_w2(f_s[7:8], f_t[7:8], eps, diagonal)
    assert single == pytest.approx(float(((f_s[7] - f_t[7]) ** 2).sum()), rel=1e-6)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_gkl_closed_form(nets, images, covariance):
    # full covariances of 12 samples in 16 dims are singular: a visible ridge keeps fp32 well conditioned
    cfg, d = make(nets, "gkl", COVARIANCE=covariance, FEATURE="feats1", EPS="0.01")
    value = kd_value(d, images)
    f_s, f_t, _, _ = extract(d, images, "feats1")
    assert value == pytest.approx(gauss_kl(f_s, f_t, cfg.KD2M.EPS, covariance == "diag"), rel=1e-3)


def test_all_singleton_classes_reduce_to_pointwise_distance(nets, images):
    labels = torch.arange(len(LABELS))
    values = {}
    for distance, cov in (("cw2", "diag"), ("cgw2", "diag"), ("cgw2", "full")):
        _, d = make(nets, distance, COVARIANCE=cov, FEATURE="feats1")
        values[(distance, cov)] = kd_value(d, images, labels)
    f_s, f_t, _, _ = extract(d, images, "feats1")
    pointwise = float(((f_s - f_t) ** 2).sum(1).mean())
    for v in values.values():
        assert v == pytest.approx(pointwise, rel=1e-3)


# ----------------------------------------------------------------------------- projector, gradients, errors


@pytest.mark.parametrize("distance", ["w2", "gw2"])
def test_projector_when_dims_differ(nets, images, distance):
    cfg, d = make(nets, distance, teacher="resnet8x4")
    assert isinstance(d.projector, torch.nn.Linear)
    assert (d.projector.in_features, d.projector.out_features) == (64, 256)
    assert d.get_extra_parameters() == 64 * 256 + 256
    ids = {id(p) for p in d.get_learnable_parameters()}
    assert id(d.projector.weight) in ids and not any(id(p) in ids for p in d.teacher.parameters())
    value = kd_value(d, images)
    f_s, f_t, _, _ = extract(d, images)
    expected = w2(f_s, f_t) if distance == "w2" else gauss_w2(f_s, f_t, cfg.KD2M.EPS, True)
    assert value == pytest.approx(expected, rel=1e-4)


def test_backward_reaches_student_and_projector_not_teacher(nets, images):
    _, d = make(nets, "cw2", teacher="resnet8x4")
    d.zero_grad(set_to_none=True)
    _, losses = d(image=images, target=LABELS)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in d.teacher.parameters())
    assert d.projector.weight.grad is not None and d.projector.weight.grad.abs().sum() > 0
    grads = [p.grad for p in d.student.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the distillation term alone also reaches the student
    d.zero_grad(set_to_none=True)
    _, losses = d(image=images, target=LABELS)
    losses["loss_kd"].backward()
    assert d.student.fc.weight.grad is None or d.student.fc.weight.grad.abs().sum() == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.student.parameters())
    d.zero_grad(set_to_none=True)


@pytest.mark.parametrize(
    "key,value", [("DISTANCE", "w3"), ("COVARIANCE", "low"), ("LABEL_COST", "hinge"), ("FEATURE", "stage")]
)
def test_invalid_options_fail_clearly(nets, key, value):
    opts = {key: value}
    with pytest.raises(ValueError, match="KD2M." + key):
        make(nets, opts.pop("DISTANCE", "w2"), **opts)


def test_shipped_configs_load():
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "*", "kd2m", "*.yaml")))
    assert paths, "no configs/*/kd2m/*.yaml"
    distances = set()
    for path in paths:
        cfg = get_cfg(path)
        assert cfg.DISTILLER.TYPE == "KD2M"
        assert cfg.DISTILLER.STUDENT in cifar_model_dict and cfg.DISTILLER.TEACHER in cifar_model_dict
        distances.add((cfg.DATASET.TYPE, cfg.KD2M.DISTANCE))
    for distance in ("w2", "cw2", "jw2", "gw2", "cgw2", "gkl"):
        assert ("cifar100", distance) in distances
    assert ("cifar10", "w2") in distances and ("svhn", "w2") in distances
