"""The digits teacher shipped in the package: the recorded file, mdistiller's checkpoint format, its accuracy."""
import os
import shutil

import pytest
import torch

from mdistiller.dataset.digits import Digits
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.models import cifar_model_dict
from mdistiller.pretrained import (
    DIGITS_TEACHER, DIGITS_TEACHER_NOTE, DIGITS_TEACHER_SHA256, DIGITS_TEACHER_TOP1, digits_teacher,
)


@pytest.mark.numerics
def test_shipped_teacher_is_a_resnet20_checkpoint_with_the_recorded_accuracy():
    state = load_checkpoint(digits_teacher())
    assert list(state) == ["model"]
    model = cifar_model_dict["resnet20"][0](num_classes=10)
    model.load_state_dict(state["model"])  # strict: mdistiller's keys and shapes
    test = Digits(train=False, size=16)
    with torch.no_grad():
        logits = model.eval()(test.data)[0]
    # exact on any CPU: every test image's top-1 logit leads the runner-up by more than 0.1 (measured), far
    # beyond float32 rounding
    top2 = logits.topk(2, dim=1).values
    assert float((top2[:, 0] - top2[:, 1]).min()) > 0.05
    hits = int((logits.argmax(1) == torch.tensor(test.targets)).sum())
    assert 100.0 * hits / len(test) == pytest.approx(DIGITS_TEACHER_TOP1, abs=1e-9)


def test_the_note_beside_the_teacher_records_its_hash_and_command():
    with open(DIGITS_TEACHER_NOTE) as f:
        note = f.read()
    assert DIGITS_TEACHER_SHA256 in note
    assert "mdistiller-train --cfg digits/teacher.yaml" in note
    assert "{:.2f}%".format(DIGITS_TEACHER_TOP1) in note


def test_a_changed_or_missing_teacher_is_refused(tmp_path):
    copy = tmp_path / "digits_resnet20.pth"
    shutil.copyfile(DIGITS_TEACHER, copy)
    assert digits_teacher(str(copy)) == str(copy)
    with open(copy, "r+b") as f:
        f.seek(os.path.getsize(copy) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ValueError, match="not the recorded {}".format(DIGITS_TEACHER_SHA256)):
        digits_teacher(str(copy))
    with pytest.raises(FileNotFoundError, match="expected .*nowhere.pth"):
        digits_teacher(str(tmp_path / "nowhere.pth"))
