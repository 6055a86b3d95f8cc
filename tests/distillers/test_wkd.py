"""The WKD distiller: its losses are the formulas of mdistiller.losses.wkd, parts by weight, the cost from a file
or the teacher, the checkpoint layout of the release, logit standardization, the cost-matrix tool, the shipped
configs (merge + one real training step)."""
import math
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller import cost_matrix
from mdistiller.distillers import build_distiller, distiller_dict
from mdistiller.distillers._common import ConvReg, ConvRegBottleNeck
from mdistiller.engine.cfg import get_cfg
from mdistiller.models import cifar_model_dict
from mdistiller.losses.class_cost import fc_cost_matrix, load_cost_matrix, prepare_cost_matrix
from mdistiller.losses.schedules import cosine_decay_weight
from mdistiller.losses.wkd import wkd_feature_parts, wkd_logit_parts
from tests.helpers.distill_inputs import raw_cost, zoo_pair
from tests.helpers.loss_reference import wkd_nontarget_reference, zscore
from tests.helpers.runutil import REPO, random_teacher_ckpt, tiny_opts

REG, ITERS = 0.05, 10


# ----------------------------------------------------------------------------- projectors


@pytest.mark.parametrize("s_hw,t_hw", [(8, 8), (8, 4), (4, 8), (9, 8)])
@pytest.mark.parametrize("kind", [ConvReg, ConvRegBottleNeck])
def test_projectors_map_student_to_teacher_shape(kind, s_hw, t_hw):
    proj = kind((2, 6, s_hw, s_hw), (2, 5, t_hw, t_hw))
    out = proj(torch.randn(2, 6, s_hw, s_hw))
    assert out.shape == (2, 5, t_hw, t_hw)
    assert (out >= 0).all()  # BN + ReLU last
    if kind is ConvRegBottleNeck:
        assert proj.conv1.out_channels == 256


# ----------------------------------------------------------------------------- the distiller


class TinyNet(nn.Module):
    """(logits, {"feats": [...]}) with a last stage of the given size."""

    def __init__(self, channels, size, classes=7):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Conv2d(4, channels, 3, padding=1)
        self.size = size
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        a = F.relu(self.stem(x))
        b = F.relu(F.adaptive_avg_pool2d(self.body(a), self.size))
        pooled = b.mean((2, 3))
        return self.fc(pooled), {"feats": [a, b], "preact_feats": [a, b], "pooled_feat": pooled}


def tiny_cfg(**opts):
    base = {
        "DISTILLER.TYPE": "WKD", "DATASET.TYPE": "digits", "SOLVER.EPOCHS": "10", "WKD.COST_MATRIX": "fc",
        "WKD.HINT_LAYER": "-1", "WKD.LOSS.COSINE_DECAY_EPOCH": "4", "WKD.LOSS.WKD_LOGIT_WEIGHT": "5.0",
        "WKD.LOSS.WKD_FEAT_WEIGHT": "0.5", "WKD.SPATIAL_GRID": "2", "WKD.TEMPERATURE": "3.0",
    }
    base.update(opts)
    return get_cfg(None, [x for kv in base.items() for x in kv])


@pytest.mark.parametrize("projector", ["conv1x1", "bottleneck"])
def test_distiller_losses_are_the_formulas(projector):
    torch.manual_seed(0)
    student, teacher = TinyNet(6, 4), TinyNet(5, 8)
    d = build_distiller(tiny_cfg(**{"WKD.PROJECTOR": projector}), student, teacher)
    assert isinstance(d, distiller_dict["WKD"])
    d.train()
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 7, (4,))
    for epoch in (1, 7, 10):
        _, losses = d(image=x, target=y, epoch=epoch)
        assert set(losses) == {"loss_ce", "loss_kd", "loss_feat"}
        zs, out_s = student(x)
        zt, out_t = teacher(x)
        cost = prepare_cost_matrix(fc_cost_matrix(teacher), 1.0)
        loss_t, w = wkd_logit_parts(zs, zt.detach(), y, cost, 3.0, REG, ITERS)
        gamma = cosine_decay_weight(5.0, epoch, 4, 10)
        torch.testing.assert_close(losses["loss_kd"], loss_t + gamma * w, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(losses["loss_ce"], F.cross_entropy(zs, y))
        mean_loss, cov_loss = wkd_feature_parts(d.conv_reg(out_s["feats"][-1]), out_t["feats"][-1].detach(), 1e-5, 2)
        feat = cosine_decay_weight(0.5, epoch, 4, 10) * (2.0 * mean_loss + cov_loss)
        torch.testing.assert_close(losses["loss_feat"], feat, rtol=1e-5, atol=1e-6)
    # the cost matrix is derived from the config and the teacher: a buffer outside the state_dict (issue 10)
    assert d.cost_matrix.shape == (7, 7) and "cost_matrix" not in d.state_dict()
    sum(losses.values()).backward()
    assert teacher.fc.weight.grad is None and student.fc.weight.grad is not None


def test_parts_switch_on_by_weight_and_cost_from_file(tmp_path):
    torch.manual_seed(0)
    student, teacher = TinyNet(6, 4), TinyNet(5, 4)
    raw = raw_cost(7, dtype=torch.float32)
    torch.save(raw, tmp_path / "linear_cka.pth")
    d = build_distiller(tiny_cfg(**{"WKD.LOSS.WKD_FEAT_WEIGHT": "0.0", "WKD.COST_MATRIX": "cka",
                                    "WKD.COST_MATRIX_PATH": str(tmp_path / "linear_cka.pth"),
                                    "WKD.COST_MATRIX_SHARPEN": "2.0"}), student, teacher)
    assert not hasattr(d, "conv_reg")
    torch.testing.assert_close(d.cost_matrix, prepare_cost_matrix(raw, 2.0))
    _, losses = d.train()(image=torch.randn(2, 3, 8, 8), target=torch.tensor([1, 2]), epoch=1)
    assert set(losses) == {"loss_ce", "loss_kd"}
    d = build_distiller(tiny_cfg(**{"WKD.LOSS.WKD_LOGIT_WEIGHT": "0.0"}), student, teacher)
    _, losses = d.train()(image=torch.randn(2, 3, 8, 8), target=torch.tensor([1, 2]), epoch=1)
    assert float(losses["loss_kd"]) == 0.0 and "loss_feat" in losses
    with pytest.raises(FileNotFoundError, match="mdistiller-download cost-matrices"):
        build_distiller(tiny_cfg(**{"WKD.COST_MATRIX": "cka", "WKD.COST_MATRIX_PATH": str(tmp_path / "x.pth")}),
                        student, teacher)


# ----------------------------------------------------------------------------- checkpoints

# The release's distiller holds the student, the teacher and, with WKD-F on, the projector `conv_reg`; its
# cost matrix is a plain attribute. Projector submodules as released (mdistiller/distillers/_common.py there).
RELEASE_PROJECTOR_KEYS = {
    "conv1x1": ["conv.weight", "conv.bias"],
    "bottleneck": ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias"],
}
BN_KEYS = ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]


def release_layout(student, teacher, projector=None):
    """The key set of a released WKD/WKL ``latest``/``best`` file's ``model`` entry (no DataParallel prefix)."""
    keys = {"student." + k for k in student.state_dict()} | {"teacher." + k for k in teacher.state_dict()}
    if projector is not None:
        keys |= {"conv_reg." + k for k in RELEASE_PROJECTOR_KEYS[projector] + BN_KEYS}
    return keys


CHECKPOINT_CASES = {
    "WKD-L": ("WKD", {"WKD.LOSS.WKD_FEAT_WEIGHT": "0.0"}, None),
    "WKD-F-conv1x1": ("WKD", {"WKD.LOSS.WKD_LOGIT_WEIGHT": "0.0", "WKD.PROJECTOR": "conv1x1"}, "conv1x1"),
    "WKD-L+F-bottleneck": ("WKD", {"WKD.PROJECTOR": "bottleneck"}, "bottleneck"),
    "WKL": ("WKL", {"WKD.LOSS.WKD_FEAT_WEIGHT": "0.0"}, None),
    "WKL-feat": ("WKL", {"WKD.PROJECTOR": "conv1x1", "WKL.FEAT_KL_WEIGHT": "0.04"}, "conv1x1"),
}


def checkpoint_cfg(kind, opts):
    base = {"DISTILLER.TYPE": kind, "DATASET.TYPE": "digits", "WKD.COST_MATRIX": "fc", "WKD.HINT_LAYER": "-1",
            "WKD.SPATIAL_GRID": "2"}
    base.update(opts)
    return get_cfg(None, [x for kv in base.items() for x in kv])


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_release_checkpoint_layout_loads_strictly(case):
    kind, opts, projector = CHECKPOINT_CASES[case]
    cfg = checkpoint_cfg(kind, opts)
    d = build_distiller(cfg, *zoo_pair("resnet8", "resnet14"))
    expected = release_layout(d.student, d.teacher, projector)
    assert set(d.state_dict()) == expected
    # a "released" state dict: the documented keys, other values
    other = build_distiller(cfg, *zoo_pair("resnet8", "resnet14", seed=1))
    released = {k: v for k, v in other.state_dict().items() if k in expected}
    assert set(released) == expected
    cost = d.cost_matrix.clone() if d.enable_wkdl else None
    result = d.load_state_dict(released, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in d.state_dict().items():
        assert torch.equal(value, released[key]), key
    if cost is not None:  # derived from the config and the (now loaded) teacher's classifier, not from the file
        assert torch.equal(d.cost_matrix, cost)


@pytest.mark.parametrize("kind", ["WKD", "WKL"])
def test_old_checkpoint_with_cost_matrix_loads_and_ignores_it(kind, tmp_path):
    cfg = checkpoint_cfg(kind, {"WKD.LOSS.WKD_FEAT_WEIGHT": "0.0"})
    d = build_distiller(cfg, *zoo_pair("resnet8", "resnet14"))
    cost = d.cost_matrix.clone()
    old = dict(build_distiller(cfg, *zoo_pair("resnet8", "resnet14", seed=1)).state_dict())
    old["cost_matrix"] = torch.full_like(cost, 7.0)  # what this project's checkpoints stored before
    torch.save({"model": old}, tmp_path / "latest")
    state = torch.load(tmp_path / "latest", weights_only=True)["model"]
    result = d.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(d.cost_matrix, cost)
    assert "cost_matrix" in state  # the caller's dict is not modified
    assert torch.equal(d.student.fc.weight, old["student.fc.weight"])


# ----------------------------------------------------------------------------- logit standardization


def ref_target_term(zs, zt, y):
    """−mean_b p_t[y_b]·log p_s[y_b] at T = 1, the teacher's factor detached."""
    return -torch.stack([F.softmax(zt[b], 0)[y[b]].detach() * F.log_softmax(zs[b], 0)[y[b]]
                         for b in range(zs.shape[0])]).mean()


def ls_logits(seed=4):
    g = torch.Generator().manual_seed(seed)
    zs = (3 * torch.randn(5, 10, generator=g, dtype=torch.float64) + 1).requires_grad_(True)
    zt = 5 * torch.randn(5, 10, generator=g, dtype=torch.float64) - 2
    return zs, zt, torch.tensor([0, 3, 9, 3, 5])


def test_wkd_l_logit_standardization_against_independent_formula():
    assert distiller_dict["WKD"].LOGIT_STANDARDIZATION and distiller_dict["WKL"].LOGIT_STANDARDIZATION
    opts = {"WKD.LOSS.WKD_FEAT_WEIGHT": "0.0", "WKD.LOSS.WKD_LOGIT_WEIGHT": "30.0", "WKD.TEMPERATURE": "2.0",
            "WKD.LOSS.COSINE_DECAY_EPOCH": "0", "SOLVER.EPOCHS": "10"}
    d = build_distiller(checkpoint_cfg("WKD", dict(opts, **{"EXPERIMENT.LOGIT_STAND": "True"})),
                        *zoo_pair("resnet8", "resnet14"))
    assert d.logit_stand
    zs, zt, y = ls_logits()
    cost = d.cost_matrix.double()
    gamma = 0.5 * 30.0 * (1 + math.cos(math.pi * 3 / 10))
    # L_t on the raw logits, the non-target distributions from z-scored logits
    expected = ref_target_term(zs, zt, y) + gamma * wkd_nontarget_reference(
        zscore(zs), zscore(zt), y, cost, 2.0, REG, ITERS)
    ours = d.logit_loss(zs, zt, y, 3)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(ours, zs)[0], torch.autograd.grad(expected, zs)[0],
                               rtol=1e-8, atol=1e-12)
    # not the same as standardizing L_t too, nor as no standardization
    everything = ref_target_term(zscore(zs), zscore(zt), y) + gamma * wkd_nontarget_reference(
        zscore(zs), zscore(zt), y, cost, 2.0, REG, ITERS)
    assert not torch.allclose(ours, everything)
    plain = build_distiller(checkpoint_cfg("WKD", opts), d.student, d.teacher)
    assert not plain.logit_stand
    raw = ref_target_term(zs, zt, y) + gamma * wkd_nontarget_reference(zs, zt, y, cost, 2.0, REG, ITERS)
    torch.testing.assert_close(plain.logit_loss(zs, zt, y, 3), raw, rtol=1e-10, atol=1e-12)
    # forward_train goes through the same logit term
    d.train()
    x, target = torch.randn(4, 3, 32, 32), torch.tensor([1, 2, 3, 4])
    _, losses = d(image=x, target=target, epoch=3)
    with torch.no_grad():
        s = d.student(x)[0]
        t = d.teacher(x)[0]
        torch.testing.assert_close(losses["loss_kd"], d.logit_loss(s, t, target, 3))


# ----------------------------------------------------------------------------- the cost-matrix tool


@pytest.mark.parametrize("method", ["cka", "fc"])
def test_cost_matrix_tool_on_digits(tmp_path, method):
    ckpt = random_teacher_ckpt(tmp_path / "t.pth", name="resnet8", num_classes=10)
    out = tmp_path / "wkd_cost_matrix" / "digits" / "resnet8" / "{}.pth".format(method)
    cost_matrix.main(["--teacher", "resnet8", "--ckpt", ckpt, "--dataset", "digits", "--method", method,
                      "--out", str(out), "--max-per-class", "8", "--device", "cpu", "--opts", "DATASET.NUM_WORKERS", "0"])
    dist = load_cost_matrix(str(out))
    assert dist.shape == (10, 10)
    torch.testing.assert_close(dist, dist.t(), rtol=0, atol=0)
    assert (dist.diagonal() == 0).all()
    off = dist[~torch.eye(10, dtype=torch.bool)]
    assert (off > 0).all() and (off <= 2).all()
    assert cost_matrix.default_output("cifar100", "resnet32x4", "cka", "feature") == os.path.join(
        "wkd_cost_matrix", "cifar100", "resnet32x4", "linear_cka.pth")
    assert cost_matrix.default_output("imagenet", "ResNet34", "cka", "logit").endswith("logit_linear_cka.pth")


# ----------------------------------------------------------------------------- configs

CONFIGS = {
    # path: (logit weight, feat weight, T, sharpen, decay epoch, ratio, projector, grid)
    "configs/cifar100/wkd_l/res32x4_res8x4.yaml": (600.0, 0.0, 8.0, 1.0, 150, None, None, None),
    "configs/cifar100/wkd_l/wrn40_2_shuv1.yaml": (200.0, 0.0, 6.0, 1.0, 150, None, None, None),
    "configs/cifar100/wkd_f/res32x4_res8x4.yaml": (0.0, 0.08, None, None, 150, 4.0, "conv1x1", 1),
    "configs/cifar100/wkd_f/wrn40_2_shuv1.yaml": (0.0, 0.3, None, None, 150, 3.0, "conv1x1", 4),
    "configs/cifar100/wkd_lf/res32x4_res8x4.yaml": (200.0, 0.08, 8.0, 1.0, 150, 8.0, "conv1x1", 1),
    "configs/cifar100/wkd_lf/wrn40_2_shuv1.yaml": (60.0, 0.5, 4.0, 1.0, 150, 3.0, "conv1x1", 4),
    "configs/imagenet/r34_r18/wkd_l.yaml": (30.0, 0.0, 2.0, 1.0, 0, None, None, None),
    "configs/imagenet/r34_r18/wkd_f.yaml": (0.0, 0.02, None, None, 0, 2.0, "bottleneck", 4),
    "configs/imagenet/r34_r18/wkd_lf.yaml": (10.0, 1.0, 2.0, 1.0, 0, 2.0, "bottleneck", 4),
    "configs/imagenet/r50_mv1/wkd_l.yaml": (25.0, 0.0, 2.0, 2.0, 0, None, None, None),
    "configs/imagenet/r50_mv1/wkd_f.yaml": (0.0, 0.005, None, None, 30, 2.0, "bottleneck", 4),
    "configs/imagenet/r50_mv1/wkd_lf.yaml": (25.0, 0.005, 2.0, 2.0, 0, 2.0, "bottleneck", 4),
}


@pytest.mark.parametrize("path", sorted(CONFIGS))
def test_config_merges_with_official_values(path):
    cfg = get_cfg(os.path.join(REPO, path))
    logit_w, feat_w, T, sharpen, decay, ratio, projector, grid = CONFIGS[path]
    assert cfg.DISTILLER.TYPE == "WKD" and cfg.SOLVER.NESTEROV is True and cfg.SOLVER.AMP is True
    w = cfg.WKD
    assert (w.LOSS.WKD_LOGIT_WEIGHT, w.LOSS.WKD_FEAT_WEIGHT, w.LOSS.COSINE_DECAY_EPOCH) == (logit_w, feat_w, decay)
    assert isinstance(w.LOSS.WKD_LOGIT_WEIGHT, float) and w.SINKHORN.LAMBDA == 0.05 and w.SINKHORN.ITER == 10
    if logit_w > 0:
        assert (w.TEMPERATURE, w.COST_MATRIX_SHARPEN, w.COST_MATRIX) == (T, sharpen, "cka")
        teacher = cfg.DISTILLER.TEACHER
        name = "logit_linear_cka" if cfg.DATASET.TYPE == "imagenet" else "linear_cka"
        assert w.COST_MATRIX_PATH == "wkd_cost_matrix/{}/{}/{}.pth".format(cfg.DATASET.TYPE, teacher, name)
    if feat_w > 0:
        assert (w.MEAN_COV_RATIO, w.PROJECTOR, w.SPATIAL_GRID, w.HINT_LAYER % 5 if w.HINT_LAYER > 0 else -1) == (
            ratio, projector, grid, 4 if w.HINT_LAYER > 0 else -1)
    assert tuple(w.INPUT_SIZE) in ((32, 32), (224, 224))


CIFAR_CONFIGS = sorted(p for p in CONFIGS if p.startswith("configs/cifar100"))


@pytest.mark.parametrize("path", CIFAR_CONFIGS)
def test_cifar_config_trains_a_step_on_digits(tmp_path, path):
    """The real trainer, the config's models (10 classes), a random teacher, COST_MATRIX fc: one SGD step."""
    from mdistiller.engine.meters import DeviceMeters
    from mdistiller.engine.trainer import Trainer

    teacher_name = get_cfg(os.path.join(REPO, path)).DISTILLER.TEACHER
    ckpt = random_teacher_ckpt(tmp_path / "teacher.pth", name=teacher_name, num_classes=10)
    opts = tiny_opts(tmp_path, batch=4, size=32) + ["DISTILLER.TEACHER_CKPT", ckpt, "WKD.COST_MATRIX", "fc",
                                           "LOG.DIAGNOSTICS", "False"]
    cfg = get_cfg(os.path.join(REPO, path), opts)
    trainer = Trainer(cfg, str(tmp_path / "run"))
    model = trainer.distiller
    before = [p.detach().clone() for p in model.student.parameters()]
    model.train()
    batch = next(iter(trainer.train_loader))
    meters = DeviceMeters(trainer.device)
    trainer.train_step(batch, 1, 0, meters)
    (loss,) = meters.averages("loss")
    assert math.isfinite(loss)
    parts = set(meters.term_names)
    assert parts >= {"loss_ce", "loss_kd"}
    assert ("loss_feat" in parts) == (cfg.WKD.LOSS.WKD_FEAT_WEIGHT > 0)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.student.parameters()))


@pytest.mark.parametrize("pair", ["r34_r18", "r50_mv1"])
def test_imagenet_configs_forward_backward(pair):
    """ImageNet zoo models (random init, COST_MATRIX fc) on 2 images of 160x160 (last stage 5x5, so the 4x4 grid
    has 2x2 windows): the WKD-L+F config's losses on one forward of each network, backward through the student
    and projector; the WKD-L and WKD-F configs' distillers are evaluated on the same outputs. The projector-shape dry forward runs at the same 160x160 instead of 224x224
    (same spatial ratio student/teacher, so the same projector) to keep the test fast."""
    from mdistiller.engine.build import build_model

    torch.manual_seed(0)
    opts = ["WKD.COST_MATRIX", "fc", "WKD.INPUT_SIZE", "(160, 160)"]
    cfgs = {kind: get_cfg(os.path.join(REPO, "configs/imagenet/{}/{}.yaml".format(pair, kind)), opts)
            for kind in ("wkd_lf", "wkd_l", "wkd_f")}
    student = build_model(cfgs["wkd_lf"].DISTILLER.STUDENT, "imagenet", 1000)
    teacher = build_model(cfgs["wkd_lf"].DISTILLER.TEACHER, "imagenet", 1000).eval()
    distillers = {kind: build_distiller(cfg, student, teacher).train() for kind, cfg in cfgs.items()}
    assert isinstance(distillers["wkd_lf"].conv_reg, ConvRegBottleNeck)
    x, y = torch.randn(2, 3, 160, 160), torch.tensor([3, 999])
    # one forward of each network (forward_train itself is covered above with small models)
    zs, out_s = student(x)
    with torch.no_grad():
        zt, out_t = teacher(x)
    hint = cfgs["wkd_lf"].WKD.HINT_LAYER
    lf = distillers["wkd_lf"]
    loss_kd = lf.logit_loss(zs, zt, y, 1)
    loss_feat = lf.feature_loss(out_s["feats"][hint], out_t["feats"][hint], 1)
    with torch.no_grad():
        assert torch.isfinite(distillers["wkd_l"].logit_loss(zs, zt, y, 1))
        hint_f = cfgs["wkd_f"].WKD.HINT_LAYER
        assert torch.isfinite(distillers["wkd_f"].feature_loss(out_s["feats"][hint_f], out_t["feats"][hint_f], 1))
    total = F.cross_entropy(zs, y) + loss_kd + loss_feat
    assert torch.isfinite(total) and float(loss_feat.detach()) > 0
    total.backward()
    assert all(p.grad is not None for p in lf.conv_reg.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_bad_hint_layer_or_grid_fails_clearly():
    from mdistiller.distillers.WKD import WKD
    from mdistiller.engine.cfg import get_cfg
    from mdistiller.models import cifar_model_dict

    student = cifar_model_dict["resnet8"][0](num_classes=10)
    teacher = cifar_model_dict["resnet14"][0](num_classes=10)
    base = ["DATASET.TYPE", "digits", "WKD.COST_MATRIX", "fc", "WKD.LOSS.WKD_LOGIT_WEIGHT", "0"]
    with pytest.raises(ValueError, match="HINT_LAYER 4 is out of range"):
        WKD(student, teacher, get_cfg(None, base + ["WKD.HINT_LAYER", "4"]))
    # resnet feats[3] is 8x8 at 32x32 input: an 8x8 grid leaves windows of one pixel.
    with pytest.raises(ValueError, match="SPATIAL_GRID 8 is too fine"):
        WKD(student, teacher, get_cfg(None, base + ["WKD.HINT_LAYER", "3", "WKD.SPATIAL_GRID", "8"]))
    WKD(student, teacher, get_cfg(None, base + ["WKD.HINT_LAYER", "3", "WKD.SPATIAL_GRID", "4"]))


def test_feature_grid_is_checked_at_the_digits_input_size():
    """wrn_40_2 -> ShuffleV1 on digits at 16x16: the teacher's last map is 4x4, too small for the 4x4 grid
    (at 32x32 it is 8x8 and the config builds)."""
    cfg_path = os.path.join(REPO, "configs/cifar100/wkd_f/wrn40_2_shuv1.yaml")
    cfg = get_cfg(cfg_path, ["DATASET.TYPE", "digits", "DATASET.INPUT_SIZE", "[16,16]", "WKD.COST_MATRIX", "fc"])
    student = cifar_model_dict[cfg.DISTILLER.STUDENT][0](num_classes=10)
    teacher = cifar_model_dict[cfg.DISTILLER.TEACHER][0](num_classes=10)
    with pytest.raises(ValueError, match="SPATIAL_GRID 4 is too fine for the 4x4 teacher feature map"):
        distiller_dict["WKD"](student, teacher, cfg)
    cfg.defrost()
    cfg.DATASET.INPUT_SIZE = [32, 32]
    distiller_dict["WKD"](student, teacher, cfg)
