"""VID built from mdistiller's yaml on real zoo models equals the Gaussian NLL computed independently;
its state_dict has mdistiller's layout (regressors only)."""
import math

import pytest
import torch

from mdistiller.distillers import VID
from tests.helpers.feature_methods import (
    assert_grads_close, build, conv1x1, grads, load_with_extra, pool, step_and_features, student_params,
)

PAIRS = [("resnet32x4", "resnet8x4"), ("vgg13", "MobileNetV2")]


def reference_vid(distiller, feats_s, feats_t, init_var):
    """Σ_stages mean −log N(t; μ(s), σ²) + ½ log 2π, with μ = the distiller's regressor weights applied by einsum
    and σ² = INIT_PRED_VAR on every channel (mdistiller never updates it)."""
    total = 0.0
    for regressor, f_s, f_t in zip(distiller.regressors, feats_s[1:], feats_t[1:]):
        if f_s.shape[2] > f_t.shape[2]:
            f_s = pool(f_s, f_t.shape[2])
        elif f_s.shape[2] < f_t.shape[2]:
            f_t = pool(f_t, f_s.shape[2])
        h = torch.relu(conv1x1(f_s, regressor[0].weight))
        h = torch.relu(conv1x1(h, regressor[2].weight))
        mean = conv1x1(h, regressor[4].weight)
        std = math.sqrt(init_var)
        log_prob = torch.distributions.Normal(mean.double(), std).log_prob(f_t.double().detach())
        nll = -log_prob - 0.5 * math.log(2 * math.pi)
        total = total + nll.mean()
    return total


@pytest.mark.numerics
@pytest.mark.parametrize("teacher, student", PAIRS)
def test_vid_from_mdistiller_yaml_equals_formula(teacher, student):
    cfg, distiller = build("configs/cifar100/vid.yaml", teacher, student, spread_bn=True)
    assert isinstance(distiller, VID) and (cfg.VID.EPS, cfg.VID.INIT_PRED_VAR) == (1e-5, 5.0)
    losses, feats_s, feats_t = step_and_features(distiller, cfg.VID.LOSS.CE_WEIGHT)
    assert len(distiller.regressors) == len(feats_s["feats"]) - 1
    reference = reference_vid(distiller, feats_s["feats"], feats_t["feats"], cfg.VID.INIT_PRED_VAR)
    expected = cfg.VID.LOSS.FEAT_WEIGHT * reference
    assert losses["loss_kd"].item() == pytest.approx(expected.item(), rel=1e-5)
    params = student_params(distiller) + list(distiller.regressors.parameters())
    assert_grads_close(grads(losses["loss_kd"], params), grads(expected.float(), params))


def test_vid_state_dict_has_mdistillers_layout_and_loads_strictly():
    _, distiller = build("configs/cifar100/vid.yaml", spread_bn=True)
    # resnet8x4 / resnet32x4: feats[1:] have 64, 128, 256 channels on both sides
    extra = {}
    for i, (c_s, c_t) in enumerate([(64, 64), (128, 128), (256, 256)]):
        extra["regressors.{}.0.weight".format(i)] = torch.randn(c_t, c_s, 1, 1)
        extra["regressors.{}.2.weight".format(i)] = torch.randn(c_t, c_t, 1, 1)
        extra["regressors.{}.4.weight".format(i)] = torch.randn(c_t, c_t, 1, 1)
    load_with_extra(distiller, extra)
    assert distiller.get_extra_parameters() == sum(v.numel() for v in extra.values())


def test_vid_variances_are_constant_buffers():
    cfg, distiller = build("configs/cifar100/vid.yaml", spread_bn=True)
    learnable = {id(p) for p in distiller.get_learnable_parameters()}
    for log_scale, c in zip(distiller.log_scales, (64, 128, 256)):
        assert log_scale.shape == (c,) and id(log_scale) not in learnable and not log_scale.requires_grad
        assert torch.allclose(torch.log1p(torch.exp(log_scale)) + cfg.VID.EPS, torch.full((c,), 5.0))
    assert not any("log_scale" in k for k in distiller.state_dict())
