"""benchmarks/throughput.py times every built-in method against KD; the benchmark scripts need only the package
(the test runs the script as ``python benchmarks/throughput.py`` would, in this process; it imports nothing from
``benchmarks/``)."""
import ast
import glob
import os
import re
import runpy
import sys

from mdistiller.distillers import distiller_dict, get_distiller_class
from mdistiller.engine.cfg import get_cfg
from tests.helpers.runutil import REPO

ARGS = ["--teacher", "resnet8x4", "--student", "resnet8", "--batch-size", "4", "--num-classes", "10",
        "--num-data", "200", "--device", "cpu", "--repeats", "1", "--no-data", "--no-memory"]
ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\d+\.\d\d)x\s+(\d+)\s+(\d+\.\d\d)x\s+(\d+\.\d\d)x\s+(\S+)(?:\s+(.*))?$")


def _builtin_labels():
    """The table label of every configuration a built-in method's class lists (``variants``; methods registered
    by tests are left out: only classes defined in the package count)."""
    labels = []
    for key, cls in distiller_dict.items():
        if not cls.__module__.startswith("mdistiller."):
            continue
        for overrides, _ in cls.variants():
            cfg = get_cfg(opts=["DISTILLER.TYPE", key])
            cfg.defrost()
            labels.append("Vanilla" if key == "NONE" else get_distiller_class(key).label(cfg.merge_from_dict(overrides)))
    return labels


def test_every_builtin_method_is_timed_against_kd(capsys, monkeypatch):
    expected = _builtin_labels()
    builtin_keys = [k for k, cls in distiller_dict.items() if cls.__module__.startswith("mdistiller.")]
    assert len(expected) == len(builtin_keys) + 2  # WKD (logit, feature) and OTKD (IPOT, REMD) give two rows
    script = os.path.join(REPO, "benchmarks", "throughput.py")
    monkeypatch.setattr(sys, "argv", [script] + ARGS)
    monkeypatch.syspath_prepend(os.path.dirname(script))  # as `python benchmarks/throughput.py` puts it first
    runpy.run_path(script, run_name="__main__")
    out = capsys.readouterr().out
    rows, flops, skipped = {}, {}, []
    for line in out.splitlines():
        if " skipped: " in line:
            skipped.append(line)
            continue
        match = ROW.match(line)
        if match:
            rows.setdefault(match.group(1), []).append(float(match.group(3)))
            flops.setdefault(match.group(1), []).append(float(match.group(6)))
    assert not [line for line in skipped if line.split()[0] in expected], skipped
    assert rows["KD"] == [1.0]
    assert sorted(label for label in rows for _ in rows[label] if label in expected) == sorted(expected)
    assert all(ratio > 0 for label in expected for ratio in rows[label])
    # FLOPs: the teacher's forward is KD's extra work over the student alone; ReviewKD adds its fusion convs.
    assert flops["KD"] == [1.0] and 0 < flops["Vanilla"][0] < 1
    assert all(ratio >= flops["Vanilla"][0] for label in expected for ratio in flops[label])
    assert flops["ReviewKD"][0] > 1.05


def test_benchmark_scripts_import_no_tests_and_leave_sys_path_alone():
    scripts = sorted(glob.glob(os.path.join(REPO, "benchmarks", "*.py")))
    assert scripts
    for path in scripts:
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            assert not [n for n in names if n == "tests" or n.startswith("tests.")], (path, names)
            is_sys_path = (isinstance(node, ast.Attribute) and node.attr == "path"
                           and isinstance(node.value, ast.Name) and node.value.id == "sys")
            assert not is_sys_path, "{}:{} uses sys.path".format(path, node.lineno)


def test_every_detection_method_is_timed_against_kd(capsys, monkeypatch):
    from mdistiller.registry import task_distillers

    script = os.path.join(REPO, "benchmarks", "detection_throughput.py")
    # small images and detector (the generated set's sizes), a light teacher; config overrides as KEY VALUE
    args = ["--teacher", "ResNet18", "--size", "96", "--batch-size", "2", "--repeats", "1", "--device", "cpu",
            "WKD.SPATIAL_GRID", "1", "DETECTION.FPN_CHANNELS", "16", "DETECTION.ROI_BOX_HEAD.FC_DIM", "32",
            "DETECTION.RPN.POST_NMS_TOPK_TRAIN", "32", "DETECTION.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16"]
    monkeypatch.setattr(sys, "argv", [script] + args)
    monkeypatch.syspath_prepend(os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")
    out = capsys.readouterr().out
    row = re.compile(r"^(.+?)\s+(\d+)\s+(\d+\.\d\d)x\s+(\d+)\s+(\d+\.\d\d)x$")
    ratios = {m.group(1): float(m.group(3)) for m in map(row.match, out.splitlines()) if m}
    assert ratios["KD"] == 1.0 and all(r > 0 for r in ratios.values())
    assert "without a row" not in out
    assert set(ratios) == {"student alone", "KD", "DKD", "FitNet", "ReviewKD", "ReviewKD+DKD", "WKD-L", "WKD-F",
                           "WKD-L+F"}
    assert {"KD", "DKD", "FITNET", "REVIEWKD", "WKD", "COMBINE"} <= set(task_distillers["detection"])
