"""Fixtures of the end-to-end runs."""
import pytest

from tests.helpers.runutil import random_teacher_ckpt


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory):
    """A randomly initialised resnet8 teacher (10 classes, seed 0) as a checkpoint file."""
    return random_teacher_ckpt(tmp_path_factory.mktemp("teacher") / "teacher.pth", "resnet8", 10)
