"""VID built from mdistiller's yaml on real zoo models equals the Gaussian NLL computed independently;
its state_dict has mdistiller's layout (regressors only)."""
import math

import pytest
import torch

from mdistiller.distillers import VID
from tests.helpers.feature_reference import (
    assert_grads_close, batch, build, check_ce, conv1x1, grads, pool, student_params,
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


@pytest.mark.parametrize("teacher, student", PAIRS)
def test_vid_from_mdistiller_yaml_equals_formula(teacher, student):
    cfg, distiller = build("vid", teacher, student)
    assert isinstance(distiller, VID) and (cfg.VID.EPS, cfg.VID.INIT_PRED_VAR) == (1e-5, 5.0)
    image, target = batch()
    logits, losses = distiller.forward_train(image=image, target=target, epoch=1)
    assert list(losses) == ["loss_ce", "loss_kd"]
    check_ce(cfg.VID.LOSS.CE_WEIGHT, logits, target, losses)

    _, feats_s = distiller.student(image)
    with torch.no_grad():
        _, feats_t = distiller.teacher(image)
    assert len(distiller.regressors) == len(feats_s["feats"]) - 1
    reference = reference_vid(distiller, feats_s["feats"], feats_t["feats"], cfg.VID.INIT_PRED_VAR)
    expected = cfg.VID.LOSS.FEAT_WEIGHT * reference
    assert losses["loss_kd"].item() == pytest.approx(expected.item(), rel=1e-5)
    params = student_params(distiller) + list(distiller.regressors.parameters())
    assert_grads_close(grads(losses["loss_kd"], params), grads(expected.float(), params))


def test_vid_state_dict_has_mdistillers_layout_and_loads_strictly():
    _, distiller = build("vid")
    # resnet8x4 / resnet32x4: feats[1:] have 64, 128, 256 channels on both sides
    extra = {}
    for i, (c_s, c_t) in enumerate([(64, 64), (128, 128), (256, 256)]):
        extra["regressors.{}.0.weight".format(i)] = torch.randn(c_t, c_s, 1, 1)
        extra["regressors.{}.2.weight".format(i)] = torch.randn(c_t, c_t, 1, 1)
        extra["regressors.{}.4.weight".format(i)] = torch.randn(c_t, c_t, 1, 1)
    saved = {"student." + k: v.clone() for k, v in distiller.student.state_dict().items()}
    saved.update({"teacher." + k: v.clone() for k, v in distiller.teacher.state_dict().items()})
    saved.update(extra)
    distiller.load_state_dict(saved, strict=True)
    assert set(distiller.state_dict()) == set(saved)
    for key, value in extra.items():
        assert torch.equal(distiller.state_dict()[key], value)
    assert distiller.get_extra_parameters() == sum(v.numel() for v in extra.values())


def test_vid_variances_are_constant_buffers():
    cfg, distiller = build("vid")
    learnable = {id(p) for p in distiller.get_learnable_parameters()}
    for log_scale, c in zip(distiller.log_scales, (64, 128, 256)):
        assert log_scale.shape == (c,) and id(log_scale) not in learnable and not log_scale.requires_grad
        assert torch.allclose(torch.log1p(torch.exp(log_scale)) + cfg.VID.EPS, torch.full((c,), 5.0))
    assert not any("log_scale" in k for k in distiller.state_dict())
