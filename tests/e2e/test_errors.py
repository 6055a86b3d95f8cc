"""What a run says when something is wrong: unknown names, missing files, a non-finite loss."""
import pytest
import torch.nn.functional as F

from mdistiller.distillers import Distiller, register_distiller
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.engine.trainer import train
from tests.helpers.datagen import make_cifar100_folder
from tests.helpers.runutil import tiny_cfg


def test_unknown_distiller_lists_valid_names(tmp_path):
    cfg = tiny_cfg(tmp_path, DISTILLER__TYPE="KDD")
    with pytest.raises(KeyError, match="Valid names: .*DKD.*KD"):
        train(cfg, str(tmp_path / "run"))


def test_unknown_model_lists_valid_names(tmp_path):
    cfg = tiny_cfg(tmp_path, DISTILLER__STUDENT="resnet9")
    with pytest.raises(KeyError, match="Valid names: .*resnet8"):
        train(cfg, str(tmp_path / "run"))


def test_missing_teacher_checkpoint_says_how_to_get_it(tmp_path, monkeypatch):
    from mdistiller import models

    missing = str(tmp_path / "cifar_teachers" / "resnet32x4_vanilla" / "ckpt_epoch_240.pth")
    monkeypatch.setitem(models.cifar_model_dict, "resnet32x4", (models.cifar_model_dict["resnet32x4"][0], missing))
    make_cifar100_folder(tmp_path / "data", n_train=4, n_test=2)
    cfg = get_cfg(None, ["DISTILLER.TYPE", "KD", "DISTILLER.TEACHER", "resnet32x4", "DATASET.ROOT",
                         str(tmp_path / "data"), "DATASET.NUM_WORKERS", "0", "LOG.PREFIX", str(tmp_path)])
    with pytest.raises(FileNotFoundError) as err:
        train(cfg, str(tmp_path / "run"))
    assert "mdistiller-download teachers" in str(err.value) and missing in str(err.value)


def test_missing_dataset_says_where_it_is_expected(tmp_path):
    cfg = get_cfg(None, ["DATASET.ROOT", str(tmp_path / "nowhere"), "DATASET.DOWNLOAD", "False",
                         "LOG.PREFIX", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        train(cfg, str(tmp_path / "run"))


@register_distiller("TEST_NAN_AT_EPOCH_2")
class _NanAtEpoch2(Distiller):
    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)

    def forward_train(self, image, target, epoch, **kwargs):
        logits, _ = self.student(image)
        loss = F.cross_entropy(logits, target)
        if epoch == 2:
            loss = loss * float("nan")
        return logits, {"loss_ce": loss}


def test_non_finite_loss_stops_with_epoch_and_iteration(tmp_path, teacher_ckpt):
    cfg = tiny_cfg(tmp_path, epochs=3, DISTILLER__TYPE="TEST_NAN_AT_EPOCH_2", DISTILLER__STUDENT="resnet8",
                   DISTILLER__TEACHER="resnet8", DISTILLER__TEACHER_CKPT=teacher_ckpt)
    with pytest.raises(FloatingPointError, match="epoch 2, iteration 0"):
        train(cfg, str(tmp_path / "run"))
    assert load_checkpoint(str(tmp_path / "run" / "latest"))["epoch"] == 1
