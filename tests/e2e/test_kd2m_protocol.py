"""KD²M's Table 1 pipeline end to end on CPU: the teacher config fine-tunes torchvision's ResNet-34 from its ImageNet
weights, then a KD²M config trains the ImageNet-initialised ResNet-18 against that teacher's last epoch.

Tiny synthetic CIFAR-10 and "ImageNet weights" placed in torch.hub's cache (where torchvision's hash-checked
download puts them): nothing is downloaded.
"""
import os

import torch

from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.optim import learning_rate
from mdistiller.engine.records import read_csv
from mdistiller.engine.trainer import Trainer
from mdistiller.models import imagenet_model_dict
from tests.helpers.datagen import make_cifar10_folder
from tests.helpers.runutil import REPO

HUB_FILES = {"ResNet18": "resnet18-f37072fd.pth", "ResNet34": "resnet34-b627a593.pth"}
OVERRIDES = ["DATASET.DOWNLOAD", "False", "DATASET.NUM_WORKERS", "0", "DATASET.TEST.BATCH_SIZE", "50",
             "SOLVER.EPOCHS", "2", "SOLVER.BATCH_SIZE", "25", "LOG.PROGRESS_BAR", "False", "LOG.DIAGNOSTICS", "False",
             "EXPERIMENT.DEVICE", "cpu"]


def _no_network(*args, **kwargs):
    raise AssertionError("tried to download")


def test_teacher_then_kd2m_student_from_the_shipped_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' relative paths (data, output/, the teacher checkpoint) resolve here
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    weights = {}
    for seed, (name, filename) in enumerate(sorted(HUB_FILES.items())):
        torch.manual_seed(seed)
        weights[name] = imagenet_model_dict[name]().state_dict()
        torch.save(weights[name], hub / filename)
    make_cifar10_folder(tmp_path / "data", n_train=50, n_test=50)
    folder = os.path.join(REPO, "configs", "cifar10", "kd2m")

    teacher_cfg = get_cfg(os.path.join(folder, "r34_teacher.yaml"), OVERRIDES)
    run = os.path.join(teacher_cfg.LOG.PREFIX, teacher_cfg.EXPERIMENT.PROJECT, teacher_cfg.EXPERIMENT.NAME)
    trainer = Trainer(teacher_cfg, run)
    model = trainer.distiller.student
    assert model.conv1.kernel_size == (7, 7) and model.fc.out_features == 10
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights["ResNet34"].items() if not k.startswith("fc."))
    trainer.train()
    rows = read_csv(os.path.join(run, "metrics.csv"))
    assert [r["lr"] for r in rows] == [learning_rate(teacher_cfg, e) for e in (1, 2)]
    assert abs(rows[1]["lr"] - (0.0001 + 0.5 * (0.01 - 0.0001))) < 1e-12  # halfway between LR and LR_MIN
    assert os.path.isfile(os.path.join(run, "student_latest"))

    cfg = get_cfg(os.path.join(folder, "r34_r18_gkl.yaml"), OVERRIDES)
    assert os.path.normpath(cfg.DISTILLER.TEACHER_CKPT) == os.path.normpath(os.path.join(run, "student_latest"))
    trainer = Trainer(cfg, str(tmp_path / "kd2m"))
    distiller = trainer.distiller
    assert distiller.get_extra_parameters() == 0
    t_state, tuned = distiller.teacher.state_dict(), torch.load(os.path.join(run, "student_latest"))["model"]
    assert all(torch.equal(t_state[k], v) for k, v in tuned.items())
    s_state = distiller.student.state_dict()
    assert all(torch.equal(s_state[k], v) for k, v in weights["ResNet18"].items() if not k.startswith("fc."))
    # the student-alone baseline starts from the same initialisation, new head included (same seed)
    baseline = Trainer(get_cfg(os.path.join(folder, "r18_student.yaml"), OVERRIDES), str(tmp_path / "baseline"))
    b_state = baseline.distiller.student.state_dict()
    assert all(torch.equal(b_state[k], v) for k, v in s_state.items())
    summary = trainer.train()
    assert summary["epochs"] == 2 and summary["method"] == "KD2M"
    rows = read_csv(os.path.join(str(tmp_path / "kd2m"), "metrics.csv"))
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["train_loss_kd"])) for r in rows)
