"""EXPERIMENT.LOGIT_STAND (Sun et al. CVPR 2024): KD and DKD computed on z-scored logits; the shipped recipes are
the release's rules applied to its per-pair runs."""
import os

import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers import build_distiller
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.diagnostics import AlignmentDiagnostics
from mdistiller.models import cifar_model_dict
from tests.helpers.distill_inputs import zoo_pair
from tests.helpers.loss_reference import zscore
from tests.helpers.runutil import REPO


def kl_sum(p, q):
    return (p * (p.log() - q.log())).sum()


def test_kd_and_dkd_formulas_on_fixed_logits():
    from mdistiller.distillers.DKD import DKD
    from mdistiller.distillers.KD import KD

    cfg = get_cfg(opts=["EXPERIMENT.LOGIT_STAND", "True", "KD.TEMPERATURE", "2", "KD.LOSS.KD_WEIGHT", "9",
                        "DKD.ALPHA", "9", "DKD.BETA", "81"])
    torch.manual_seed(1)
    z_s, z_t = 3 * torch.randn(5, 7, dtype=torch.float64), 5 * torch.randn(5, 7, dtype=torch.float64) + 2
    y = torch.tensor([0, 3, 6, 2, 2])
    net = cifar_model_dict["resnet8"][0](num_classes=7)
    kd, dkd = KD(net, net, cfg), DKD(net, net, cfg)

    s, t = zscore(z_s), zscore(z_t)
    p_s, p_t = torch.softmax(s / 2, 1), torch.softmax(t / 2, 1)
    expected_kd = 9 * 4 * kl_sum(p_t, p_s) / 5
    torch.testing.assert_close(kd.logit_loss(z_s, z_t, y, 1), expected_kd)

    p_s, p_t = torch.softmax(s / 4, 1), torch.softmax(t / 4, 1)
    mask = F.one_hot(y, 7).bool()
    b_s = torch.stack([p_s[mask], 1 - p_s[mask]], 1)
    b_t = torch.stack([p_t[mask], 1 - p_t[mask]], 1)
    q_s = p_s.masked_fill(mask, 0)
    q_s = q_s / q_s.sum(1, keepdim=True)
    q_t = p_t.masked_fill(mask, 0)
    q_t = q_t / q_t.sum(1, keepdim=True)
    nonzero = ~mask
    nckd = (q_t[nonzero] * (q_t[nonzero].log() - q_s[nonzero].log())).sum()
    expected_dkd = 16 * (9 * kl_sum(b_t, b_s) + 81 * nckd) / 5
    torch.testing.assert_close(dkd.logit_loss(z_s, z_t, y, 20), expected_dkd)
    # off: the plain formula on raw logits
    kd.logit_stand = False
    p_s, p_t = torch.softmax(z_s / 2, 1), torch.softmax(z_t / 2, 1)
    torch.testing.assert_close(kd.logit_loss(z_s, z_t, y, 1), 9 * 4 * kl_sum(p_t, p_s) / 5)


def test_methods_without_logit_terms_refuse_the_key():
    cfg = get_cfg(opts=["EXPERIMENT.LOGIT_STAND", "True", "DISTILLER.TYPE", "NONE"])
    net = cifar_model_dict["resnet8"][0](num_classes=10)
    with pytest.raises(ValueError, match="LOGIT_STAND is not supported by NONE.*KD"):
        build_distiller(cfg, net, None)


def test_diagnostics_use_standardized_logits():
    cfg = get_cfg(opts=["EXPERIMENT.LOGIT_STAND", "True", "DISTILLER.TYPE", "KD", "KD.TEMPERATURE", "2"])
    student, teacher = zoo_pair("resnet8", "resnet14")
    distiller = build_distiller(cfg, student, teacher)
    images, targets = torch.randn(4, 3, 32, 32), torch.tensor([1, 2, 3, 4])
    out = AlignmentDiagnostics(cfg, images, targets).compute(distiller, 1)
    with torch.no_grad():
        z_s, z_t = student.eval()(images)[0], teacher.eval()(images)[0]
    p_s, p_t = torch.softmax(zscore(z_s) / 2, 1), torch.softmax(zscore(z_t) / 2, 1)
    assert out["kl"] == pytest.approx((4 * kl_sum(p_t, p_s) / 4).item(), rel=1e-4)


# ----------------------------------------------------------------------------- the shipped recipes

# The release's runs per pair, from its logs' file names (KD_TYPE,TEACHER,STUDENT,BASE_TEMPERATURE,KD_WEIGHT
# [,BETA]; sunshangquan/logit-standardization-KD, logs/KD/, logs/DKD/): (T, W) and (T, W, BETA or None).
RELEASE_KD = {
    "res32x4_res8x4": (2, 9), "res32x4_shuv2": (2, 9), "res110_res20": (4, 12), "res110_res32": (2, 9),
    "res56_res20": (2, 9), "vgg13_vgg8": (3, 9), "vgg13_mv2": (3, 9), "wrn40_2_wrn_16_2": (2, 9),
    "wrn40_2_wrn_40_1": (2, 9), "res50_mv2": (3, 1),
}
RELEASE_DKD = {
    "res32x4_res8x4": (2, 9, None), "res32x4_shuv2": (2, 9, None), "res110_res20": (2, 15, 2.0),
    "res110_res32": (2, 15, 2.0), "res56_res20": (3, 12, 2.0), "vgg13_vgg8": (2, 15, 2.0),
    "vgg13_mv2": (3, 9, 2.0), "wrn40_2_wrn_16_2": (2, 12, 2.0), "wrn40_2_wrn_40_1": (2, 12, 2.0),
    "res50_mv2": (2, 15, 2.0),
}


def release_rule(method, pair, temperature, weight, beta=None):
    """The config the release's tools/train.py (6b58661, lines 110-118) runs for `--cfg <the pair's mdistiller
    config> --logit-stand --base-temp T --kd-weight W`: KD: TEMPERATURE T, KD_WEIGHT W (CE weight: cfg.py's 0.1);
    DKD: ALPHA·W, BETA·W (BETA from the log name where it has one), DKD.T = T."""
    cfg = get_cfg(os.path.join(REPO, "configs", "cifar100", method.lower(), pair + ".yaml")).clone()
    cfg.defrost()
    cfg.EXPERIMENT.LOGIT_STAND = True
    if method == "KD":
        cfg.KD.TEMPERATURE, cfg.KD.LOSS.KD_WEIGHT = float(temperature), float(weight)
        assert cfg.KD.LOSS.CE_WEIGHT == 0.1  # the release's cfg.py default (its issue #8)
    else:
        if beta is not None:
            cfg.DKD.BETA = beta
        cfg.DKD.ALPHA, cfg.DKD.BETA, cfg.DKD.T = cfg.DKD.ALPHA * weight, cfg.DKD.BETA * weight, float(temperature)
    return cfg


@pytest.mark.parametrize("method,pair", [("KD", p) for p in RELEASE_KD] + [("DKD", p) for p in RELEASE_DKD])
def test_shipped_ls_config_is_the_release_rule_on_the_pair(method, pair):
    settings = (RELEASE_KD if method == "KD" else RELEASE_DKD)[pair]
    path = os.path.join(REPO, "configs", "cifar100", method.lower() + "_ls", pair + ".yaml")
    shipped, expected = get_cfg(path), release_rule(method, pair, *settings)
    for section in ("DISTILLER", "SOLVER", "DATASET", method):
        assert shipped[section] == expected[section], (path, section)
    assert shipped.EXPERIMENT.LOGIT_STAND
    with open(path) as f:
        header = f.read()
    log = "{},{},{},{},{}".format(method.lower(), shipped.DISTILLER.TEACHER, shipped.DISTILLER.STUDENT, *settings[:2])
    assert log in header and "tools/train.py:11" in header, path  # cites the run and the rule


def test_fractional_temperatures_merge_and_integer_yaml_values_stay_valid(tmp_path):
    assert get_cfg(opts=["KD.TEMPERATURE", "3.0"]).KD.TEMPERATURE == 3.0
    assert get_cfg(opts=["KD.TEMPERATURE", "2.5", "DKD.T", "1.5"]).DKD.T == 1.5
    path = tmp_path / "mdistiller_kd.yaml"
    path.write_text("KD:\n  TEMPERATURE: 4\n")  # mdistiller's files write an int
    assert get_cfg(str(path)).KD.TEMPERATURE == 4.0
