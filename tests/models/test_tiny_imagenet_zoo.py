"""mdistiller's tiny_imagenet_model_dict and the Tiny-ImageNet DOT configs' models."""
import os

import pytest
import torch

from mdistiller.engine.build import build_student_and_teacher, teacher_checkpoint_path
from mdistiller.engine.cfg import get_cfg
from mdistiller.models import tiny_imagenet_model_dict
from tests.helpers.runutil import REPO


def test_names_checkpoints_and_64px_shapes():
    assert set(tiny_imagenet_model_dict) == {"ResNet18", "MobileNetV2", "ShuffleV2"}
    path = tiny_imagenet_model_dict["ResNet18"][1]
    assert path.endswith(os.path.join("tiny_imagenet_teachers", "ResNet18_vanilla", "ti_res18"))
    assert tiny_imagenet_model_dict["MobileNetV2"][1] is None and tiny_imagenet_model_dict["ShuffleV2"][1] is None
    x = torch.randn(2, 3, 64, 64)
    for name, (ctor, _) in tiny_imagenet_model_dict.items():
        logits, feats = ctor(num_classes=200).eval()(x)
        assert logits.shape == (2, 200) and "pooled_feat" in feats, name


@pytest.mark.parametrize("name", ["r18_mv2", "r18_shuv2"])
def test_tiny_imagenet_dot_config_builds(tmp_path, monkeypatch, name):
    cfg = get_cfg(os.path.join(REPO, "configs", "tiny_imagenet", "dot", name + ".yaml"))
    assert cfg.SOLVER.TRAINER == "dot" and cfg.DATASET.TYPE == "tiny_imagenet"
    monkeypatch.chdir(tmp_path)
    path = teacher_checkpoint_path(cfg)
    assert path == tiny_imagenet_model_dict["ResNet18"][1]
    os.makedirs(os.path.dirname(path))
    torch.manual_seed(0)
    weights = tiny_imagenet_model_dict["ResNet18"][0](num_classes=200).state_dict()
    torch.save({"model": weights}, path)
    student, teacher = build_student_and_teacher(cfg, 200)
    assert type(student) is tiny_imagenet_model_dict[cfg.DISTILLER.STUDENT][0](num_classes=200).__class__
    assert torch.equal(teacher.state_dict()["linear.weight" if "linear.weight" in weights else "fc.weight"],
                       weights["linear.weight" if "linear.weight" in weights else "fc.weight"])
    assert student(torch.randn(2, 3, 64, 64))[0].shape == (2, 200)
