"""PKT through the registry on mdistiller's yaml, on real zoo models, against the cosine-kernel closed form."""
import pytest

from mdistiller.benchmark import method_label, published_top1
from mdistiller.engine.cfg import CFG, get_cfg
from tests.helpers.feature_methods import batch, build, check_step, load_mdistiller_layout
from tests.losses.test_pkt import pkt_reference_torch

MDISTILLER_BLOCK = {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 30000.0}}


def test_defaults_label_and_published_number():
    assert CFG.PKT == MDISTILLER_BLOCK
    cfg = get_cfg(None, ["DISTILLER.TYPE", "PKT"])
    assert method_label(cfg) == "PKT"
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "PKT")[0] == 73.64  # CRD paper Table 1


@pytest.mark.numerics
@pytest.mark.parametrize("teacher,student", [(None, None), ("vgg13", "MobileNetV2")])
def test_step_equals_closed_form(teacher, student):
    _, distiller = build("configs/cifar100/pkt.yaml", teacher, student)
    image, target = batch(n=4)
    check_step(
        distiller,
        lambda fs, ft: pkt_reference_torch(fs["pooled_feat"], ft["pooled_feat"], eps=1e-7),
        30000.0, image, target,
    )


def test_state_dict_with_mdistillers_keys_loads_strictly():
    _, distiller = build("configs/cifar100/pkt.yaml")
    load_mdistiller_layout(distiller, {})
