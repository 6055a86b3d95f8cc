"""Students and teachers: relative checkpoint paths resolve against the current directory."""
import os

import torch

from mdistiller.engine.build import load_teacher, teacher_checkpoint_path
from mdistiller.engine.cfg import get_cfg
from mdistiller.models import cifar_model_dict


def test_released_teacher_path_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    cfg = get_cfg(None, ["DISTILLER.TYPE", "KD", "DISTILLER.TEACHER", "resnet56"])
    path = teacher_checkpoint_path(cfg)
    if "MDISTILLER_CKPT_ROOT" not in os.environ:
        assert path == os.path.join("download_ckpts", "cifar_teachers", "resnet56_vanilla", "ckpt_epoch_240.pth")
    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.manual_seed(0)
    weights = cifar_model_dict["resnet56"][0](num_classes=100).state_dict()
    torch.save({"model": weights}, path)
    teacher = load_teacher(cfg, 100)
    assert all(torch.equal(teacher.state_dict()[k], weights[k]) for k in weights)

    relative = os.path.join("mine", "t.pth")
    os.makedirs("mine")
    torch.save({"model": weights}, relative)
    cfg = get_cfg(None, ["DISTILLER.TEACHER", "resnet56", "DISTILLER.TEACHER_CKPT", relative])
    assert torch.equal(load_teacher(cfg, 100).fc.weight, weights["fc.weight"])
