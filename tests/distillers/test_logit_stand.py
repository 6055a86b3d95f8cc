"""EXPERIMENT.LOGIT_STAND (Sun et al. CVPR 2024): KD and DKD computed on z-scored logits."""
import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers import build_distiller
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.diagnostics import AlignmentDiagnostics
from mdistiller.models import cifar_model_dict
from tests.helpers.distill_inputs import zoo_pair
from tests.helpers.loss_reference import zscore


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
