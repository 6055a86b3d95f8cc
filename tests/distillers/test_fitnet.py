"""FitNet through the registry on mdistiller's yaml, on real zoo models: hint MSE, regressor shapes, checkpoint keys."""
import os

import pytest
import torch
import torch.nn as nn

from mdistiller.benchmark import method_label, published_top1
from mdistiller.distillers import build_distiller, get_distiller_class
from mdistiller.distillers._common import ConvReg
from mdistiller.engine.cfg import CFG, get_cfg
from mdistiller.models import cifar_model_dict
from tests.helpers.feature_methods import batch, build, check_step, load_mdistiller_layout
from tests.helpers.runutil import REPO

MDISTILLER_BLOCK = {"HINT_LAYER": 2, "INPUT_SIZE": (32, 32), "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 100.0}}


def conv_reg_keys(conv_weight, channels):
    """mdistiller's ``conv_reg`` entries (``_common.ConvReg``: ``conv`` then ``bn``)."""
    keys = {"conv_reg.conv.weight": conv_weight, "conv_reg.conv.bias": (channels,)}
    for name in ("weight", "bias", "running_mean", "running_var"):
        keys["conv_reg.bn." + name] = (channels,)
    keys["conv_reg.bn.num_batches_tracked"] = ()
    return keys


# pair -> (conv type, mdistiller's conv_reg shapes) at HINT_LAYER 2 on 32x32 inputs
PAIRS = {
    (None, None): (nn.Conv2d, conv_reg_keys((128, 128, 1, 1), 128)),  # 128x16x16 -> 128x16x16
    ("wrn_40_2", "ShuffleV1"): (nn.ConvTranspose2d, conv_reg_keys((480, 64, 4, 4), 64)),  # 480x8x8 -> 64x16x16
    ("vgg13", "MobileNetV2"): (nn.Conv2d, conv_reg_keys((256, 16, 1, 1), 256)),  # 16x8x8 -> 256x8x8
}


def test_defaults_label_and_block():
    assert CFG.FITNET == MDISTILLER_BLOCK
    cfg = CFG.clone()
    cfg.DISTILLER.TYPE = "FITNET"
    assert get_distiller_class("FITNET").label(cfg) == method_label(cfg) == "FitNet"
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "FitNet")[0] == 73.50  # CRD paper Table 1


@pytest.mark.parametrize("pair", list(PAIRS))
def test_step_equals_hint_mse_and_regressor_has_mdistillers_shapes(pair):
    _, distiller = build("configs/cifar100/fitnet.yaml", *pair)
    conv_type, keys = PAIRS[pair]
    assert isinstance(distiller.conv_reg, ConvReg) and type(distiller.conv_reg.conv) is conv_type
    extra = {k: tuple(v.shape) for k, v in distiller.state_dict().items() if k.startswith("conv_reg.")}
    assert extra == keys
    assert distiller.get_extra_parameters() == sum(
        torch.Size(s).numel() for k, s in keys.items() if not k.endswith(("running_mean", "running_var", "tracked"))
    )
    image, target = batch()

    def reference(fs, ft):
        regressed = distiller.conv_reg(fs["feats"][2])
        return ((regressed - ft["feats"][2]) ** 2).sum() / regressed.numel()

    check_step(distiller, reference, 100.0, image, target)


def test_regressor_trains_with_the_student():
    _, distiller = build("configs/cifar100/fitnet.yaml")
    assert distiller.conv_reg.training and not distiller.teacher.training
    learnable = {id(p) for p in distiller.get_learnable_parameters()}
    assert all(id(p) in learnable for p in distiller.conv_reg.parameters())


def test_the_shape_probe_changes_no_bn_statistic():
    """mdistiller's probe runs both networks in training mode; here it changes no running statistic."""
    cfg = get_cfg(os.path.join(REPO, "configs/cifar100/fitnet.yaml"))
    teacher = cifar_model_dict["resnet32x4"][0](num_classes=100)  # training mode, as a freshly built model
    student = cifar_model_dict["resnet8x4"][0](num_classes=100)
    before = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in (("t", teacher), ("s", student))}
    build_distiller(cfg, student, teacher)
    for name, model in (("t", teacher), ("s", student)):
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[name][key]), key
    assert student.training


def test_hint_layer_out_of_range_is_an_error():
    cfg = get_cfg(None, ["DISTILLER.TYPE", "FITNET", "FITNET.HINT_LAYER", "7"])
    make = cifar_model_dict["resnet8"][0]
    with pytest.raises(ValueError, match="FITNET.HINT_LAYER 7 is out of range"):
        build_distiller(cfg, make(num_classes=10), make(num_classes=10))


@pytest.mark.parametrize("pair", [(None, None), ("wrn_40_2", "ShuffleV1")])
def test_state_dict_with_mdistillers_keys_loads_strictly(pair):
    _, distiller = build("configs/cifar100/fitnet.yaml", *pair)
    state = load_mdistiller_layout(distiller, PAIRS[pair][1])
    torch.testing.assert_close(distiller.conv_reg.conv.weight, state["conv_reg.conv.weight"])
