"""The config: mdistiller's yaml files merge unchanged, every shipped config merges, clear errors."""
import glob
import os

import pytest

from mdistiller.distillers import distiller_dict
from mdistiller.engine.cfg import CFG, get_cfg
from tests.helpers.runutil import REPO

MDISTILLER_YAMLS = [
    os.path.join(REPO, "tests", "fixtures", name)
    for name in ("mdistiller_cifar100_dkd_res32x4_res8x4.yaml", "mdistiller_imagenet_crd_res34_res18.yaml")
]


def test_mdistiller_yaml_files_merge_unchanged():
    for path in MDISTILLER_YAMLS:
        cfg = get_cfg(path)
        assert cfg.SOLVER.TYPE == "SGD"
    assert cfg.CRD.FEAT.STUDENT_DIM == 512 and cfg.SOLVER.TRAINER == "crd" and cfg.DATASET.NUM_WORKERS == 32


def test_every_shipped_config_merges():
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


def test_merge_from_dict_sets_dotted_keys_like_the_command_line():
    cfg = CFG.clone().merge_from_dict(
        {"DKD.ALPHA": 3, "SOLVER.EPOCHS": "7", "COMBINE.METHODS": ["CRD", "KD"], "WKD.LOSS.KL_WEIGHT": 2},
    )
    assert cfg.DKD.ALPHA == 3.0 and isinstance(cfg.DKD.ALPHA, float)
    assert cfg.SOLVER.EPOCHS == 7 and isinstance(cfg.SOLVER.EPOCHS, int)
    assert cfg.COMBINE.METHODS == ["CRD", "KD"]
    assert cfg.WKL.KL_WEIGHT == 2.0 and isinstance(cfg.WKL.KL_WEIGHT, float)  # old key name renamed
    assert cfg == get_cfg(None, ["DKD.ALPHA", "3", "SOLVER.EPOCHS", "7", "COMBINE.METHODS", "['CRD', 'KD']",
                                 "WKD.LOSS.KL_WEIGHT", "2"])


def test_merge_from_dict_unknown_key_or_wrong_type_names_the_key():
    with pytest.raises(KeyError, match="SOLVER.LEARNING_RATE"):
        CFG.clone().merge_from_dict({"SOLVER.LEARNING_RATE": 0.1})
    with pytest.raises(ValueError, match="SOLVER.EPOCHS"):
        CFG.clone().merge_from_dict({"SOLVER.EPOCHS": "ten"})


# The released WKL config for resnet32x4 -> resnet8x4 (Changhy26/WKL@77d4647, configs/cifar100/wkd_l/
# res32x4_res8x4.yaml): DISTILLER.TYPE WKD with the release's WKD.LOSS.KL_WEIGHT, now WKL.KL_WEIGHT.
RELEASED_WKL_YAML = """\
EXPERIMENT: {NAME: "", TAG: "wkd_l,res32x4,res8x4", PROJECT: "cifar100_baselines", SEED: 42}
DISTILLER: {TYPE: "WKD", TEACHER: "resnet32x4", STUDENT: "resnet8x4"}
SOLVER:
  BATCH_SIZE: 64
  EPOCHS: 240
  LR: 0.05
  LR_DECAY_STAGES: [150, 180, 210]
  LR_DECAY_RATE: 0.1
  WEIGHT_DECAY: 0.0005
  MOMENTUM: 0.9
  TYPE: "SGD"
WKD:
  INPUT_SIZE: (32, 32)
  LOSS: {CE_WEIGHT: 1.0, WKD_LOGIT_WEIGHT: 600.0, WKD_FEAT_WEIGHT: 0.0, COSINE_DECAY_EPOCH: 150, KL_WEIGHT: 0.5}
  SINKHORN: {LAMBDA: 0.05, ITER: 10}
  COST_MATRIX: 'cka'
  COST_MATRIX_PATH: "wkd_cost_matrix/cifar100/resnet32x4/linear_cka.pth"
  COST_MATRIX_SHARPEN: 1.0
  TEMPERATURE: 8.0
LOG: {WANDB: False, TENSORBOARD_FREQ: 10, SAVE_CHECKPOINT_FREQ: 40}
"""
# The WKD release's layout of a WKD-F config (the same fork, configs/cifar100/wkd_f/res32x4_res8x4.yaml), with
# integers written for float keys as users do.
RELEASED_WKD_F_YAML = """\
DISTILLER: {TYPE: "WKD", TEACHER: "resnet32x4", STUDENT: "resnet8x4"}
WKD:
  INPUT_SIZE: (32, 32)
  LOSS: {CE_WEIGHT: 1, WKD_LOGIT_WEIGHT: 0, WKD_FEAT_WEIGHT: 0.08, COSINE_DECAY_EPOCH: 150, KL_WEIGHT: 2}
  EPS: 0.00001
  HINT_LAYER: -1
  MEAN_COV_RATIO: 4
  PROJECTOR: "conv1x1"
  SPATIAL_GRID: 1
"""


def test_the_config_object_merges_released_yamls_as_the_command_line_does(tmp_path):
    """mdistiller's Python API, ``cfg = CFG.clone(); cfg.merge_from_file(path)``, renames old keys and accepts
    integers for float keys itself; ``merge_from_list`` too."""
    for name, text in (("wkl.yaml", RELEASED_WKL_YAML), ("wkd_f.yaml", RELEASED_WKD_F_YAML)):
        (tmp_path / name).write_text(text)
    cfg = CFG.clone()
    cfg.merge_from_file(str(tmp_path / "wkl.yaml"))
    assert cfg.DISTILLER.TYPE == "WKD" and cfg.WKD.LOSS.WKD_LOGIT_WEIGHT == 600.0 and cfg.WKD.TEMPERATURE == 8.0
    assert cfg.WKL.KL_WEIGHT == 0.5 and "KL_WEIGHT" not in cfg.WKD.LOSS
    assert cfg == get_cfg(str(tmp_path / "wkl.yaml"))
    cfg.merge_from_list(["WKD.LOSS.KL_WEIGHT", "2", "SOLVER.LR", "1"])
    assert cfg.WKL.KL_WEIGHT == 2.0 and cfg.SOLVER.LR == 1.0 and isinstance(cfg.SOLVER.LR, float)
    cfg = CFG.clone()
    cfg.merge_from_file(str(tmp_path / "wkd_f.yaml"))
    assert (cfg.WKD.LOSS.CE_WEIGHT, cfg.WKD.LOSS.WKD_LOGIT_WEIGHT, cfg.WKD.MEAN_COV_RATIO) == (1.0, 0.0, 4.0)
    assert isinstance(cfg.WKD.LOSS.WKD_LOGIT_WEIGHT, float) and cfg.WKL.KL_WEIGHT == 2.0
    assert cfg.WKD.INPUT_SIZE == (32, 32) and cfg.WKD.HINT_LAYER == -1
    for path in MDISTILLER_YAMLS:
        cfg = CFG.clone()
        cfg.merge_from_file(path)
        assert cfg == get_cfg(path)
