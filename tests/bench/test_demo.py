"""The demo finds its methods in configs/digits/ (labels from the registry), in a fixed table order."""
import importlib.util
import os

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
    # the default selection: the list tools/demo.py used to hard-code, in its order
    chosen = demo.select_methods(methods)
    assert [(os.path.basename(p), key) for p, key, _ in chosen] == [
        ("vanilla.yaml", "NONE"), ("kd.yaml", "KD"), ("dkd.yaml", "DKD"), ("wkd_l.yaml", "WKD"), ("wkl.yaml", "WKL"),
        ("ipot.yaml", "OTKD"), ("kd2m.yaml", "KD2M"), ("wcord.yaml", "WCORD"),
    ]
    assert [label for _, _, label in chosen] == ["student", "KD", "DKD", "WKD-L", "WKL", "IPOT", "KD2M-W2(E)", "WCoRD"]
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
