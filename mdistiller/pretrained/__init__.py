"""Weights shipped inside the package (no download): the digits demo's resnet20 teacher.

``digits_resnet20.pth`` is a ``{"model": state_dict}`` file (mdistiller's keys) of the CIFAR-zoo resnet20 with
10 classes, trained alone on scikit-learn's digits at 16x16; ``digits_resnet20.txt`` beside it says how, with
the command that re-trains it. Every machine distils from these same weights: a teacher trained on another CPU
rounds differently and is a different teacher.
"""
import os

from ..download import sha256_file

FOLDER = os.path.dirname(os.path.abspath(__file__))
DIGITS_TEACHER = os.path.join(FOLDER, "digits_resnet20.pth")
DIGITS_TEACHER_SHA256 = "5b25be66ac96a0b3ced5f66e0d2d74424736fdfa66b673ec7324e0a73d4e0fb0"
DIGITS_TEACHER_NOTE = os.path.join(FOLDER, "digits_resnet20.txt")
# Its top-1 (%) on the digits test split (450 images) at 16x16; tests/pkg/test_pretrained.py recomputes it.
DIGITS_TEACHER_TOP1 = 98.0


def digits_teacher(path=DIGITS_TEACHER, sha256=DIGITS_TEACHER_SHA256):
    """``path`` (the shipped digits teacher) after checking that its SHA-256 is the recorded one."""
    how = ("reinstall mdistiller to get the shipped file, or pass another teacher with tools/demo.py --teacher PATH "
           "(how the shipped one was trained: {})".format(DIGITS_TEACHER_NOTE))
    if not os.path.isfile(path):
        raise FileNotFoundError("The digits demo teacher is missing: expected {}; {}".format(path, how))
    actual = sha256_file(path)
    if actual != sha256:
        raise ValueError("The digits demo teacher {} has SHA-256 {}, not the recorded {}: it is not the shipped "
                         "file; {}".format(path, actual, sha256, how))
    return path
