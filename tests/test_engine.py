"""The engine end to end on CPU: config compatibility, losses, determinism, resume, DDP, errors."""
import csv
import os
import subprocess
import sys
import time
import types

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.datagen import make_cifar100_folder
from mdistiller.distillers import Distiller, distiller_dict, register_distiller
from mdistiller.losses.dkd import dkd_loss
from mdistiller.losses.kd import kd_loss
from mdistiller.engine import checkpoint as ckpt_mod
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.checkpoint import load_checkpoint, save_checkpoint
from mdistiller.engine.trainer import learning_rate, train
from tests.helpers.runutil import REPO, random_teacher_ckpt, tiny_cfg, tiny_opts

PY = sys.executable
TRAIN = os.path.join(REPO, "tools", "train.py")


def read_metrics(run_dir, drop=("epoch_time",)):
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def run_dir_of(summary):
    return summary["log_path"]


# ----------------------------------------------------------------------------- config


MDISTILLER_DKD_YAML = """\
EXPERIMENT:
  NAME: ""
  TAG: "dkd,res32x4,res8x4"
  PROJECT: "cifar100_baselines"
DISTILLER:
  TYPE: "DKD"
  TEACHER: "resnet32x4"
  STUDENT: "resnet8x4"
SOLVER:
  BATCH_SIZE: 64
  EPOCHS: 240
  LR: 0.05
  LR_DECAY_STAGES: [150, 180, 210]
  LR_DECAY_RATE: 0.1
  WEIGHT_DECAY: 0.0005
  MOMENTUM: 0.9
  TYPE: "SGD"
"""

MDISTILLER_IMAGENET_CRD_YAML = """\
EXPERIMENT:
  NAME: ""
  TAG: "crd,res34,res18"
  PROJECT: "imagenet_baselines"
DATASET:
  TYPE: "imagenet"
  NUM_WORKERS: 32
  TEST:
    BATCH_SIZE: 128
DISTILLER:
  TYPE: "CRD"
  TEACHER: "ResNet34"
  STUDENT: "ResNet18"
SOLVER:
  BATCH_SIZE: 256
  EPOCHS: 100
  LR: 0.1
  LR_DECAY_STAGES: [30, 60, 90]
  LR_DECAY_RATE: 0.1
  WEIGHT_DECAY: 0.0001
  MOMENTUM: 0.9
  TYPE: "SGD"
  TRAINER: "crd" 
CRD:
  FEAT:
    STUDENT_DIM: 512
    TEACHER_DIM: 512
LOG:
  TENSORBOARD_FREQ: 50
  SAVE_CHECKPOINT_FREQ: 10
"""


def test_mdistiller_yaml_files_merge_unchanged(tmp_path):
    for text in (MDISTILLER_DKD_YAML, MDISTILLER_IMAGENET_CRD_YAML):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        cfg = get_cfg(str(path))
        assert cfg.SOLVER.TYPE == "SGD"
    assert cfg.CRD.FEAT.STUDENT_DIM == 512 and cfg.SOLVER.TRAINER == "crd" and cfg.DATASET.NUM_WORKERS == 32


def test_every_shipped_config_merges():
    import glob

    paths = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))
    assert len(paths) > 40
    for path in paths:
        cfg = get_cfg(path)
        assert cfg.DISTILLER.TYPE in distiller_dict, (path, cfg.DISTILLER.TYPE)


def test_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("SOLVER:\n  LEARNING_RATE: 0.1\n")
    with pytest.raises(KeyError, match="SOLVER.LEARNING_RATE"):
        get_cfg(str(path))
    with pytest.raises(KeyError, match="KD.NOPE"):
        get_cfg(None, ["KD.NOPE", "1"])


def test_integer_written_for_a_float_key_is_accepted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("DKD:\n  BETA: 2\nKD:\n  TEMPERATURE: 4\n")
    cfg = get_cfg(str(path), ["DKD.ALPHA", "3"])
    assert cfg.DKD.BETA == 2.0 and isinstance(cfg.DKD.BETA, float)
    assert isinstance(cfg.DKD.ALPHA, float) and cfg.KD.TEMPERATURE == 4
    with pytest.raises(ValueError):
        get_cfg(None, ["SOLVER.EPOCHS", "'ten'"])


def test_learning_rate_schedules():
    cfg = get_cfg(None, ["SOLVER.LR", "0.1", "SOLVER.LR_DECAY_STAGES", "[2, 4]", "SOLVER.EPOCHS", "10"])
    assert [round(learning_rate(cfg, e), 10) for e in (1, 2, 3, 4, 5)] == [0.1, 0.1, 0.01, 0.01, 0.001]
    cfg = get_cfg(None, ["SOLVER.LR", "0.1", "SOLVER.LR_SCHEDULER", "cosine", "SOLVER.EPOCHS", "10"])
    assert learning_rate(cfg, 1) == pytest.approx(0.1)
    assert learning_rate(cfg, 6) == pytest.approx(0.05)


# ----------------------------------------------------------------------------- losses


def _kd_reference(zs, zt, T):
    total = 0.0
    for s, t in zip(zs, zt):
        ps = torch.exp(s / T) / torch.exp(s / T).sum()
        pt = torch.exp(t / T) / torch.exp(t / T).sum()
        total = total + (pt * (torch.log(pt) - torch.log(ps))).sum()
    return total / zs.shape[0] * T * T


def _dkd_reference(zs, zt, y, alpha, beta, T):
    total = 0.0
    for s, t, c in zip(zs, zt, y):
        ps = torch.exp(s / T) / torch.exp(s / T).sum()
        pt = torch.exp(t / T) / torch.exp(t / T).sum()
        bs = torch.stack([ps[c], 1 - ps[c]])
        bt = torch.stack([pt[c], 1 - pt[c]])
        tckd = (bt * (torch.log(bt) - torch.log(bs))).sum()
        keep = torch.arange(s.numel()) != c
        qs = torch.exp(s[keep] / T) / torch.exp(s[keep] / T).sum()
        qt = torch.exp(t[keep] / T) / torch.exp(t[keep] / T).sum()
        nckd = (qt * (torch.log(qt) - torch.log(qs))).sum()
        total = total + alpha * tckd + beta * nckd
    return total / zs.shape[0] * T * T


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kd_loss_equals_formula_value_and_gradient(T):
    g = torch.Generator().manual_seed(0)
    zs = (torch.randn(6, 10, generator=g, dtype=torch.float64) * 3).requires_grad_()
    zt = torch.randn(6, 10, generator=g, dtype=torch.float64) * 3
    ours = kd_loss(zs, zt, T)
    ref = _kd_reference(zs, zt, T)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    (g1,) = torch.autograd.grad(ours, zs)
    (g2,) = torch.autograd.grad(_kd_reference(zs, zt, T), zs)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alpha,beta,T", [(1.0, 8.0, 4.0), (1.0, 0.5, 1.0), (2.0, 2.0, 2.0)])
def test_dkd_loss_equals_formula_value_and_gradient(alpha, beta, T):
    g = torch.Generator().manual_seed(1)
    zs = (torch.randn(5, 7, generator=g, dtype=torch.float64) * 2).requires_grad_()
    zt = torch.randn(5, 7, generator=g, dtype=torch.float64) * 2
    y = torch.tensor([0, 3, 6, 2, 3])
    ours = dkd_loss(zs, zt, y, alpha, beta, T)
    ref = _dkd_reference(zs, zt, y, alpha, beta, T)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    (g1,) = torch.autograd.grad(ours, zs)
    (g2,) = torch.autograd.grad(_dkd_reference(zs, zt, y, alpha, beta, T), zs)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


def test_dkd_warmup_and_kd_weights_in_forward(tmp_path):
    from mdistiller.models import cifar_model_dict

    torch.manual_seed(0)
    student = cifar_model_dict["resnet8"][0](num_classes=10)
    teacher = cifar_model_dict["resnet8"][0](num_classes=10).eval()
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


# ----------------------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    return random_teacher_ckpt(tmp_path_factory.mktemp("teacher") / "teacher.pth", "resnet8", 10)


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


def _train_cmd(prefix, epochs, teacher, extra=()):
    opts = tiny_opts(prefix, epochs=epochs, batch=128) + [
        "DISTILLER.TYPE", "KD", "DISTILLER.STUDENT", "resnet8", "DISTILLER.TEACHER", "resnet8",
        "DISTILLER.TEACHER_CKPT", teacher, "EXPERIMENT.TAG", "resume", "SOLVER.LR_DECAY_STAGES", "[2]",
        "SOLVER.LR_SCHEDULER", "step",
    ]
    return [PY, TRAIN] + list(extra) + opts


def test_killed_run_resumes_to_the_same_result(tmp_path, teacher_ckpt):
    env = dict(os.environ, PYTHONPATH=REPO)
    # Uninterrupted reference, in a subprocess like the resumed one (same thread settings).
    subprocess.run(_train_cmd(tmp_path / "ref", 3, teacher_ckpt), check=True, env=env, capture_output=True)
    ref_dir = next((tmp_path / "ref").glob("*/*"))

    log = open(tmp_path / "killed_run.log", "w")
    proc = subprocess.Popen(_train_cmd(tmp_path / "kill", 3, teacher_ckpt), env=env, stdout=log, stderr=log)
    deadline = time.time() + 300
    latest = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "kill").glob("*/*/latest"))
        if found:
            latest = found[0]
            break
        time.sleep(0.05)
    assert latest is not None and proc.poll() is None, (tmp_path / "killed_run.log").read_text()[-2000:]
    proc.kill()  # SIGKILL: no cleanup, like a crash or a pre-empted job
    proc.wait()
    killed_at = load_checkpoint(str(latest))["epoch"]
    assert killed_at < 3
    subprocess.run(_train_cmd(tmp_path / "kill", 3, teacher_ckpt, ["--resume"]), check=True, env=env,
                   capture_output=True)
    kill_dir = latest.parent
    assert read_metrics(kill_dir) == read_metrics(ref_dir)
    a = load_checkpoint(str(ref_dir / "student_latest"))["model"]
    b = load_checkpoint(str(kill_dir / "student_latest"))["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert "resumed from epoch {}".format(killed_at) in (kill_dir / "worklog.txt").read_text()


def test_torchrun_two_processes_on_cpu(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    opts = tiny_opts(tmp_path, epochs=1, batch=128) + ["DISTILLER.TYPE", "NONE", "DISTILLER.STUDENT", "resnet8",
                                                       "EXPERIMENT.TAG", "ddp"]
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", TRAIN] + opts
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = next(tmp_path.glob("*/ddp*"))
    rows = read_metrics(str(run))
    assert len(rows) == 1
    env_info = (run / "env.json").read_text()
    assert '"world_size": 2' in env_info
    # The logged test accuracy is over the whole test split (all-reduced over the two shards):
    # evaluating the saved student in one process gives the same number.
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import eval as eval_tool

    top1, top5, loss = eval_tool.main(["-m", "resnet8", "-c", str(run / "student_latest"), "-d", "digits",
                                       "--device", "cpu", "--workers", "0"])
    assert top1 == pytest.approx(float(rows[0]["test_acc"]), abs=1e-9)
    assert loss == pytest.approx(float(rows[0]["test_loss"]), rel=1e-5)


def test_mdistiller_yaml_trains_on_a_generated_cifar100_folder(tmp_path):
    make_cifar100_folder(tmp_path / "data", n_train=12, n_test=6)
    teacher = random_teacher_ckpt(tmp_path / "t.pth", "resnet32x4", 100)
    cfg_path = tmp_path / "dkd.yaml"
    cfg_path.write_text(MDISTILLER_DKD_YAML)
    opts = ["DATASET.ROOT", str(tmp_path / "data"), "DATASET.DOWNLOAD", "False", "DATASET.NUM_WORKERS", "0",
            "SOLVER.EPOCHS", "1", "SOLVER.BATCH_SIZE", "6", "DISTILLER.TEACHER_CKPT", teacher,
            "LOG.PREFIX", str(tmp_path / "out"), "LOG.PROGRESS_BAR", "False", "EXPERIMENT.DEVICE", "cpu"]
    summary = train(get_cfg(str(cfg_path), opts), str(tmp_path / "out" / "dkd"))
    assert summary["epochs"] == 1 and 0.0 <= summary["last_acc"] <= 100.0
    # CRD: the contrastive dataset fields flow through the same loop.
    crd_opts = opts + ["DISTILLER.TYPE", "CRD", "SOLVER.TRAINER", "crd", "CRD.NCE.K", "4"]
    summary = train(get_cfg(str(cfg_path), crd_opts), str(tmp_path / "out" / "crd"))
    assert summary["method"] == "CRD"


def test_amp_and_channels_last_on_cpu(tmp_path, teacher_ckpt):
    cfg = tiny_cfg(tmp_path, DISTILLER__TYPE="DKD", DISTILLER__STUDENT="resnet8", DISTILLER__TEACHER="resnet8",
                   DISTILLER__TEACHER_CKPT=teacher_ckpt, SOLVER__AMP=True, SOLVER__CHANNELS_LAST=True,
                   SOLVER__NESTEROV=True, SOLVER__LR_SCHEDULER="cosine")
    summary = train(cfg, str(tmp_path / "run"))
    rows = read_metrics(summary["log_path"])
    assert all(torch.isfinite(torch.tensor(float(rows[0][k]))) for k in ("train_loss", "test_loss"))


# ----------------------------------------------------------------------------- errors


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
    assert "download_ckpts.sh" in str(err.value) and missing in str(err.value)


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


def test_unsafe_checkpoint_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, path)
    with pytest.raises(RuntimeError, match="Refusing to load"):
        load_checkpoint(str(path))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "latest")
    save_checkpoint({"epoch": 1}, path)

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["latest"]


def test_failing_wandb_never_stops_training(tmp_path, monkeypatch):
    calls = []

    def failing_init(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("network unreachable")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=failing_init))
    cfg = tiny_cfg(tmp_path, DISTILLER__STUDENT="resnet8", LOG__WANDB=True)
    assert train(cfg, str(tmp_path / "a"))["epochs"] == 1 and calls

    class Run:
        summary = {}

        def log(self, *args, **kwargs):
            raise RuntimeError("rate limited")

        def finish(self):
            pass

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kwargs: Run()))
    assert train(tiny_cfg(tmp_path, DISTILLER__STUDENT="resnet8", LOG__WANDB=True), str(tmp_path / "b"))["epochs"] == 1


def test_download_script_skips_what_is_present(tmp_path):
    script = tmp_path / "download_ckpts.sh"
    script.write_text(open(os.path.join(REPO, "download_ckpts.sh")).read())
    (tmp_path / "download_ckpts" / "cifar_teachers" / "resnet56_vanilla").mkdir(parents=True)
    (tmp_path / "download_ckpts" / "cifar_teachers" / "resnet56_vanilla" / "ckpt_epoch_240.pth").write_bytes(b"x")
    env = dict(os.environ, PATH="/usr/bin:/bin")
    result = subprocess.run(["bash", str(script), "--teachers-only"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "have download_ckpts/cifar_teachers" in result.stdout
    assert "downloading" not in result.stdout


def test_wandb_offline_mode_logs_the_run(tmp_path, monkeypatch, teacher_ckpt):
    import wandb  # noqa: F401  (optional for users; CI installs it from requirements/ci.txt)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_cfg(tmp_path, DISTILLER__TYPE="KD", DISTILLER__STUDENT="resnet8", DISTILLER__TEACHER="resnet8",
                   DISTILLER__TEACHER_CKPT=teacher_ckpt, LOG__WANDB=True)
    summary = train(cfg, str(tmp_path / "run"))
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 1
    data = runs[0].read_bytes()
    for key in (b"test_acc", b"train_loss_kd", b"alignment/kl", b"best_acc"):
        assert key in data, key
    assert summary["epochs"] == 1


def test_imagenet_path_with_a_torchvision_teacher_from_the_hub_cache(tmp_path, monkeypatch):
    """DATASET.TYPE imagenet end to end: ImageFolder data, the ImageNet zoo, and the teacher's
    `pretrained=True` weights read from torch.hub's cache (the real download path, offline)."""
    from datagen import make_imagefolder
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
    from mdistiller.engine.trainer import Trainer

    trainer = Trainer(get_cfg(None, opts), str(tmp_path / "run"))
    teacher = trainer.distiller.teacher.state_dict()
    assert all(torch.equal(teacher[k], weights[k]) for k in weights)
    summary = trainer.train()
    assert summary["dataset"] == "imagenet" and summary["epochs"] == 1


def test_tiny_imagenet_runs_cifar_models_at_64px(tmp_path):
    from datagen import make_imagefolder

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
