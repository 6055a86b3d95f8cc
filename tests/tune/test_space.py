"""mdistiller-tune's search spaces and suite checks: every declared space gives valid configs, every mistake is one
line before anything runs, Optuna's absence names the extra, and the trial reporter prunes as the study says."""
import json
import os
import sys

import pytest
import torch

from mdistiller.distillers import build_distiller, distiller_dict, get_distiller_class
from mdistiller.engine.cfg import get_cfg
from mdistiller.models import cifar_model_dict
from mdistiller.tune import cli as tune_cli
from mdistiller.tune.space import apply_point, config_value, distributions, search_space
from tests.helpers.benchutil import write_config

optuna = pytest.importorskip("optuna")
TEACHER, STUDENT, CLASSES, BATCH, NUM_DATA = "resnet8x4", "resnet8", 10, 4, 64


def _spaces():
    """``(key, cfg, space)`` of every built-in method's configurations (``variants``) with a search space."""
    student = cifar_model_dict[STUDENT][0](num_classes=CLASSES)
    teacher = cifar_model_dict[TEACHER][0](num_classes=CLASSES)
    found = []
    for key, cls in distiller_dict.items():
        if not cls.__module__.startswith("mdistiller."):
            continue
        for overrides, _ in cls.variants():
            cfg = get_cfg(opts=["DISTILLER.TYPE", key, "DISTILLER.STUDENT", STUDENT, "DISTILLER.TEACHER", TEACHER])
            cfg.defrost()
            cfg.merge_from_dict(overrides).merge_from_dict(cls.pair_settings(cfg, student, teacher))
            space = search_space(cfg)
            if space:
                found.append((key, cfg, space))
    return found


SPACES = _spaces()


def test_the_methods_of_the_issue_declare_their_knobs():
    keys = {}
    for key, _, space in SPACES:  # over the method's variants (WKD-L's and WKD-F's knobs)
        keys.setdefault(key, set()).update(space)
    assert {"KD.TEMPERATURE", "KD.LOSS.KD_WEIGHT"} <= keys["KD"]
    assert {"DKD.ALPHA", "DKD.BETA"} <= keys["DKD"]
    assert {"WKD.SINKHORN.LAMBDA", "WKD.SINKHORN.ITER", "WKD.LOSS.WKD_LOGIT_WEIGHT"} <= keys["WKD"]
    assert {"WKL.KL_WEIGHT", "WKD.LOSS.WKD_LOGIT_WEIGHT"} <= keys["WKL"]
    builtin = {k for k, cls in distiller_dict.items() if cls.__module__.startswith("mdistiller.")}
    assert builtin - {"NONE", "COMBINE"} <= set(keys)  # every built-in method but these has knobs


@pytest.mark.parametrize("key,cfg,space", SPACES, ids=[k for k, _, _ in SPACES])
def test_every_declared_space_builds_a_valid_config_at_a_sampled_point(key, cfg, space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=len(key)), direction="maximize")
    point = study.ask(distributions(space)).params
    tuned = apply_point(cfg, point)
    for name, value in point.items():
        assert config_value(tuned, name) == value and type(config_value(tuned, name)) is type(config_value(cfg, name))
        p = space[name]
        assert p.kind == "categorical" or p.low <= value <= p.high
    torch.manual_seed(0)
    student = cifar_model_dict[STUDENT][0](num_classes=CLASSES)
    teacher = cifar_model_dict[TEACHER][0](num_classes=CLASSES)
    distiller = build_distiller(tuned, student, teacher, num_data=NUM_DATA).train()
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(BATCH, 3, 32, 32, generator=g), "target": torch.randint(0, CLASSES, (BATCH,), generator=g)}
    k = get_distiller_class(key).data_needs(tuned).contrastive_k
    if k > 0:
        index = torch.randperm(NUM_DATA, generator=g)[:BATCH]
        negatives = torch.randint(0, NUM_DATA, (BATCH, k), generator=g)
        batch.update(index=index, contrastive_index=torch.cat([index.unsqueeze(1), negatives], 1))
    _, losses = distiller(epoch=1, **batch)
    assert losses and all(torch.isfinite(v).all() for v in losses.values())


def suite(tmp_path, tune=None, opts=("DATASET.VAL_SPLIT", "2"), configs=None):
    configs = configs or [write_config(tmp_path, "kd", "KD"), write_config(tmp_path, "vanilla", "NONE", teacher="resnet20")]
    teacher = tmp_path / "teacher.pth"  # checked to exist before anything runs; never read by these tests
    teacher.write_bytes(b"")
    opts = list(opts) + ["DISTILLER.TEACHER_CKPT", str(teacher)]
    path = tmp_path / "suite.yaml"
    with open(path, "w") as f:
        json.dump({"configs": configs, "seeds": [0], "opts": list(opts), "tune": tune or {}}, f)  # JSON is YAML
    return str(path)


@pytest.mark.parametrize("tune,opts,message", [
    ({"search_space": {"KD": {"KD.TEMPRATURE": {"low": 1, "high": 4}}}}, None, "unknown config key KD.TEMPRATURE"),
    ({"search_space": {"KD": {"KD.TEMPERATURE": {"low": 4, "high": 4}}}}, None, "empty range [4.0, 4.0]"),
    ({"search_space": {"KD": {"KD.LOSS.KD_WEIGHT": {"factor": 1}}}}, None, "empty range: factor 1"),
    ({"search_space": {"KD": {"SOLVER.LR": {"low": 0, "high": 0.1, "log": True}}}}, None, "a log range needs low > 0"),
    ({"search_space": {"KD": {"DATASET.VAL_SPLIT": {"low": 1, "high": 4}}}}, None, "belongs to the run's protocol"),
    ({"search_space": {"DKD": {"DKD.T": {"low": 1, "high": 4}}}}, None, "DKD, which is no method label or run name"),
    ({"trails": 3}, None, "unknown tune setting(s) trails"),
    ({"pruner": "median", "pruner_options": {"warmup": 3}}, None, "tune pruner_options"),
    ({}, ("SOLVER.EPOCHS", "1"), "set DATASET.VAL_SPLIT"),
])
def test_suite_mistakes_are_one_line_before_anything_runs(tmp_path, capsys, tune, opts, message):
    path = suite(tmp_path, tune, **({"opts": opts} if opts else {}))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        tune_cli.main(["--suite", path, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("mdistiller-tune: error: ")
    assert message in err[0], err[0]
    assert not out.exists()


def test_dry_run_prints_each_study_and_runs_nothing(tmp_path, capsys):
    path = suite(tmp_path, {"trials": 3, "search_space": {"KD": {"KD.LOSS.CE_WEIGHT": None}}})
    assert tune_cli.main(["--suite", path, "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "KD (kd): KD.TEMPERATURE [1, 8]; KD.LOSS.KD_WEIGHT [0.09, 9] log" in out
    assert "student (vanilla): no search space" in out and "3 trials per method at EXPERIMENT.SEED 1" in out
    assert not (tmp_path / "out").exists()


def test_without_optuna_the_command_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(SystemExit) as exit_info:
        tune_cli.main(["--suite", suite(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err == [
        "mdistiller-tune: error: this needs the optional package optuna (pip install 'mdistiller[tune]')"]


def test_the_trial_reporter_reports_each_epoch_and_prunes_below_the_median(tmp_path):
    from mdistiller.tune.study import PRUNED_FILE, journal_storage
    from mdistiller.tune.trial import TrialPruned, make_reporter

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = str(tmp_path / "journal.log")
    study = optuna.create_study(study_name="kd", storage=journal_storage(journal), direction="maximize")
    first = study.ask()
    for epoch, value in ((1, 90.0), (2, 95.0)):
        first.report(value, epoch)
    study.tell(first, 95.0)
    second = study.ask()
    info = {"journal": journal, "study": "kd", "trial_id": second._trial_id, "number": second.number,
            "pruner": "median", "pruner_options": {"n_startup_trials": 1, "n_warmup_steps": 0}}
    make_reporter(info, str(tmp_path)).log_epoch({"epoch": 1, "val_acc": 91.0}, {})  # above the median (90): on
    assert not os.path.exists(os.path.join(str(tmp_path), PRUNED_FILE))
    reporter = make_reporter(info, str(tmp_path))  # a resumed trial: epoch 1 is not reported twice
    assert reporter.reported == {1}
    reporter.log_epoch({"epoch": 1, "val_acc": 0.0}, {})
    # MedianPruner compares the trial's best so far (91) with the median at epoch 2 (95)
    with pytest.raises(TrialPruned, match="pruned at epoch 2"):
        reporter.log_epoch({"epoch": 2, "val_acc": 80.0}, {})
    assert study.trials[1].intermediate_values == {1: 91.0, 2: 80.0}
    with open(os.path.join(str(tmp_path), PRUNED_FILE)) as f:
        assert json.load(f) == {"epoch": 2, "val_acc": 80.0}
