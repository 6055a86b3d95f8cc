"""The README's embedded default, end to end: a digits teacher, then a KD student distilled from it."""
import os

import pytest

from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.trainer import train
from tests.helpers.runutil import REPO


@pytest.mark.slow
def test_digits_teacher_is_accurate_and_kd_student_learns_from_it(tmp_path):
    opts = ["LOG.PREFIX", str(tmp_path), "EXPERIMENT.DEVICE", "cpu"]
    teacher = train(get_cfg(os.path.join(REPO, "configs/digits/teacher.yaml"), opts), str(tmp_path / "teacher"))
    assert teacher["best_acc"] >= 95.0, teacher  # 8 epochs of resnet20 on 1,347 images

    ckpt = os.path.join(teacher["log_path"], "student_best")
    student = train(
        get_cfg(os.path.join(REPO, "configs/digits/kd.yaml"), opts + ["DISTILLER.TEACHER_CKPT", ckpt]),
        str(tmp_path / "kd"),
    )
    assert student["last_acc"] >= 80.0, student  # chance is 10%
    assert student["best_acc"] >= student["last_acc"]
