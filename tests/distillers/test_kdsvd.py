"""KDSVD through the registry on mdistiller's yaml, on real zoo models, against the eigen-decomposition reference."""
import pytest

from mdistiller.benchmark import method_label
from mdistiller.engine.cfg import CFG, get_cfg
from tests.helpers.feature_methods import batch, build, check_step, load_mdistiller_layout
from tests.losses.test_kdsvd import kdsvd_reference

MDISTILLER_BLOCK = {"K": 1, "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 1.0}}


def test_defaults_label_and_published_number():
    assert CFG.KDSVD == MDISTILLER_BLOCK
    cfg = get_cfg(None, ["DISTILLER.TYPE", "KDSVD"])
    assert method_label(cfg) == "KDSVD"


# wrn_40_2 and resnet8x4 have stages of equal widths (32, 16, 8): KD-SVD compares vectors in R^W.
@pytest.mark.parametrize("teacher,student", [(None, None), ("wrn_40_2", "resnet8x4")])
def test_step_equals_reference(teacher, student):
    _, distiller = build("configs/cifar100/kdsvd.yaml", teacher, student)
    image, target = batch()
    check_step(
        distiller,
        lambda fs, ft: kdsvd_reference(fs["feats"][1:], ft["feats"][1:], 1),
        1.0, image, target,
    )


def test_pair_with_different_stage_widths_fails_clearly():
    _, distiller = build("configs/cifar100/kdsvd.yaml", "wrn_40_2", "ShuffleV1")
    image, target = batch(n=2)
    with pytest.raises(ValueError, match="student width 16 and teacher width 32"):
        distiller(image=image, target=target, epoch=1)


def test_state_dict_with_mdistillers_keys_loads_strictly():
    _, distiller = build("configs/cifar100/kdsvd.yaml")
    load_mdistiller_layout(distiller, {})
