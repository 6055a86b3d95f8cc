"""The command lines describe themselves: one-line errors, --help lists methods and models,
--print-config, --dry-run, and mdistiller-eval on a training run folder."""
import os

import pytest
import yaml

from mdistiller.benchmark.cli import main as benchmark_main
from mdistiller.engine.cfg import get_cfg, packaged_configs, resolve_config_path
from mdistiller.eval import main as eval_main
from mdistiller.train import main as train_main
from tests.helpers.runutil import REPO, read_metrics

QUICK = ["SOLVER.EPOCHS", "1", "SOLVER.BATCH_SIZE", "128", "EXPERIMENT.DEVICE", "cpu", "DATASET.NUM_WORKERS", "0"]


def _one_line_error(capsys, run):
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize("opts, expected", [
    (["DISTILLER.TYPE", "KDD"], "Unknown distiller 'KDD' (DISTILLER.TYPE). Valid names: "),
    (["DISTILLER.STUDENT", "resnet9"], "Unknown model 'resnet9'"),
    (["SOLVER.EPOCH", "1"], "Non-existent config key: SOLVER.EPOCH (check its spelling"),
    (["SOLVER.EPOCHS", "abc"], "for config key: SOLVER.EPOCHS (give a value of the key's type"),
    (["DISTILLER.TYPE", "KD", "DISTILLER.TEACHER_CKPT", "missing.pth"], "Checkpoint not found:"),
])
def test_train_user_errors_are_one_line(tmp_path, monkeypatch, capsys, opts, expected):
    monkeypatch.chdir(tmp_path)
    err = _one_line_error(capsys, lambda: train_main(["--cfg", "digits/vanilla.yaml", "LOG.PREFIX", "out"] + QUICK + opts))
    assert err.startswith("mdistiller-train: error: ") and expected in err
    assert not (tmp_path / "out").exists()


def test_missing_config_file_is_one_line_and_lists_the_packaged_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _one_line_error(capsys, lambda: train_main(["--cfg", "nope.yaml"]))
    assert "Config file not found: nope.yaml" in err and "digits/kd.yaml" in err


def test_explicit_teacher_checkpoint_gets_no_download_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _one_line_error(capsys, lambda: train_main(
        ["--cfg", "digits/kd.yaml", "DISTILLER.TEACHER_CKPT", "t.pth", "--dry-run"]))
    assert "download_ckpts.sh" not in err and "DISTILLER.TEACHER_CKPT" in err


def test_debug_shows_the_exception(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyError, match="Unknown distiller"):
        train_main(["--cfg", "digits/vanilla.yaml", "DISTILLER.TYPE", "KDD", "--debug"])


def test_eval_and_benchmark_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _one_line_error(capsys, lambda: eval_main(["-m", "resnet8", "-c", "nowhere.pth", "-d", "digits"]))
    assert err.startswith("mdistiller-eval: error: Checkpoint not found") and "download_ckpts" not in err
    err = _one_line_error(capsys, lambda: eval_main(["-m", "resnet9", "-c", "pretrain"]))
    assert "Unknown model 'resnet9'" in err and "resnet8" in err
    err = _one_line_error(capsys, lambda: benchmark_main(["--configs", "digits/vanilla.yaml", "SOLVER.EPOCHZ", "1"]))
    assert err.startswith("mdistiller-benchmark: error: digits/vanilla.yaml: Non-existent config key: SOLVER.EPOCHZ")
    err = _one_line_error(capsys, lambda: benchmark_main(["--configs", "nope.yaml"]))
    assert "Config file not found: nope.yaml" in err
    assert os.listdir(str(tmp_path)) == []  # nothing ran


def test_help_lists_every_method_and_model(capsys):
    import mdistiller.distillers  # noqa: F401
    from mdistiller import models
    from mdistiller.registry import distiller_dict

    with pytest.raises(SystemExit) as exit_info:
        train_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for key, cls in distiller_dict.items():
        if cls.__module__.startswith("mdistiller."):  # the built-in ones (tests register methods of their own)
            assert "  {} ".format(key) in out and cls.description() in out, key
    zoos = [models.cifar_model_dict, models.imagenet_model_dict, getattr(models, "tiny_imagenet_model_dict", {})]
    for name in (n for zoo in zoos for n in zoo):
        assert name in out, name
    from mdistiller.engine.cfg import packaged_configs

    listed, folder = set(), None
    for line in out[out.index("shipped configs"):].splitlines()[1:]:  # "  digits/: at, crd, ..." and continuations
        if not line.startswith("    "):
            folder, line = line.split(": ", 1)
        listed |= {"{}{}.yaml".format(folder.strip(), name.strip()) for name in line.split(",")}
    assert listed == set(packaged_configs())
    assert "--dry-run" in out and "--print-config" in out


def test_help_reads_methods_and_models_from_the_sources_as_the_registry_has_them():
    """--help lists them without importing torch (mdistiller.catalogue): the same keys, descriptions and names."""
    import mdistiller.distillers  # noqa: F401
    from mdistiller import catalogue, models
    from mdistiller.registry import distiller_dict

    from mdistiller.models.detection import DETECTION_BACKBONES
    from mdistiller.registry import task_distillers

    builtin = [(key, cls.description()) for key, cls in distiller_dict.items() if cls.__module__.startswith("mdistiller.")]
    assert catalogue.builtin_methods() == builtin  # (tests register methods of their own)
    detection = [(key, cls.description()) for key, cls in task_distillers["detection"].items()]
    assert sorted(catalogue.builtin_methods("detection")) == sorted(detection)
    assert catalogue.model_names() == {"cifar": list(models.cifar_model_dict),
                                       "imagenet": list(models.imagenet_model_dict),
                                       "tiny_imagenet": list(models.tiny_imagenet_model_dict),
                                       "detection": list(DETECTION_BACKBONES)}


def test_print_config_prints_the_merged_config_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    train_main(["--cfg", "digits/kd.yaml", "KD.TEMPERATURE", "2", "--print-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["KD"]["TEMPERATURE"] == 2 and printed["DISTILLER"]["TYPE"] == "KD"
    assert printed["DATASET"]["TYPE"] == "digits"
    assert os.listdir(str(tmp_path)) == []


def test_dry_run_steps_once_and_writes_nothing(tmp_path, monkeypatch, capsys, teacher_ckpt):
    monkeypatch.chdir(tmp_path)
    report = train_main(["--cfg", "digits/kd.yaml", "--dry-run", "LOG.PREFIX", "out", "DISTILLER.TEACHER", "resnet8",
                         "DISTILLER.TEACHER_CKPT", teacher_ckpt] + QUICK)
    out = capsys.readouterr().out
    assert "train step" in out and "validation step" in out and "MiB" in out and "nothing written" in out
    assert set(report["losses"]) == {"loss_ce", "loss_kd"} and report["train_step_s"] > 0
    assert not (tmp_path / "out").exists()
    assert os.listdir(str(tmp_path)) == []


def test_packaged_configs_resolve_and_are_the_repositorys(tmp_path, monkeypatch):
    assert "digits/kd.yaml" in packaged_configs() and "digits/teacher.yaml" in packaged_configs()
    monkeypatch.chdir(tmp_path)
    for name in ("digits/kd.yaml", "configs/digits/kd.yaml"):
        assert os.path.samefile(resolve_config_path(name), os.path.join(REPO, "configs", "digits", "kd.yaml"))
    assert get_cfg("digits/kd.yaml") == get_cfg(os.path.join(REPO, "configs", "digits", "kd.yaml"))
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "kd.yaml").write_text("SOLVER:\n  EPOCHS: 3\n")
    assert get_cfg("digits/kd.yaml").SOLVER.EPOCHS == 3  # a file here wins over the packaged one


def test_eval_reads_a_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # Three epochs at batch 10 lift the 16x16 run well above chance (a net predicting one class scores at most
    # the largest class's share of the test split, about 10%), so an evaluation at another input size or with
    # another model would not reproduce the accuracy by accident.
    opts = QUICK + ["SOLVER.EPOCHS", "3", "SOLVER.BATCH_SIZE", "10"]
    summary = train_main(["--cfg", "digits/vanilla.yaml", "LOG.PREFIX", "out", "LOG.PROGRESS_BAR", "False"] + opts)
    run = summary["log_path"]
    rows = read_metrics(run)
    best = max(float(r["test_acc"]) for r in rows)
    assert best == summary["best_acc"] > 25.0
    assert float(rows[-1]["test_acc"]) == summary["last_acc"]
    top1, _, _ = eval_main(["-c", run, "--device", "cpu", "--workers", "0"])  # model and dataset from config.yaml
    assert top1 == pytest.approx(best, abs=1e-9)
    top1, _, _ = eval_main(["-c", os.path.join(run, "student_latest"), "--device", "cpu", "--workers", "0"])
    assert top1 == pytest.approx(summary["last_acc"], abs=1e-9)
    for name in ("student_best", "student_latest"):  # the student inside the trainer's `latest`
        os.remove(os.path.join(run, name))
    top1, _, _ = eval_main(["-c", run, "--device", "cpu", "--workers", "0"])
    assert top1 == pytest.approx(summary["last_acc"], abs=1e-9)
    assert "run folder" in capsys.readouterr().out
