"""The WKL distiller: reduction to WKD-L, the schedules in the distiller, the KL-side terms, the WKL.KL_WEIGHT key
and its old name, logit standardization, configs."""
import os

import pytest
import torch
import torch.nn.functional as F
import yaml

from mdistiller.distillers import build_distiller, distiller_dict
from mdistiller.distillers.WKL import WKL
from mdistiller.engine.cfg import get_cfg
from mdistiller.losses.dkd import dkd_parts
from mdistiller.losses.class_cost import fc_cost_matrix, prepare_cost_matrix
from mdistiller.losses.schedules import cosine_decay_weight
from mdistiller.losses.wkd import wkd_feature_parts, wkd_logit_parts
from mdistiller.losses.wkl import gaussian_feature_kl
from tests.helpers.distill_inputs import zoo_pair
from tests.helpers.loss_reference import zscore
from tests.helpers.runutil import REPO
EPOCHS = 240
KL_WEIGHT = 0.5
T = 4.0


def make_cfg(*opts):
    base = [
        "DISTILLER.TYPE", "WKL",
        "SOLVER.EPOCHS", str(EPOCHS),
        "WKD.COST_MATRIX", "fc",
        "WKD.TEMPERATURE", str(T),
        "WKD.LOSS.WKD_LOGIT_WEIGHT", "30.0",
        "WKD.LOSS.WKD_FEAT_WEIGHT", "0.0",
        "WKD.LOSS.COSINE_DECAY_EPOCH", "150",
        "WKL.KL_WEIGHT", str(KL_WEIGHT),
    ]
    return get_cfg(opts=base + list(opts))


def make_distiller(*opts):
    student, teacher = zoo_pair("resnet8", "resnet14", num_classes=100)
    return build_distiller(make_cfg(*opts), student, teacher)


@pytest.fixture(scope="module")
def logits():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(16, 100, generator=g) * 3
    t = torch.randn(16, 100, generator=g) * 3
    y = torch.randint(0, 100, (16,), generator=g)
    return s, t, y


def reference_cost(distiller, sharpen=1.0):
    return prepare_cost_matrix(fc_cost_matrix(distiller.teacher), sharpen)


def wkd_l(distiller, s, t, y, epoch):
    loss_t, w = wkd_logit_parts(s, t, y, reference_cost(distiller), T, 0.05, 10)
    return loss_t + cosine_decay_weight(30.0, epoch, 150, EPOCHS) * w


def dkd_ref(s, t, y, alpha=1.0, beta=2.0):
    tckd, nckd = dkd_parts(s, t, y, T)
    return alpha * tckd + beta * nckd


def dkd_by_hand(ps, pt, y):
    """Σ_i (TCKD + 2·NCKD)·T² from the student's and teacher's softmaxes: the binary KL of the target
    probability, and the KL of the non-target probabilities renormalised."""
    total = 0.0
    for i in range(ps.shape[0]):
        a, b = pt[i, y[i]], ps[i, y[i]]
        tckd = a * torch.log(a / b) + (1 - a) * torch.log((1 - a) / (1 - b))
        keep = torch.arange(ps.shape[1]) != y[i]
        qt, qs = pt[i, keep] / pt[i, keep].sum(), ps[i, keep] / ps[i, keep].sum()
        nckd = (qt * torch.log(qt / qs)).sum()
        total = total + (1.0 * tckd + 2.0 * nckd) * T**2
    return total


def test_registered_and_subclasses_wkd():
    assert distiller_dict["WKL"] is WKL
    d = make_distiller()
    assert isinstance(d, distiller_dict["WKD"])
    assert d.kl_weight == KL_WEIGHT and d.kl_term == "dkd" and d.schedule == "cosine"


def test_epoch0_is_wkd_l(logits):
    s, t, y = logits
    d = make_distiller()
    loss_kd, loss_kl = d.logit_parts(s, t, y, 0)
    assert float(loss_kl) == 0.0
    torch.testing.assert_close(loss_kd, wkd_l(d, s, t, y, 0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d.logit_loss(s, t, y, 0), wkd_l(d, s, t, y, 0), rtol=1e-5, atol=1e-6)
    # same as the WKD distiller with the same settings
    wkd = build_distiller(make_cfg("DISTILLER.TYPE", "WKD"), d.student, d.teacher)
    torch.testing.assert_close(loss_kd, wkd.logit_loss(s, t, y, 0), rtol=1e-6, atol=1e-7)


def test_forward_train_epoch0_matches_wkd_l():
    d = make_distiller()
    d.train()
    g = torch.Generator().manual_seed(1)
    image = torch.randn(8, 3, 32, 32, generator=g)
    target = torch.randint(0, 100, (8,), generator=g)
    logits_student, losses = d(image=image, target=target, epoch=0)
    assert set(losses) == {"loss_ce", "loss_kd", "loss_kl"}
    with torch.no_grad():
        s = d.student(image)[0]  # train-mode BN: batch statistics, same logits
        t = d.teacher(image)[0]
    torch.testing.assert_close(logits_student.detach(), s)
    torch.testing.assert_close(losses["loss_kd"].detach(), wkd_l(d, s, t, target, 0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["loss_ce"].detach(), F.cross_entropy(s, target))
    assert float(losses["loss_kl"]) == 0.0
    sum(losses.values()).backward()
    assert d.student.fc.weight.grad is not None
    assert all(p.grad is None for p in d.teacher.parameters())


@pytest.mark.parametrize("epoch,ramp", [(EPOCHS // 2, 0.5), (EPOCHS, 1.0)])
def test_dkd_term_follows_schedule(logits, epoch, ramp):
    s, t, y = logits
    d = make_distiller()
    loss_kd, loss_kl = d.logit_parts(s, t, y, epoch)
    torch.testing.assert_close(loss_kl, ramp * KL_WEIGHT * dkd_ref(s, t, y), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_kd, wkd_l(d, s, t, y, epoch), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d.logit_loss(s, t, y, epoch), loss_kd + loss_kl)


def test_dkd_term_by_hand(logits):
    """The KL side at e = E against DKD written out (binary KL + renormalised non-target KL, ×T²)."""
    s, t, y = logits
    d = make_distiller()
    _, loss_kl = d.logit_parts(s, t, y, EPOCHS)
    total = dkd_by_hand(F.softmax(s / T, 1).double(), F.softmax(t / T, 1).double(), y)
    torch.testing.assert_close(loss_kl.double(), KL_WEIGHT * total / s.shape[0], rtol=1e-4, atol=1e-6)


def test_linear_schedule_in_distiller(logits):
    s, t, y = logits
    d = make_distiller("WKL.SCHEDULE", "linear", "WKL.START_EPOCH", "40", "WKL.END_EPOCH", "200")
    for epoch, ramp in [(30, 0.0), (120, 0.5), (220, 1.0)]:
        loss_kd, loss_kl = d.logit_parts(s, t, y, epoch)
        torch.testing.assert_close(loss_kl, ramp * KL_WEIGHT * dkd_ref(s, t, y), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loss_kd, wkd_l(d, s, t, y, epoch), rtol=1e-5, atol=1e-6)


def test_complementary_schedule_in_distiller(logits):
    s, t, y = logits
    d = make_distiller("WKL.SCHEDULE", "complementary")
    loss_kd, loss_kl = d.logit_parts(s, t, y, 0)
    torch.testing.assert_close(loss_kd, wkd_l(d, s, t, y, 0), rtol=1e-5, atol=1e-6)
    assert float(loss_kl) == 0.0
    loss_kd, loss_kl = d.logit_parts(s, t, y, EPOCHS // 2)
    torch.testing.assert_close(loss_kd, 0.5 * wkd_l(d, s, t, y, EPOCHS // 2), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_kl, 0.5 * KL_WEIGHT * dkd_ref(s, t, y), rtol=1e-5, atol=1e-6)
    loss_kd, loss_kl = d.logit_parts(s, t, y, EPOCHS)
    assert abs(float(loss_kd)) < 1e-6
    torch.testing.assert_close(loss_kl, KL_WEIGHT * dkd_ref(s, t, y), rtol=1e-5, atol=1e-6)


@pytest.mark.numerics
def test_kl_term_option(logits):
    s, t, y = logits
    d = make_distiller("WKL.KL_TERM", "kl")
    _, loss_kl = d.logit_parts(s, t, y, EPOCHS)
    ps, pt = F.softmax(s / T, 1), F.softmax(t / T, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean() * T**2
    torch.testing.assert_close(loss_kl, KL_WEIGHT * kl, rtol=1e-5, atol=1e-6)
    _, loss_kl = d.logit_parts(s, t, y, EPOCHS // 2)
    torch.testing.assert_close(loss_kl, 0.5 * KL_WEIGHT * kl, rtol=1e-5, atol=1e-6)


def test_dkd_alpha_beta_options(logits):
    s, t, y = logits
    d = make_distiller("WKL.DKD_ALPHA", "2.0", "WKL.DKD_BETA", "8.0")
    _, loss_kl = d.logit_parts(s, t, y, EPOCHS)
    torch.testing.assert_close(loss_kl, KL_WEIGHT * dkd_ref(s, t, y, 2.0, 8.0), rtol=1e-5, atol=1e-6)


def test_bad_options():
    with pytest.raises(ValueError):
        make_distiller("WKL.SCHEDULE", "step")
    with pytest.raises(ValueError):
        make_distiller("WKL.KL_TERM", "js")
    with pytest.raises(ValueError):
        make_distiller("WKL.FEAT_KL_WEIGHT", "0.04")  # no feature branch


def test_features_with_gaussian_kl_ramp():
    d = make_distiller(
        "WKD.LOSS.WKD_FEAT_WEIGHT", "0.5", "WKD.HINT_LAYER", "3", "WKD.PROJECTOR", "conv1x1", "WKD.SPATIAL_GRID", "2",
        "WKL.FEAT_KL_WEIGHT", "0.04",
    )
    d.train()
    g = torch.Generator().manual_seed(2)
    image = torch.randn(4, 3, 32, 32, generator=g)
    target = torch.randint(0, 100, (4,), generator=g)
    _, losses0 = d(image=image, target=target, epoch=0)
    assert set(losses0) == {"loss_ce", "loss_kd", "loss_kl", "loss_feat"}
    d.eval()  # deterministic projector (BN running stats) for the comparison below
    with torch.no_grad():
        fs = d.student(image)[1]["feats"][3]
        ft = d.teacher(image)[1]["feats"][3]
        f_s = d.conv_reg(fs)
        mean_loss, cov_loss = wkd_feature_parts(f_s, ft, eps=1e-5, grid=2)
        wkdf = 2.0 * mean_loss + cov_loss
        gkl = gaussian_feature_kl(f_s, ft, 1.0)
        for epoch, ramp in [(0, 0.0), (EPOCHS // 2, 0.5), (EPOCHS, 1.0)]:
            expected = cosine_decay_weight(0.5, epoch, 150, EPOCHS) * wkdf + ramp * 0.04 * gkl
            torch.testing.assert_close(d.feature_loss(fs, ft, epoch), expected, rtol=1e-5, atol=1e-6)


CONFIGS = {
    "configs/cifar100/wkl/res32x4_res8x4.yaml": 0.5,
    "configs/cifar100/wkl/wrn40_2_shuv1.yaml": 1.0,
    "configs/imagenet/r34_r18/wkl.yaml": None,
    "configs/imagenet/r50_mv1/wkl.yaml": None,
}


@pytest.mark.parametrize("path", sorted(CONFIGS))
def test_configs_merge(path):
    cfg = get_cfg(os.path.join(REPO, path))
    assert cfg.DISTILLER.TYPE == "WKL"
    assert cfg.SOLVER.NESTEROV is True
    assert cfg.WKD.LOSS.WKD_LOGIT_WEIGHT > 0 and cfg.WKD.LOSS.WKD_FEAT_WEIGHT == 0.0
    assert cfg.WKL.SCHEDULE == "cosine" and cfg.WKL.KL_TERM == "dkd"
    if CONFIGS[path] is not None:
        assert cfg.WKL.KL_WEIGHT == CONFIGS[path]


# ----------------------------------------------------------------------------- WKL.KL_WEIGHT and its old name


def old_style(path, tmp_path):
    """A copy of a shipped WKL yaml with the KL weight written as the release writes it (WKD.LOSS.KL_WEIGHT)."""
    with open(os.path.join(REPO, path)) as f:
        tree = yaml.safe_load(f)
    value = tree["WKL"].pop("KL_WEIGHT")
    tree["WKD"]["LOSS"]["KL_WEIGHT"] = value
    out = tmp_path / os.path.basename(path)
    out.write_text(yaml.safe_dump(tree))
    return str(out), value


@pytest.mark.parametrize("path", sorted(CONFIGS) + ["configs/digits/wkl.yaml"])
def test_old_kl_weight_key_gives_the_same_config(path, tmp_path):
    old_path, value = old_style(path, tmp_path)
    with open(old_path) as f:
        assert "KL_WEIGHT" not in yaml.safe_load(f)["WKL"]
    new, old = get_cfg(os.path.join(REPO, path)), get_cfg(old_path)
    assert old == new and old.WKL.KL_WEIGHT == value
    assert "KL_WEIGHT" not in old.WKD.LOSS


def test_old_kl_weight_key_gives_the_same_run(tmp_path):
    """The digits WKL config with the released key name: same config, same distiller, same losses and gradients."""
    old_path, _ = old_style("configs/digits/wkl.yaml", tmp_path)
    opts = ["WKD.LOSS.KL_WEIGHT", "0.25", "SOLVER.EPOCHS", "8"]
    cfgs = [get_cfg(os.path.join(REPO, "configs/digits/wkl.yaml"), ["WKL.KL_WEIGHT", "0.25", "SOLVER.EPOCHS", "8"]),
            get_cfg(old_path, opts)]
    assert cfgs[0] == cfgs[1] and cfgs[1].WKL.KL_WEIGHT == 0.25
    g = torch.Generator().manual_seed(0)
    image, target = torch.randn(6, 3, 32, 32, generator=g), torch.randint(0, 10, (6,), generator=g)
    runs = []
    for cfg in cfgs:
        student, teacher = zoo_pair(cfg.DISTILLER.STUDENT, cfg.DISTILLER.TEACHER)
        d = build_distiller(cfg, student, teacher).train()
        assert d.kl_weight == 0.25
        _, losses = d(image=image, target=target, epoch=6)
        sum(losses.values()).backward()
        runs.append(({k: v.detach() for k, v in losses.items()}, [p.grad.clone() for p in d.student.parameters()]))
    assert float(runs[0][0]["loss_kl"]) > 0
    assert runs[0][0].keys() == runs[1][0].keys()
    assert all(torch.equal(runs[0][0][k], runs[1][0][k]) for k in runs[0][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_both_kl_weight_names_fail():
    with pytest.raises(ValueError, match="WKL.KL_WEIGHT and its old name WKD.LOSS.KL_WEIGHT"):
        get_cfg(None, ["WKL.KL_WEIGHT", "0.5", "WKD.LOSS.KL_WEIGHT", "0.5"])


# ----------------------------------------------------------------------------- logit standardization


def test_logit_standardization_of_both_sides(logits):
    """KL side: DKD written out on z-scored logits; Wasserstein side: WKD's (L_t raw, W from z-scored logits)."""
    s, t, y = (v.double() if v.is_floating_point() else v for v in logits)
    d = make_distiller("EXPERIMENT.LOGIT_STAND", "True")
    assert d.logit_stand
    epoch = EPOCHS // 2  # g = 1/2
    loss_kd, loss_kl = d.logit_parts(s, t, y, epoch)
    total = dkd_by_hand(F.softmax(zscore(s) / T, 1), F.softmax(zscore(t) / T, 1), y)
    torch.testing.assert_close(loss_kl, 0.5 * KL_WEIGHT * total / s.shape[0], rtol=1e-9, atol=1e-12)
    cost = reference_cost(d).double()
    loss_t, _ = wkd_logit_parts(s, t, y, cost, T, 0.05, 10)
    _, w = wkd_logit_parts(zscore(s), zscore(t), y, cost, T, 0.05, 10)
    torch.testing.assert_close(loss_kd, loss_t + cosine_decay_weight(30.0, epoch, 150, EPOCHS) * w,
                               rtol=1e-9, atol=1e-12)
    plain = make_distiller()
    torch.testing.assert_close(plain.logit_parts(s, t, y, epoch)[1], 0.5 * KL_WEIGHT * dkd_ref(s, t, y),
                               rtol=1e-9, atol=1e-12)
    assert not torch.allclose(plain.logit_parts(s, t, y, epoch)[1], loss_kl)
