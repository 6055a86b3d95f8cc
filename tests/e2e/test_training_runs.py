"""The real trainer in-process on CPU: determinism, the outputs of a run, mdistiller's yaml, AMP/channels-last,
ImageNet and Tiny-ImageNet paths."""
import json
import os
import platform

import torch

from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.engine.trainer import Trainer, train
from tests.helpers.datagen import make_cifar100_folder, make_imagefolder
from tests.helpers.runutil import REPO, random_teacher_ckpt, read_metrics, tiny_cfg

MDISTILLER_DKD_YAML = os.path.join(REPO, "tests", "fixtures", "mdistiller_cifar100_dkd_res32x4_res8x4.yaml")


def test_same_seed_gives_identical_metrics(tmp_path, teacher_ckpt):
    runs = []
    for name in ("a", "b"):
        cfg = tiny_cfg(tmp_path / name, DISTILLER__TYPE="KD", DISTILLER__STUDENT="resnet8",
                       DISTILLER__TEACHER="resnet8", DISTILLER__TEACHER_CKPT=teacher_ckpt, EXPERIMENT__SEED=3)
        runs.append(train(cfg, str(tmp_path / name / "run")))
    assert read_metrics(runs[0]["log_path"]) == read_metrics(runs[1]["log_path"])
    cfg = tiny_cfg(tmp_path / "c", DISTILLER__TYPE="KD", DISTILLER__STUDENT="resnet8",
                   DISTILLER__TEACHER="resnet8", DISTILLER__TEACHER_CKPT=teacher_ckpt, EXPERIMENT__SEED=4)
    other = train(cfg, str(tmp_path / "c" / "run"))
    assert read_metrics(other["log_path"]) != read_metrics(runs[0]["log_path"])


def test_outputs_of_a_run(tmp_path, teacher_ckpt):
    cfg = tiny_cfg(tmp_path, epochs=2, DISTILLER__TYPE="DKD", DISTILLER__STUDENT="resnet8",
                   DISTILLER__TEACHER="resnet8", DISTILLER__TEACHER_CKPT=teacher_ckpt, LOG__SAVE_CHECKPOINT_FREQ=2)
    summary = train(cfg, str(tmp_path / "run"))
    run = summary["log_path"]
    for name in ("worklog.txt", "latest", "best", "student_best", "student_latest", "epoch_2", "config.yaml",
                 "env.json", "metrics.csv", "summary.json", "alignment.csv"):
        assert os.path.exists(os.path.join(run, name)), name
    assert any(f.startswith("events") for f in os.listdir(os.path.join(run, "train.events")))
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert summary["last_acc"] == float(rows[-1]["test_acc"])
    assert summary["best_acc"] == max(float(r["test_acc"]) for r in rows)
    worklog = open(os.path.join(run, "worklog.txt")).read()
    assert "epoch: 2" in worklog and "best_acc\t{:.2f}".format(summary["best_acc"]) in worklog
    assert "last_acc\t{:.2f}".format(summary["last_acc"]) in worklog
    student = load_checkpoint(os.path.join(run, "student_best"))
    assert set(student) == {"model"} and "fc.weight" in student["model"]
    assert get_cfg(os.path.join(run, "config.yaml")).DISTILLER.TYPE == "DKD"  # the dumped config merges back
    env = json.load(open(os.path.join(run, "env.json")))
    assert env["seed"] == cfg.EXPERIMENT.SEED
    users_malloc = any(name.startswith("MALLOC_") or name == "GLIBC_TUNABLES" for name in os.environ)
    assert env["host_memory_reuse"] is (platform.libc_ver()[0] == "glibc" and not users_malloc)


def test_mdistiller_yaml_trains_on_a_generated_cifar100_folder(tmp_path):
    make_cifar100_folder(tmp_path / "data", n_train=12, n_test=6)
    teacher = random_teacher_ckpt(tmp_path / "t.pth", "resnet32x4", 100)
    opts = ["DATASET.ROOT", str(tmp_path / "data"), "DATASET.DOWNLOAD", "False", "DATASET.NUM_WORKERS", "0",
            "SOLVER.EPOCHS", "1", "SOLVER.BATCH_SIZE", "6", "DISTILLER.TEACHER_CKPT", teacher,
            "LOG.PREFIX", str(tmp_path / "out"), "LOG.PROGRESS_BAR", "False", "EXPERIMENT.DEVICE", "cpu"]
    summary = train(get_cfg(MDISTILLER_DKD_YAML, opts), str(tmp_path / "out" / "dkd"))
    assert summary["epochs"] == 1 and 0.0 <= summary["last_acc"] <= 100.0
    # CRD: the contrastive dataset fields flow through the same loop.
    crd_opts = opts + ["DISTILLER.TYPE", "CRD", "SOLVER.TRAINER", "crd", "CRD.NCE.K", "4"]
    summary = train(get_cfg(MDISTILLER_DKD_YAML, crd_opts), str(tmp_path / "out" / "crd"))
    assert summary["method"] == "CRD"


def test_amp_and_channels_last_on_cpu(tmp_path, teacher_ckpt):
    cfg = tiny_cfg(tmp_path, DISTILLER__TYPE="DKD", DISTILLER__STUDENT="resnet8", DISTILLER__TEACHER="resnet8",
                   DISTILLER__TEACHER_CKPT=teacher_ckpt, SOLVER__AMP=True, SOLVER__CHANNELS_LAST=True,
                   SOLVER__NESTEROV=True, SOLVER__LR_SCHEDULER="cosine")
    summary = train(cfg, str(tmp_path / "run"))
    rows = read_metrics(summary["log_path"])
    assert all(torch.isfinite(torch.tensor(float(rows[0][k]))) for k in ("train_loss", "test_loss"))


def test_imagenet_path_with_a_torchvision_teacher_from_the_hub_cache(tmp_path, monkeypatch):
    """DATASET.TYPE imagenet end to end: ImageFolder data, the ImageNet zoo, and the teacher's
    `pretrained=True` weights read from torch.hub's cache (the real download path, offline)."""
    from mdistiller.models import imagenet_model_dict

    for split in ("train", "val"):
        make_imagefolder(tmp_path / "data" / "imagenet" / split, ["n01", "n02"], 2, size=40)
    torch.manual_seed(0)
    weights = imagenet_model_dict["ResNet18"]().state_dict()
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(weights, hub / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    opts = ["DATASET.TYPE", "imagenet", "DATASET.ROOT", str(tmp_path / "data"), "DATASET.NUM_CLASSES", "1000",
            "DATASET.NUM_WORKERS", "0", "DATASET.TEST.BATCH_SIZE", "4", "DISTILLER.TYPE", "KD",
            "DISTILLER.TEACHER", "ResNet18", "DISTILLER.STUDENT", "ResNet18", "SOLVER.BATCH_SIZE", "2",
            "SOLVER.EPOCHS", "1", "LOG.PROGRESS_BAR", "False", "LOG.DIAGNOSTICS", "False", "EXPERIMENT.DEVICE", "cpu"]
    trainer = Trainer(get_cfg(None, opts), str(tmp_path / "run"))
    teacher = trainer.distiller.teacher.state_dict()
    assert all(torch.equal(teacher[k], weights[k]) for k in weights)
    summary = trainer.train()
    assert summary["dataset"] == "imagenet" and summary["epochs"] == 1


def test_tiny_imagenet_runs_cifar_models_at_64px(tmp_path):
    for split in ("train", "val"):
        make_imagefolder(tmp_path / "data" / "tiny-imagenet-200" / split, ["n01", "n02", "n03"], 2, size=64)
    teacher = random_teacher_ckpt(tmp_path / "t.pth", "wrn_16_1", 3)
    opts = ["DATASET.TYPE", "tiny_imagenet", "DATASET.ROOT", str(tmp_path / "data"), "DATASET.NUM_WORKERS", "0",
            "DISTILLER.TYPE", "DKD", "DISTILLER.TEACHER", "wrn_16_1", "DISTILLER.TEACHER_CKPT", teacher,
            "DISTILLER.STUDENT", "resnet8", "SOLVER.BATCH_SIZE", "3", "SOLVER.EPOCHS", "1",
            "LOG.PROGRESS_BAR", "False", "EXPERIMENT.DEVICE", "cpu"]
    summary = train(get_cfg(None, opts), str(tmp_path / "run"))
    rows = read_metrics(summary["log_path"])
    assert len(rows) == 1 and os.path.exists(os.path.join(summary["log_path"], "alignment.csv"))
