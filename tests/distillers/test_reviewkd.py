"""ReviewKD built from mdistiller's yaml on real zoo models equals the ABF + HCL computation written out
independently; its state_dict has mdistiller's layout; its level lists are checked against the models."""
import os
import warnings

import pytest
import torch

from mdistiller.distillers import REVIEWKD, ModelOutput, build_distiller
from mdistiller.distillers.REVIEWKD import ABF
from mdistiller.engine.cfg import CFG
from mdistiller.models import imagenet_model_dict
from tests.helpers.feature_methods import (
    assert_grads_close, batch, bn_train, build, config, conv1x1, conv3x3, grads, load_with_extra, models, nearest,
    pool, step_and_features, student_params,
)
from tests.helpers.runutil import REPO

# resnet32x4 → ShuffleV1 with the level lists of that pair (ReviewKD's released CIFAR-100 settings)
SHUFFLE_V1 = [
    "REVIEWKD.IN_CHANNELS", "[240,480,960,960]", "REVIEWKD.SHAPES", "[1,4,8,16]",
    "REVIEWKD.OUT_CHANNELS", "[64,128,256,256]", "REVIEWKD.OUT_SHAPES", "[1,8,16,32]",
]
PAIRS = [("resnet32x4", "resnet8x4", ()), ("resnet32x4", "ShuffleV1", SHUFFLE_V1)]


def reference_abf(abf, x, y, shape, out_shape):
    x = bn_train(conv1x1(x, abf.conv1[0].weight), abf.conv1[1])
    if abf.att_conv is not None:
        y = nearest(y, shape)
        z = torch.sigmoid(conv1x1(torch.cat([x, y], dim=1), abf.att_conv[0].weight, abf.att_conv[0].bias))
        x = x * z[:, 0:1] + y * z[:, 1:2]
    if x.shape[-1] != out_shape:
        x = nearest(x, out_shape)
    return bn_train(conv3x3(x, abf.conv2[0].weight), abf.conv2[1]), x


def reference_hcl(fs, ft):
    h = fs.shape[-1]
    sizes = [h] + [l for l in (4, 2, 1) if l < h]
    weights = [0.5 ** i for i in range(len(sizes))]
    mse = [((pool(fs, k) - pool(ft, k)) ** 2).mean() for k in sizes]
    return sum(w * m for w, m in zip(weights, mse)) / sum(weights)


def reference_reviewkd(distiller, cfg, feats_s, feats_t):
    block = cfg.REVIEWKD
    maps = feats_s["preact_feats"] if block.STU_PREACT else feats_s["feats"]
    levels = maps + [feats_s["pooled_feat"][:, :, None, None]]
    levels = levels[::-1]  # deepest first, as the ABFs
    outs, residual = [], None
    for i, abf in enumerate(distiller.abfs):
        out, residual = reference_abf(abf, levels[i], residual, block.SHAPES[i], block.OUT_SHAPES[i])
        outs.insert(0, out)
    teacher = feats_t["preact_feats"][1:] + [feats_t["pooled_feat"][:, :, None, None]]
    return sum(reference_hcl(o, t.detach()) for o, t in zip(outs, teacher))


@pytest.mark.parametrize("teacher, student, opts", PAIRS)
def test_reviewkd_from_mdistiller_yaml_equals_formula(teacher, student, opts):
    cfg, distiller = build("configs/cifar100/reviewkd.yaml", teacher, student, opts, spread_bn=True)
    assert isinstance(distiller, REVIEWKD) and cfg.REVIEWKD.REVIEWKD_WEIGHT == 5.0 and cfg.REVIEWKD.WARMUP_EPOCHS == 20
    epoch = 5
    losses, feats_s, feats_t = step_and_features(distiller, cfg.REVIEWKD.CE_WEIGHT, epoch)
    expected = cfg.REVIEWKD.REVIEWKD_WEIGHT * (epoch / 20) * reference_reviewkd(distiller, cfg, feats_s, feats_t)
    assert losses["loss_kd"].item() == pytest.approx(expected.item(), rel=1e-4)
    params = student_params(distiller) + list(distiller.abfs.parameters())
    assert_grads_close(grads(losses["loss_kd"], params), grads(expected, params), rtol=1e-3)


def _abf_keys(i, c_in, mid, c_out, fuse):
    p = "abfs.{}.".format(i)
    keys = {p + "conv1.0.weight": (mid, c_in, 1, 1), p + "conv2.0.weight": (c_out, mid, 3, 3)}
    for conv, c in (("conv1", mid), ("conv2", c_out)):
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys["{}{}.1.{}".format(p, conv, name)] = (c,)
        keys["{}{}.1.num_batches_tracked".format(p, conv)] = ()
    if fuse:
        keys[p + "att_conv.0.weight"] = (2, 2 * mid, 1, 1)
        keys[p + "att_conv.0.bias"] = (2,)
    return keys


def test_reviewkd_state_dict_has_mdistillers_layout_and_loads_strictly():
    _, distiller = build("configs/cifar100/reviewkd.yaml", spread_bn=True)
    # abfs.0 is the deepest level (pooled feature, no fusion); IN/OUT_CHANNELS [64, 128, 256, 256], mid = 256
    shapes = {}
    for i, c in enumerate([256, 256, 128, 64]):
        shapes.update(_abf_keys(i, c, 256, c, fuse=i > 0))
    extra = {k: (torch.tensor(3) if s == () else torch.rand(s) + 0.5) for k, s in shapes.items()}
    load_with_extra(distiller, extra)
    params = [v for k, v in extra.items() if "running" not in k and "num_batches" not in k]
    assert distiller.get_extra_parameters() == sum(v.numel() for v in params)


def test_reviewkd_warmup():
    _, distiller = build("configs/cifar100/reviewkd.yaml", spread_bn=True)
    image, target = batch(n=4, seed=0)
    assert distiller.forward_train(image=image, target=target, epoch=0)[1]["loss_kd"].item() == 0.0
    distiller.eval()  # fixed BN statistics: the same fused maps at every epoch
    with torch.no_grad():
        s_logits, s_feats = distiller.student(image)
        t_logits, t_feats = distiller.teacher(image)
        s, t = ModelOutput(s_logits, s_feats), ModelOutput(t_logits, t_feats)
        full = distiller.distill_losses(s, t, target, 20)["loss_kd"]
        assert distiller.distill_losses(s, t, target, 40)["loss_kd"].item() == pytest.approx(full.item())
        assert distiller.distill_losses(s, t, target, 10)["loss_kd"].item() == pytest.approx(full.item() / 2)


def test_reviewkd_wrong_levels_name_the_right_ones():
    # mdistiller's defaults describe resnet8x4, not ShuffleV1
    cfg = config("configs/cifar100/reviewkd.yaml", "resnet32x4", "ShuffleV1")
    student, teacher = models(cfg, spread_bn=True)
    with pytest.raises(ValueError, match=r"IN_CHANNELS \[240, 480, 960, 960\], SHAPES \[1, 4, 8, 16\]"):
        build_distiller(cfg, student, teacher)


def test_reviewkd_imagenet_configs_build_with_mdistillers_abf_width():
    cfg = CFG.clone()
    cfg.merge_from_file(os.path.join(REPO, "configs", "imagenet", "r50_mv1", "reviewkd.yaml"))
    assert cfg.REVIEWKD.MAX_MID_CHANNEL == 256 and cfg.REVIEWKD.STU_PREACT
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distiller = build_distiller(cfg, imagenet_model_dict["MobileNetV1"](), imagenet_model_dict["ResNet50"]().eval())
    assert any("MAX_MID_CHANNEL=256 is not used" in str(w.message) for w in caught)
    # mdistiller: mid = min(512, IN_CHANNELS[-1]) = 512; abfs.0 ← 1024-channel pooled feature → 2048
    assert distiller.abfs[0].conv1[0].weight.shape == (512, 1024, 1, 1)
    assert distiller.abfs[0].conv2[0].weight.shape == (2048, 512, 3, 3) and distiller.abfs[0].att_conv is None
    assert distiller.abfs[4].conv1[0].weight.shape == (512, 128, 1, 1)
    assert distiller.abfs[4].att_conv[0].weight.shape == (2, 1024, 1, 1)


def test_abf_attention_is_the_1x1_conv_of_the_concatenated_maps_in_float64():
    torch.manual_seed(0)
    abf = ABF(8, 6, 5, fuse=True).double()
    x = torch.randn(3, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    got = abf.attention(x, y)
    expected = torch.sigmoid(conv1x1(torch.cat([x, y], dim=1), abf.att_conv[0].weight, abf.att_conv[0].bias))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    weights = torch.randn_like(got)
    params = [x, y, abf.att_conv[0].weight, abf.att_conv[0].bias]
    for g, e in zip(torch.autograd.grad((got * weights).sum(), params),
                    torch.autograd.grad((expected * weights).sum(), params)):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)
