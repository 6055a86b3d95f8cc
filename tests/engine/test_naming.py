"""Run folder names (mdistiller's rule)."""
import hashlib
import os

from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.naming import experiment_name, run_dir


def test_name_is_tag_plus_overrides_without_the_prefix():
    opts = ["SOLVER.EPOCHS", "3", "LOG.PREFIX", "/tmp/x", "KD.TEMPERATURE", "2"]
    cfg = get_cfg(None, ["EXPERIMENT.TAG", "kd,res8", "EXPERIMENT.PROJECT", "proj"] + opts)
    assert experiment_name(cfg, opts) == os.path.join("proj", "kd,res8,SOLVER.EPOCHS:3,KD.TEMPERATURE:2")
    assert run_dir(cfg, opts) == os.path.join("/tmp/x", "proj", "kd,res8,SOLVER.EPOCHS:3,KD.TEMPERATURE:2")
    cfg = get_cfg(None, ["EXPERIMENT.NAME", "mine", "EXPERIMENT.TAG", "kd"])
    assert experiment_name(cfg) == os.path.join(cfg.EXPERIMENT.PROJECT, "mine")


def test_paths_in_overrides_are_named_by_their_file_and_long_names_are_capped():
    opts = ["DISTILLER.TEACHER_CKPT", os.path.join("runs", "t", "student_best")]
    cfg = get_cfg(None, ["EXPERIMENT.TAG", "kd", "EXPERIMENT.PROJECT", "p"] + opts)
    name = os.path.basename(experiment_name(cfg, opts))
    digest = hashlib.sha1(opts[1].encode("utf-8")).hexdigest()[:8]
    assert name == "kd,DISTILLER.TEACHER_CKPT:student_best~" + digest  # the file's name, not the whole path
    other = ["DISTILLER.TEACHER_CKPT", os.path.join("runs", "u", "student_best")]
    assert os.path.basename(experiment_name(cfg, other)) != name  # another teacher file, another folder
    opts = ["DISTILLER.TEACHER_CKPT", "x" * 300]
    first = os.path.basename(experiment_name(cfg, opts))
    assert len(first) == 171 and first[160] == "~"
    assert first != os.path.basename(experiment_name(cfg, ["DISTILLER.TEACHER_CKPT", "x" * 299]))
