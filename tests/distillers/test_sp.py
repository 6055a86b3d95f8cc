"""SP built from mdistiller's yaml on real zoo models equals the normalized-Gram formula computed independently."""
import pytest

from mdistiller.distillers import SP
from tests.helpers.feature_methods import (
    assert_grads_close, build, grads, load_with_extra, step_and_features, student_params,
)

PAIRS = [("resnet32x4", "resnet8x4"), ("vgg13", "MobileNetV2")]


def reference_sp(f_s, f_t):
    """Tung & Mori 2019: G = A Aᵀ with rows divided by their norms; ‖G_t − G_s‖²_F / b²."""

    def gram(f):
        a = f.double().reshape(f.shape[0], -1)
        g = a @ a.t()
        return g / g.norm(dim=1, keepdim=True)

    b = f_s.shape[0]
    return ((gram(f_t.detach()) - gram(f_s)) ** 2).sum() / (b * b)


@pytest.mark.numerics
@pytest.mark.parametrize("teacher, student", PAIRS)
def test_sp_from_mdistiller_yaml_equals_formula(teacher, student):
    cfg, distiller = build("configs/cifar100/sp.yaml", teacher, student, spread_bn=True)
    assert isinstance(distiller, SP) and cfg.SP.LOSS.FEAT_WEIGHT == 3000.0
    losses, feats_s, feats_t = step_and_features(distiller, cfg.SP.LOSS.CE_WEIGHT)
    assert losses["loss_kd"].shape == ()
    expected = cfg.SP.LOSS.FEAT_WEIGHT * reference_sp(feats_s["feats"][-1], feats_t["feats"][-1])
    assert losses["loss_kd"].item() == pytest.approx(expected.item(), rel=1e-4)
    params = student_params(distiller)
    assert_grads_close(grads(losses["loss_kd"], params), grads(expected.float(), params), rtol=1e-3)


def test_sp_state_dict_is_student_and_teacher_only():
    _, distiller = build("configs/cifar100/sp.yaml", spread_bn=True)
    load_with_extra(distiller, {})
    assert distiller.get_extra_parameters() == 0
