"""Planning: method labels (from the registry) and run folder names."""
import os

from mdistiller.benchmark import aggregate, method_label, plan_runs, run_name
from mdistiller.distillers import Distiller
from mdistiller.engine.cfg import get_cfg
from mdistiller.registry import distiller_dict, register_distiller
from tests.helpers.runutil import REPO


def label(*opts):
    return method_label(get_cfg(None, list(opts)))


def test_method_label():
    assert label("DISTILLER.TYPE", "NONE", "DISTILLER.STUDENT", "resnet8x4") == "student"
    assert label("DISTILLER.TEACHER", "resnet32x4", "DISTILLER.STUDENT", "resnet32x4") == "teacher"
    for kind in ("KD", "DKD", "CRD", "WKL"):
        assert label("DISTILLER.TYPE", kind) == kind
    wkd = ("DISTILLER.TYPE", "WKD")
    assert label(*wkd, "WKD.LOSS.WKD_FEAT_WEIGHT", "0") == "WKD-L"
    assert label(*wkd, "WKD.LOSS.WKD_LOGIT_WEIGHT", "0") == "WKD-F"
    assert label(*wkd, "WKD.LOSS.WKD_LOGIT_WEIGHT", "600", "WKD.LOSS.WKD_FEAT_WEIGHT", "2") == "WKD-L+F"
    assert label("DISTILLER.TYPE", "OTKD") == "IPOT"
    assert label("DISTILLER.TYPE", "OTKD", "OTKD.SOLVER", "remd") == "REMD"
    assert label("DISTILLER.TYPE", "WCORD") == "WCoRD"
    kd2m = {"w2": "W2(E)", "cw2": "CW2(E)", "jw2": "JW2(E)", "gw2": "W2(G)", "cgw2": "CW2(G)", "gkl": "KL(G)"}
    for distance, name in kd2m.items():
        assert label("DISTILLER.TYPE", "KD2M", "KD2M.DISTANCE", distance) == "KD2M-" + name
    combine = ("DISTILLER.TYPE", "COMBINE", "COMBINE.METHODS")
    assert label(*combine, '["OTKD", "CRD", "KD"]') == "IPOT+CRD+KD"
    assert label(*combine, '["OTKD", "KD"]', "OTKD.SOLVER", "remd") == "REMD+KD"
    assert label(*combine, '["WCORD", "KD"]') == "WCoRD+KD"
    # the shipped configs
    for path, expected in (
        ("configs/cifar100/ipot_crd_kd/res32x4_res8x4.yaml", "IPOT+CRD+KD"),
        ("configs/cifar100/remd/res56_res20.yaml", "REMD"),
        ("configs/cifar100/wkd_lf/res32x4_res8x4.yaml", "WKD-L+F"),
        ("configs/cifar100/kd2m/r34_r18_gkl.yaml", "KD2M-KL(G)"),
        ("configs/cifar100/vanilla/resnet8x4.yaml", "student"),
        ("configs/digits/teacher.yaml", "teacher"),
        ("configs/digits/wkd_l.yaml", "WKD-L"),
    ):
        assert method_label(get_cfg(os.path.join(REPO, path))) == expected, path


def test_method_label_tolerates_missing_blocks():
    class Node(dict):
        __getattr__ = dict.get

    cfg = Node(DISTILLER=Node(TYPE="WKD", TEACHER="a", STUDENT="b"))  # no WKD block at all
    assert method_label(cfg) == "WKD-L+F"  # the block's defaults: both weights 1
    assert method_label(Node(DISTILLER=Node(TYPE="NEWTHING"))) == "NEWTHING"


def test_label_is_the_registered_class_label(tmp_path):
    """A method registered anywhere (here, in a test) gets its own label in names and tables, no runner edit."""

    @register_distiller("BENCHTOY")
    class BenchToy(Distiller):
        @classmethod
        def label(cls, cfg):
            return "Toy" if cfg.DISTILLER.STUDENT == "resnet8" else "?"

    try:
        config = tmp_path / "toy.yaml"
        config.write_text('DISTILLER:\n  TYPE: "BENCHTOY"\n  STUDENT: "resnet8"\n')
        assert method_label(get_cfg(str(config))) == "Toy"
        runs = plan_runs([str(config)], [0, 1], str(tmp_path / "sweep"))
        assert [(r.name, r.label, r.load_error) for r in runs] == [("toy", "Toy", None)] * 2
        other = tmp_path / "pair.yaml"
        other.write_text(config.read_text())
        assert run_name(str(other), get_cfg(str(other))) == "toy_pair"
        records = [dict(name="toy", config=str(config), method=runs[0].label, type="BENCHTOY", dataset="digits",
                        teacher="resnet20", student="resnet8", seed=0, status="ok", epochs=1, last_acc=1.0,
                        best_acc=1.0, best_epoch=1, wall_time=1.0, error="", run_dir="x")]
        assert aggregate(records)[0]["method"] == "Toy"
    finally:
        del distiller_dict["BENCHTOY"]


def test_run_names():
    def name(path):
        return run_name(path, get_cfg(os.path.join(REPO, path)))

    assert name("configs/digits/kd.yaml") == "kd"
    assert name("configs/digits/vanilla.yaml") == "vanilla"
    assert name("configs/digits/teacher.yaml") == "teacher"
    assert name("configs/cifar100/dkd/res32x4_res8x4.yaml") == "dkd_res32x4_res8x4"
    assert name("configs/cifar100/ipot_kd/vgg13_vgg8.yaml") == "ipot_kd_vgg13_vgg8"
    assert name("configs/cifar100/vanilla/resnet8x4.yaml") == "vanilla_resnet8x4"
    assert name("configs/cifar100/kd2m/r34_r18_w2.yaml") == "kd2m_r34_r18_w2"
