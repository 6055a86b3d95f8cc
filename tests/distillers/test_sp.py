"""SP built from mdistiller's yaml on real zoo models equals the normalized-Gram formula computed independently."""
import pytest
import torch

from mdistiller.distillers import SP
from tests.helpers.feature_reference import assert_grads_close, batch, build, check_ce, grads, student_params

PAIRS = [("resnet32x4", "resnet8x4"), ("vgg13", "MobileNetV2")]


def reference_sp(f_s, f_t):
    """Tung & Mori 2019: G = A Aᵀ with rows divided by their norms; ‖G_t − G_s‖²_F / b²."""

    def gram(f):
        a = f.double().reshape(f.shape[0], -1)
        g = a @ a.t()
        return g / g.norm(dim=1, keepdim=True)

    b = f_s.shape[0]
    return ((gram(f_t.detach()) - gram(f_s)) ** 2).sum() / (b * b)


@pytest.mark.parametrize("teacher, student", PAIRS)
def test_sp_from_mdistiller_yaml_equals_formula(teacher, student):
    cfg, distiller = build("sp", teacher, student)
    assert isinstance(distiller, SP) and cfg.SP.LOSS.FEAT_WEIGHT == 3000.0
    image, target = batch()
    logits, losses = distiller.forward_train(image=image, target=target, epoch=1)
    assert list(losses) == ["loss_ce", "loss_kd"] and losses["loss_kd"].shape == ()
    check_ce(cfg.SP.LOSS.CE_WEIGHT, logits, target, losses)

    _, feats_s = distiller.student(image)
    with torch.no_grad():
        _, feats_t = distiller.teacher(image)
    expected = cfg.SP.LOSS.FEAT_WEIGHT * reference_sp(feats_s["feats"][-1], feats_t["feats"][-1])
    assert losses["loss_kd"].item() == pytest.approx(expected.item(), rel=1e-4)
    params = student_params(distiller)
    assert_grads_close(grads(losses["loss_kd"], params), grads(expected.float(), params), rtol=1e-3)


def test_sp_state_dict_is_student_and_teacher_only():
    _, distiller = build("sp")
    expected = {"student." + k for k in distiller.student.state_dict()}
    expected |= {"teacher." + k for k in distiller.teacher.state_dict()}
    assert set(distiller.state_dict()) == expected and distiller.get_extra_parameters() == 0
