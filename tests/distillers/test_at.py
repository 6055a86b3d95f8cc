"""AT through the registry on mdistiller's yaml, on real zoo models, against the closed form."""
import pytest

from mdistiller.benchmark import method_label, published_top1
from mdistiller.engine.cfg import CFG, get_cfg
from tests.helpers.feature_methods import batch, build, check_step, load_mdistiller_layout
from tests.losses.test_at import at_reference_torch

MDISTILLER_BLOCK = {"P": 2, "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 1000.0}}


def test_defaults_label_and_published_number():
    assert CFG.AT == MDISTILLER_BLOCK
    cfg = get_cfg(None, ["DISTILLER.TYPE", "AT"])
    assert method_label(cfg) == "AT"
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "AT")[0] == 73.44  # CRD paper Table 1


@pytest.mark.parametrize("teacher,student", [(None, None), ("wrn_40_2", "ShuffleV1")])
def test_step_equals_closed_form(teacher, student):
    cfg, distiller = build("configs/cifar100/at.yaml", teacher, student)
    assert (cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT) == (teacher or "resnet32x4", student or "resnet8x4")
    assert distiller.ce_weight == 1.0
    image, target = batch()
    check_step(
        distiller,
        lambda fs, ft: at_reference_torch(fs["feats"][1:], ft["feats"][1:], 2),
        1000.0, image, target,
    )


def test_imagenet_config():
    cfg, distiller = build("configs/imagenet/r34_r18/at.yaml", num_classes=10)
    assert (cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT, cfg.SOLVER.BATCH_SIZE) == ("ResNet34", "ResNet18", 512)
    image, target = batch(size=64, n=2, num_classes=10)
    check_step(
        distiller,
        lambda fs, ft: at_reference_torch(fs["feats"][1:], ft["feats"][1:], 2),
        1000.0, image, target,
    )


def test_state_dict_with_mdistillers_keys_loads_strictly():
    _, distiller = build("configs/cifar100/at.yaml")
    load_mdistiller_layout(distiller, {})  # AT has no modules beyond the two networks
