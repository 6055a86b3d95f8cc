"""Detection runs end to end on the generated COCO-format set: the configs, the teacher's cost matrix, dry runs of
every method, a killed and resumed run, torchrun with two processes."""
import glob
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from mdistiller.cost_matrix import main as cost_matrix
from mdistiller.engine.build import model_zoo
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.engine.dry_run import dry_run
from mdistiller.engine.trainer import train
from mdistiller.eval import main as evaluate
from mdistiller.registry import task_distillers
from tests.detection.conftest import TINY, coco_layout
from tests.helpers.runutil import REPO, read_metrics

COCO_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "coco", "*", "*.yaml")))
SHAPES_CONFIGS = sorted(glob.glob(os.path.join(REPO, "mdistiller", "configs", "shapes", "*.yaml")))
# One dry run per detection method, the three pairs taking turns (every pair's models and teacher layout run; the
# cheapest pair most often: building a ResNet101 costs a second here).
DRY_RUNS = ("vanilla/mv2", "kd/r50_mv2", "dkd/r101_r18", "fitnet/r50_mv2", "reviewkd/r101_r50",
            "reviewkd_dkd/r50_mv2", "wkd_l/r101_r18", "wkd_f/r50_mv2", "wkd_lf/r50_mv2")
TRAIN = [sys.executable, "-m", "mdistiller.train"]
EPOCHS = 2


def test_every_detection_config_names_registered_methods_and_models():
    assert len(COCO_CONFIGS) == 8 * 3 + 4 and len(SHAPES_CONFIGS) == 10
    methods = set()
    for path in COCO_CONFIGS + SHAPES_CONFIGS:
        cfg = get_cfg(path)
        assert cfg.DISTILLER.TYPE in task_distillers["detection"], path
        parts = cfg.COMBINE.METHODS if cfg.DISTILLER.TYPE == "COMBINE" else [cfg.DISTILLER.TYPE]
        assert all(part in task_distillers["detection"] for part in parts), path
        assert {cfg.DISTILLER.STUDENT, cfg.DISTILLER.TEACHER} <= set(model_zoo(cfg.DATASET.TYPE)), path
        methods.add(os.path.basename(os.path.dirname(path)))
    assert {os.path.dirname(name) for name in DRY_RUNS} == methods - {"shapes"}


@pytest.fixture(scope="module")
def cost_file(shapes_root, teachers):
    """WKD-L's (K + 1) x (K + 1) cost matrix of the ResNet101 teacher, written by mdistiller-cost-matrix."""
    out = str(shapes_root / "box_linear_cka.pth")
    cost_matrix(["--cfg", os.path.join(REPO, "configs", "coco", "vanilla", "r101.yaml"), "--teacher", "ResNet101",
                 "--ckpt", teachers["ResNet101"], "--out", out, "--max-per-class", "2", "--device", "cpu",
                 "--opts"] + TINY + coco_layout(shapes_root))
    return out


@pytest.mark.slow
def test_every_detection_method_runs_a_step_from_its_config(shapes_root, teachers, cost_file):
    cost = torch.load(cost_file, weights_only=True)
    assert cost.shape == (5, 5) and torch.equal(cost, cost.t()) and not cost.diagonal().any()
    assert float(cost.min()) >= 0.0 and float(cost.max()) <= 1.0
    for name in DRY_RUNS:
        cfg = get_cfg(os.path.join(REPO, "configs", "coco", name + ".yaml"))
        opts = TINY + coco_layout(shapes_root) + ["DISTILLER.TEACHER_CKPT", teachers[cfg.DISTILLER.TEACHER],
                                                  "WKD.COST_MATRIX_PATH", cost_file, "LOG.PREFIX",
                                                  str(shapes_root / "never")]
        report = dry_run(get_cfg(os.path.join(REPO, "configs", "coco", name + ".yaml"), opts))
        assert (report["train_batch"], report["val_batch"]) == (2, 2), name
        assert {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"} <= set(report["losses"])
        assert all(torch.isfinite(torch.tensor(v)) for v in report["losses"].values()), (name, report["losses"])
        assert len(report["losses"]) > 4 or name.startswith("vanilla"), name
    assert not (shapes_root / "never").exists()


def _opts(root, teacher, prefix, epochs):
    return TINY + ["DATASET.ROOT", str(root), "DISTILLER.TEACHER_CKPT", teacher, "LOG.PREFIX", str(prefix),
                   "SOLVER.EPOCHS", str(epochs), "EXPERIMENT.TAG", "run", "SOLVER.WARMUP_ITERS", "3"]


@pytest.mark.slow
def test_a_killed_detection_run_resumes_to_the_same_result(shapes_root, teachers, tmp_path):
    # ReviewKD+DKD (features and RoI logits) with DOT's two momentum buffers (the detector's four losses on the task
    # side) and a warm-up that crosses the kill: two epochs of two steps, killed after the first.
    config = os.path.join(REPO, "configs", "shapes", "reviewkd_dkd.yaml")
    extra = ["SOLVER.TRAINER", "dot", "DISTILLER.TEACHER", "ResNet18"]
    reference = train(get_cfg(config, _opts(shapes_root, teachers["ResNet18"], tmp_path / "ref", EPOCHS) + extra),
                      str(tmp_path / "ref" / "run"))
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")  # the same one thread as this process
    cmd = TRAIN + ["--cfg", config] + _opts(shapes_root, teachers["ResNet18"], tmp_path / "kill", EPOCHS) + extra
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        deadline, latest = time.time() + 300, None
        while time.time() < deadline and proc.poll() is None and latest is None:
            latest = next(iter(glob.glob(str(tmp_path / "kill" / "*" / "*" / "latest"))), None)
            time.sleep(0.02)
        assert latest is not None and proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        proc.kill()  # SIGKILL
        proc.wait()
    killed_at = load_checkpoint(latest)["epoch"]
    assert killed_at < EPOCHS
    subprocess.run(cmd + ["--resume"], check=True, env=env, capture_output=True)
    run = os.path.dirname(latest)
    assert read_metrics(run) == read_metrics(reference["log_path"])
    a = load_checkpoint(os.path.join(reference["log_path"], "student_latest"))["model"]
    b = load_checkpoint(os.path.join(run, "student_latest"))["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with open(os.path.join(run, "summary.json")) as f:
        summary = json.load(f)
    rows = read_metrics(run)
    assert summary["metric"] == "test_ap" and summary["last_acc"] == float(rows[-1]["test_ap"])
    assert set(summary["last_metrics"]) == {"test_ap", "test_ap50", "test_ap75", "test_aps", "test_apm", "test_apl"}
    assert "resumed from epoch {}".format(killed_at) in open(os.path.join(run, "worklog.txt")).read()


@pytest.mark.slow
def test_torchrun_two_processes_evaluate_the_whole_validation_set(shapes_root, teachers, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mdistiller.train", "--cfg", os.path.join(REPO, "configs", "shapes", "wkd_lf.yaml"),
           "WKD.COST_MATRIX", "fc", "DISTILLER.TEACHER", "ResNet18"]
    cmd += _opts(shapes_root, teachers["ResNet18"], tmp_path, 1)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = next(tmp_path.glob("*/run*"))
    with open(run / "env.json") as f:
        assert json.load(f)["world_size"] == 2
    rows = read_metrics(str(run))
    # AP over both shards (detections gathered on rank 0) = the saved student evaluated in one process
    metrics = evaluate(["-c", str(run / "student_latest"), "--device", "cpu", "--workers", "0", "-bs", "1"])
    assert metrics["test_ap"] == pytest.approx(float(rows[0]["test_ap"]), abs=1e-9)
    assert metrics["test_ap50"] == pytest.approx(float(rows[0]["test_ap50"]), abs=1e-9)


def test_a_detection_run_selects_on_its_validation_split_and_tests_at_the_end(teachers, tmp_path):
    # Whole training images held out (one per stratum), scored with COCOeval against the training json on their
    # ids; the test set is evaluated once, on the last and the val-best model.
    from mdistiller.dataset.shapes import write_shapes

    write_shapes(str(tmp_path / "shapes"), num_train=10, num_val=2, size=96, max_objects=3, seed=5)
    opts = _opts(tmp_path, teachers["ResNet18"], tmp_path / "out", 2) + coco_layout(tmp_path)
    opts += ["DATASET.VAL_SPLIT", "1", "DATASET.TEST_AT_END_ONLY", "True"]
    summary = train(get_cfg(os.path.join(REPO, "configs", "shapes", "kd.yaml"), opts + ["DISTILLER.TEACHER",
                                                                                        "ResNet18"]),
                    str(tmp_path / "out" / "run"))
    run = summary["log_path"]
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert "val_ap" in rows[0] and "val_ap50" in rows[0] and "test_ap" not in rows[0]
    with open(os.path.join(run, "val_split.json")) as f:
        split = json.load(f)
    assert split["val_size"] == len(split["val_indices"]) >= 1 and summary["val_split_sha256"] == split["sha256"]
    val_ap = [float(r["val_ap"]) for r in rows]
    assert summary["val_best_acc"] == max(val_ap) and summary["val_best_epoch"] == 1 + val_ap.index(max(val_ap))
    assert summary["metric"] == "test_ap" and summary["best_acc"] is None
    assert set(summary["last_metrics"]) == {"test_ap", "test_ap50", "test_ap75", "test_aps", "test_apm", "test_apl"}
    # the number reported at the val-best epoch is that checkpoint's test AP
    metrics = evaluate(["-c", os.path.join(run, "student_val_best"), "--device", "cpu", "--workers", "0"])
    assert metrics["test_ap"] == pytest.approx(summary["test_top1_at_val_best"], abs=1e-9)
