"""NST through the registry on mdistiller's yaml, on real zoo models, against the MMD² closed form."""
import pytest

from mdistiller.benchmark import method_label, published_top1
from mdistiller.engine.cfg import CFG, get_cfg
from tests.helpers.feature_methods import batch, build, check_step, load_mdistiller_layout
from tests.losses.test_nst import nst_reference_torch

MDISTILLER_BLOCK = {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 50.0}}


def test_defaults_label_and_published_number():
    assert CFG.NST == MDISTILLER_BLOCK
    cfg = get_cfg(None, ["DISTILLER.TYPE", "NST"])
    assert method_label(cfg) == "NST"
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "NST")[0] == 73.30  # CRD paper Table 1


@pytest.mark.parametrize("teacher,student", [(None, None), ("wrn_40_2", "ShuffleV1")])
def test_step_equals_closed_form(teacher, student):
    _, distiller = build("configs/cifar100/nst.yaml", teacher, student)
    image, target = batch()
    check_step(
        distiller,
        lambda fs, ft: nst_reference_torch(fs["feats"][1:], ft["feats"][1:]),
        50.0, image, target,
    )


def test_state_dict_with_mdistillers_keys_loads_strictly():
    _, distiller = build("configs/cifar100/nst.yaml")
    load_mdistiller_layout(distiller, {})
