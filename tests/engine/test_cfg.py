"""The config: mdistiller's yaml files merge unchanged, every shipped config merges, clear errors."""
import glob
import os

import pytest

from mdistiller.distillers import distiller_dict
from mdistiller.engine.cfg import CFG, get_cfg, merge_from_dict
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
    cfg = merge_from_dict(
        CFG.clone(),
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
        merge_from_dict(CFG.clone(), {"SOLVER.LEARNING_RATE": 0.1})
    with pytest.raises(ValueError, match="SOLVER.EPOCHS"):
        merge_from_dict(CFG.clone(), {"SOLVER.EPOCHS": "ten"})
