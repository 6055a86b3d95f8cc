"""OFD built from mdistiller's yaml on real zoo models equals the margin / partial-L2 formula computed
independently; its state_dict has mdistiller's layout; the teacher trains in train mode as in mdistiller."""
import os

import pytest
import torch
from scipy.stats import norm, truncnorm

from mdistiller.distillers import OFD, build_distiller
from mdistiller.engine.cfg import CFG
from mdistiller.models import imagenet_model_dict
from tests.helpers.feature_methods import (
    assert_grads_close, batch, bn_train, build, grads, load_with_extra, pool, step_and_features, student_params,
)
from tests.helpers.runutil import REPO

# resnet32x4 → ShuffleV2 is the one cross-architecture pair mdistiller's OFD runs on (docs/methods.md (OFD))
PAIRS = [("resnet32x4", "resnet8x4"), ("resnet32x4", "ShuffleV2")]


def truncated_mean(bn):
    """E[x | x < 0] for x ~ N(β, γ²) per channel (scipy's truncated normal), −3|γ| when P(x < 0) ≤ 0.001."""
    out = []
    for gamma, beta in zip(bn.weight.tolist(), bn.bias.tolist()):
        s = abs(gamma)
        if norm.cdf(0.0, loc=beta, scale=s) > 0.001:
            out.append(truncnorm.mean(-float("inf"), -beta / s, loc=beta, scale=s))
        else:
            out.append(-3 * s)
    return torch.tensor(out, dtype=torch.float32).view(1, -1, 1, 1)


def reference_ofd(distiller, pre_s, pre_t, margins):
    """Σ_i 2^{-(k-1-i)} · mean_n Σ_{c,h,w} d_p(max(t, m), BN(conv1x1(s))) over the last k stages."""
    k = len(margins)
    total = 0.0
    for i, (connector, f_s, f_t, m) in enumerate(zip(distiller.connectors.connectors, pre_s[-k:], pre_t[-k:], margins)):
        conv, bn = connector[0], connector[1]
        s = bn_train(torch.einsum("oi,nihw->nohw", conv.weight[:, :, 0, 0], f_s), bn)
        t = pool(f_t.detach(), s.shape[-1])
        target = torch.maximum(t, m.expand_as(t))
        skip = (s <= target) & (target <= 0)
        d = torch.where(skip, torch.zeros_like(s), (target - s) ** 2).sum(dim=(1, 2, 3)).mean()
        total = total + d / 2 ** (k - 1 - i)
    return total


@pytest.mark.parametrize("teacher, student", PAIRS)
def test_ofd_from_mdistiller_yaml_equals_formula(teacher, student):
    cfg, distiller = build("configs/cifar100/ofd.yaml", teacher, student, spread_bn=True)
    assert isinstance(distiller, OFD) and cfg.OFD.LOSS.FEAT_WEIGHT == 0.001 and cfg.OFD.CONNECTOR.KERNEL_SIZE == 1
    assert distiller.teacher.training, "mdistiller's OFD keeps the teacher in train mode"
    bns = distiller.teacher.get_bn_before_relu()
    assert distiller.num_stages == 3 == len(bns)
    margins = [truncated_mean(bn) for bn in bns]
    for got, expected in zip(distiller.margins, margins):
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)

    # the teacher in train mode: the features below have batch statistics, as in the distiller's forward
    losses, feats_s, feats_t = step_and_features(distiller, cfg.OFD.LOSS.CE_WEIGHT)
    expected = cfg.OFD.LOSS.FEAT_WEIGHT * reference_ofd(
        distiller, feats_s["preact_feats"][1:], feats_t["preact_feats"][1:], margins
    )
    assert losses["loss_kd"].item() == pytest.approx(expected.item(), rel=1e-4)
    params = student_params(distiller) + list(distiller.connectors.parameters())
    assert_grads_close(grads(losses["loss_kd"], params), grads(expected, params), rtol=1e-3)


def test_ofd_teacher_statistics_move_in_training_and_modes_follow():
    _, distiller = build("configs/cifar100/ofd.yaml", spread_bn=True)
    bn = distiller.teacher.get_bn_before_relu()[0]
    before = bn.running_mean.clone()
    image, target = batch(n=4, seed=0)
    distiller.forward_train(image=image, target=target, epoch=1)
    assert not torch.equal(before, bn.running_mean)
    assert all(p.grad is None for p in distiller.teacher.parameters())
    distiller.eval()
    assert not distiller.teacher.training and not distiller.student.training and not distiller.connectors.training
    distiller.train()
    assert distiller.teacher.training and distiller.connectors.training


def test_ofd_state_dict_has_mdistillers_layout_and_loads_strictly():
    _, distiller = build("configs/cifar100/ofd.yaml", spread_bn=True)
    extra = {}
    for i, (c_s, c_t) in enumerate([(64, 64), (128, 128), (256, 256)]):  # resnet8x4 → resnet32x4 stages 1-3
        prefix = "connectors.connectors.{}.".format(i)
        extra[prefix + "0.weight"] = torch.randn(c_t, c_s, 1, 1)
        for name in ("weight", "bias", "running_mean"):
            extra[prefix + "1." + name] = torch.randn(c_t)
        extra[prefix + "1.running_var"] = torch.rand(c_t) + 0.5
        extra[prefix + "1.num_batches_tracked"] = torch.tensor(7)
    load_with_extra(distiller, extra)


def test_ofd_runs_on_pairs_mdistiller_cannot_build():
    # mdistiller: MobileNetV2 returns no preact_feats (KeyError); here 4 stages with per-stage margins
    cfg, distiller = build("configs/cifar100/ofd.yaml", "vgg13", "MobileNetV2", spread_bn=True)
    assert distiller.num_stages == 4
    assert [c[0].weight.shape[:2] for c in distiller.connectors.connectors] == [
        (128, 12), (256, 16), (512, 48), (512, 160)
    ]
    image, target = batch(n=4, seed=0)
    _, losses = distiller.forward_train(image=image, target=target, epoch=1)
    assert torch.isfinite(losses["loss_kd"])


def test_ofd_imagenet_config_builds_mdistillers_three_stages():
    cfg = CFG.clone()
    cfg.merge_from_file(os.path.join(REPO, "configs", "imagenet", "r50_mv1", "ofd.yaml"))
    assert cfg.OFD.LOSS.FEAT_WEIGHT == 0.0001
    distiller = build_distiller(cfg, imagenet_model_dict["MobileNetV1"](), imagenet_model_dict["ResNet50"]().eval())
    shapes = [tuple(c[0].weight.shape[:2]) for c in distiller.connectors.connectors]
    assert shapes == [(512, 256), (1024, 512), (2048, 1024)]
    assert [m.shape[1] for m in distiller.margins] == [512, 1024, 2048]
