"""KD and DKD distillers: their forward applies the configured weights and DKD's warm-up to the loss functions."""
import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers import distiller_dict
from mdistiller.engine.cfg import get_cfg
from mdistiller.losses.dkd import dkd_loss
from mdistiller.losses.kd import kd_loss
from tests.helpers.distill_inputs import zoo_pair


@pytest.mark.numerics
def test_dkd_warmup_and_kd_weights_in_forward():
    student, teacher = zoo_pair("resnet8", "resnet8")
    teacher.eval()
    cfg = get_cfg(None, ["DISTILLER.TYPE", "DKD", "DKD.WARMUP", "4"])
    dkd = distiller_dict["DKD"](student, teacher, cfg).eval()  # eval: BN uses running stats in both passes
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([1, 2, 3, 4])
    _, losses = dkd.forward_train(image=x, target=y, epoch=1)
    zs, zt = student(x)[0], teacher(x)[0]
    full = dkd_loss(zs, zt, y, 1.0, 8.0, 4.0)
    assert losses["loss_kd"].item() == pytest.approx(0.25 * full.item(), rel=1e-4)

    cfg = get_cfg(None, ["DISTILLER.TYPE", "KD"])
    kd = distiller_dict["KD"](student, teacher, cfg).eval()
    _, losses = kd.forward_train(image=x, target=y, epoch=1)
    assert losses["loss_kd"].item() == pytest.approx(0.9 * kd_loss(zs, zt, 4).item(), rel=1e-5)
    assert losses["loss_ce"].item() == pytest.approx(0.1 * F.cross_entropy(zs, y).item(), rel=1e-5)
