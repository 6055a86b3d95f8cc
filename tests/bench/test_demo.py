"""The demo finds its methods in configs/digits/ (labels from the registry), in a fixed table order, and keeps
the runs of different CPU kernels apart."""
import csv
import importlib.util
import os

import pytest

from tests.helpers.runutil import REPO


def _demo():
    spec = importlib.util.spec_from_file_location("demo_tool", os.path.join(REPO, "tools", "demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_discovers_the_digits_configs_in_table_order():
    demo = _demo()
    config_dir = os.path.join(REPO, "configs", "digits")
    methods, skipped = demo.demo_methods(config_dir, os.path.join(config_dir, "teacher.yaml"))
    assert skipped == []
    # the default selection: the arms of the demo's protocol (tools/demo.py), in table order, over 8 seeds
    chosen = demo.select_methods(methods)
    assert [(os.path.basename(p), key) for p, key, _ in chosen] == [
        ("vanilla.yaml", "NONE"), ("kd.yaml", "KD"), ("dkd.yaml", "DKD"), ("wkd_l.yaml", "WKD"), ("ipot.yaml", "OTKD"),
    ]
    assert [label for _, _, label in chosen] == ["student", "KD", "DKD", "WKD-L", "IPOT"]
    assert list(demo.DEFAULT_SEEDS) == list(range(8))
    # --methods all: every registered method has a digits config, plus KD+LS and KD+DOT
    from mdistiller.registry import distiller_dict

    everything = demo.select_methods(methods, ["all"])
    builtin = {key for key, cls in distiller_dict.items() if cls.__module__.startswith("mdistiller.")}
    assert {key for _, key, _ in everything} == builtin - {"COMBINE"}
    assert {"KD+LS", "KD+DOT", "FitNet", "ReviewKD"} <= {label for _, _, label in everything}
    assert [m[2] for m in demo.select_methods(methods, ["FitNet", "KD"])] == ["KD", "FitNet"]


def test_demo_picks_up_a_new_config_and_skips_unknown_methods(tmp_path):
    demo = _demo()
    (tmp_path / "teacher.yaml").write_text('DISTILLER:\n  TYPE: "NONE"\n  TEACHER: "resnet20"\n  STUDENT: "resnet20"\n')
    (tmp_path / "kd.yaml").write_text('DISTILLER:\n  TYPE: "KD"\n')
    (tmp_path / "a_vanilla.yaml").write_text('DISTILLER:\n  TYPE: "NONE"\n  STUDENT: "resnet8"\n')
    (tmp_path / "mlkd.yaml").write_text('DISTILLER:\n  TYPE: "MLKD"\n')  # a method not implemented here
    methods, skipped = demo.demo_methods(str(tmp_path), str(tmp_path / "teacher.yaml"))
    assert [(os.path.basename(p), label) for p, _, label in methods] == [("a_vanilla.yaml", "student"),
                                                                         ("kd.yaml", "KD")]
    assert [(os.path.basename(p), key) for p, key, _ in skipped] == [("mlkd.yaml", "MLKD")]


def test_sweep_folder_is_named_after_the_cpu_kernels(monkeypatch):
    import torch

    demo = _demo()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    aten = torch.backends.cpu.get_cpu_capability()
    assert demo.cpu_kernels() == (aten.lower(), "ATen kernels " + aten)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    assert demo.cpu_kernels() == (aten.lower() + "-onednn-sse41", "ATen kernels {}, ONEDNN_MAX_CPU_ISA=SSE41".format(aten))


@pytest.mark.slow
def test_demo_distils_from_the_shipped_teacher(tmp_path, monkeypatch, capsys):
    """`make demo` for one seed of two arms: the shipped teacher, the protocol's 30 epochs, the table."""
    monkeypatch.chdir(tmp_path)  # main() moves to the repository; the folder is restored afterwards
    demo = _demo()
    assert demo.main(["--methods", "student", "KD", "--seeds", "0", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "teacher resnet20 (shipped, SHA-256 checked, test top-1 98.00%)" in out
    tag, kernels = demo.cpu_kernels()
    assert kernels in out
    with open(tmp_path / ("sweep-" + tag) / "results.csv", newline="") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"vanilla", "kd"}
    assert float(rows["kd"]["last_mean"]) >= 80.0  # chance is 10%; 96-98% in the README's runs
