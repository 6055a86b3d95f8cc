"""The benchmark runner end to end on tiny CPU runs, its tables, plots, labels and published numbers."""
import csv
import importlib.util
import json
import math
import os
import statistics

import pytest

from mdistiller import benchmark as bm
from mdistiller.benchmark import (
    aggregate,
    format_markdown,
    mean_std,
    method_label,
    published_top1,
    run_name,
    run_sweep,
)
from mdistiller.engine.cfg import get_cfg
from mdistiller.plots import plot_run_dirs
from tests.helpers.runutil import REPO, random_teacher_ckpt, tiny_opts

CONFIG_YAML = """\
EXPERIMENT:
  PROJECT: "bench_test"
DISTILLER:
  TYPE: "{kind}"
  TEACHER: "{teacher}"
  STUDENT: "{student}"
"""


def write_config(folder, name, kind, student="resnet8", teacher="resnet8"):
    path = os.path.join(str(folder), name + ".yaml")
    with open(path, "w") as f:
        f.write(CONFIG_YAML.format(kind=kind, student=student, teacher=teacher))
    return path


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def logged_accs(run_dir):
    rows = read_rows(os.path.join(run_dir, "metrics.csv"))
    accs = [float(r["test_acc"]) for r in rows]
    return accs[-1], max(accs)


def attempts(run_dir):
    with open(os.path.join(run_dir, bm.RUN_INFO)) as f:
        return json.load(f)["attempts"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 2-config x 2-seed sweep of 1-epoch digits runs, run once for the tests below."""
    root = tmp_path_factory.mktemp("bench")
    ckpt = random_teacher_ckpt(root / "teacher.pth", name="resnet8", num_classes=10)
    configs = [write_config(root, "vanilla", "NONE", teacher="resnet20"), write_config(root, "kd", "KD")]
    opts = tiny_opts(root / "unused", epochs=1, batch=128) + ["DISTILLER.TEACHER_CKPT", ckpt]
    out = str(root / "runs")
    result = run_sweep(configs, seeds=[0, 1], out=out, name="s", opts=opts, jobs=2, echo=None)
    return dict(root=root, configs=configs, opts=opts, out=out, result=result)


def test_sweep_table_matches_the_runs_logs(sweep):
    result = sweep["result"]
    sweep_dir = result["sweep_dir"]
    assert sweep_dir == os.path.join(sweep["out"], "s")
    assert [r["status"] for r in result["records"]] == ["ok"] * 4, [r["error"] for r in result["records"]]
    rows = read_rows(os.path.join(sweep_dir, "results.csv"))
    assert [(r["name"], r["method"]) for r in rows] == [("vanilla", "student"), ("kd", "KD")]
    for row in rows:
        run_dirs = [os.path.join(sweep_dir, row["name"], "seed{}".format(s)) for s in (0, 1)]
        for run_dir in run_dirs:  # tools/train.py's own outputs, in the promised layout
            assert os.path.exists(os.path.join(run_dir, "summary.json"))
            with open(os.path.join(run_dir, "summary.json")) as f:
                assert json.load(f)["seed"] == int(run_dir[-1])
        last, best = zip(*(logged_accs(d) for d in run_dirs))
        assert float(row["last_mean"]) == pytest.approx(statistics.mean(last), abs=1e-9)
        assert float(row["last_std"]) == pytest.approx(statistics.stdev(last), abs=1e-9)
        assert float(row["best_mean"]) == pytest.approx(statistics.mean(best), abs=1e-9)
        assert float(row["best_std"]) == pytest.approx(statistics.stdev(best), abs=1e-9)
        assert row["n"] == "2" and row["seeds"] == "0 1" and row["status"] == "ok"
        assert row["dataset"] == "digits" and float(row["wall_time"]) > 0
        assert row["published"] == ""  # no published digits numbers
    # seeds differ, so the two runs of a config differ somewhere in their logs
    kd_logs = [read_rows(os.path.join(sweep_dir, "kd", s, "metrics.csv")) for s in ("seed0", "seed1")]
    assert kd_logs[0][0]["train_loss"] != kd_logs[1][0]["train_loss"]
    with open(os.path.join(sweep_dir, "results.md")) as f:
        markdown = f.read()
    assert markdown == result["markdown"]
    r = result["rows"][1]
    assert "{:.2f} ± {:.2f}".format(r["last_mean"], r["last_std"]) in markdown
    assert len(read_rows(os.path.join(sweep_dir, "runs.csv"))) == 4
    # the per-run thread policy: cores // jobs
    assert attempts(os.path.join(sweep_dir, "kd", "seed0"))[0]["threads"] == bm.threads_per_run(2)


def test_sweep_writes_plots(sweep, tmp_path):
    plots = sweep["result"]["paths"]["plots"]
    names = sorted(os.path.basename(p) for p in plots)
    assert names == ["accuracy.png", "alignment_gradients.png", "alignment_losses.png"]
    for path in plots:
        assert os.path.getsize(path) > 1000
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # the CLI: one run folder -> one line, a folder of seeds -> one seed-mean line
    sweep_dir = sweep["result"]["sweep_dir"]
    spec = importlib.util.spec_from_file_location("plot_alignment", os.path.join(REPO, "tools", "plot_alignment.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    written = cli.main([os.path.join(sweep_dir, "kd", "seed0"), os.path.join(sweep_dir, "vanilla"),
                        "--out", str(tmp_path / "figs")])
    assert len(written) == 3 and all(os.path.getsize(p) > 1000 for p in written)
    # a teacher-less run has no alignment.csv: accuracy only
    only_vanilla = plot_run_dirs([os.path.join(sweep_dir, "vanilla")], str(tmp_path / "v"))
    assert [os.path.basename(p) for p in only_vanilla] == ["accuracy.png"]


def test_interrupted_sweep_resumes_and_failures_are_reported(sweep):
    """Second call: finished runs are skipped, an interrupted one resumed, a failing config reported."""
    sweep_dir = sweep["result"]["sweep_dir"]
    runs = {(n, s): os.path.join(sweep_dir, n, "seed{}".format(s)) for n in ("vanilla", "kd") for s in (0, 1)}
    interrupted = runs[("kd", 1)]
    os.remove(os.path.join(interrupted, "summary.json"))  # killed after its last checkpoint
    stamps = {k: os.path.getmtime(os.path.join(d, "metrics.csv")) for k, d in runs.items()}
    before = read_rows(os.path.join(interrupted, "metrics.csv"))
    bad = write_config(sweep["root"], "broken", "KD", student="no_such_net")
    result = run_sweep(sweep["configs"] + [bad], seeds=[0, 1], out=sweep["out"], name="s", opts=sweep["opts"],
                       jobs=2, echo=None, plots=False)

    for key, run_dir in runs.items():
        if run_dir != interrupted:  # (the resumed run's trainer rewrites metrics.csv, same rows)
            assert os.path.getmtime(os.path.join(run_dir, "metrics.csv")) == stamps[key]
        expected = [None, "resume"] if key == ("kd", 1) else [None]
        assert [a["action"] if i else None for i, a in enumerate(attempts(run_dir))] == expected
    assert attempts(interrupted)[1]["returncode"] == 0
    assert os.path.exists(os.path.join(interrupted, "summary.json"))
    assert read_rows(os.path.join(interrupted, "metrics.csv")) == before  # no epoch redone
    assert [r["status"] for r in result["records"]] == ["ok"] * 4 + ["failed"] * 2

    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {"vanilla", "kd", "kd_broken"}
    assert rows["kd"]["last_mean"] == pytest.approx(sweep["result"]["rows"][1]["last_mean"])
    failed = rows["kd_broken"]
    assert failed["n"] == 0 and failed["runs"] == 2 and failed["last_mean"] is None
    assert "no_such_net" in failed["status"] and failed["status"].startswith("failed")
    for seed in (0, 1):
        run_dir = os.path.join(sweep_dir, "kd_broken", "seed{}".format(seed))
        with open(os.path.join(run_dir, "error.txt")) as f:
            error = f.read().strip()
        with open(os.path.join(run_dir, "stderr.txt")) as f:
            assert error == [line.strip() for line in f if line.strip()][-1]
        assert "Unknown model 'no_such_net'" in error
    with open(os.path.join(sweep_dir, "results.md")) as f:
        markdown = f.read()
    assert "| KD | kd_broken |" in markdown and "no_such_net" in markdown
    csv_rows = {r["name"]: r for r in read_rows(os.path.join(sweep_dir, "results.csv"))}
    assert csv_rows["kd_broken"]["n"] == "0" and "no_such_net" in csv_rows["kd_broken"]["status"]


def test_cli_splits_overrides_and_reads_suites(tmp_path):
    spec = importlib.util.spec_from_file_location("benchmark_cli", os.path.join(REPO, "tools", "benchmark.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    options, opts = cli.split_overrides(["--configs", "a.yaml", "--seeds", "0", "1", "SOLVER.EPOCHS", "2"])
    assert options == ["--configs", "a.yaml", "--seeds", "0", "1"] and opts == ["SOLVER.EPOCHS", "2"]
    assert cli.split_overrides(["--seeds", "3", "--", "KD.TEMPERATURE", "2"]) == (["--seeds", "3"],
                                                                                ["KD.TEMPERATURE", "2"])
    config = write_config(tmp_path, "kd", "KD")
    suite = tmp_path / "suite.yaml"
    suite.write_text("configs: [kd.yaml]\nseeds: [0, 1]\nopts: [SOLVER.EPOCHS, 2]\n")
    loaded = bm.load_suite(str(suite))
    assert loaded["configs"] == [config] and loaded["seeds"] == [0, 1] and loaded["opts"] == ["SOLVER.EPOCHS", "2"]
    suite.write_text("configs: [kd.yaml]\nseed: [0]\n")
    with pytest.raises(ValueError, match="seed"):
        bm.load_suite(str(suite))


# ----------------------------------------------------------------------------- labels, names, published numbers


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
        ("configs/cifar100/kd2m/res50_res18_gkl.yaml", "KD2M-KL(G)"),
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


def test_run_names():
    def name(path):
        return run_name(path, get_cfg(os.path.join(REPO, path)))

    assert name("configs/digits/kd.yaml") == "kd"
    assert name("configs/digits/vanilla.yaml") == "vanilla"
    assert name("configs/digits/teacher.yaml") == "teacher"
    assert name("configs/cifar100/dkd/res32x4_res8x4.yaml") == "dkd_res32x4_res8x4"
    assert name("configs/cifar100/ipot_kd/vgg13_vgg8.yaml") == "ipot_kd_vgg13_vgg8"
    assert name("configs/cifar100/vanilla/resnet8x4.yaml") == "vanilla_resnet8x4"
    assert name("configs/cifar100/kd2m/res50_res18_w2.yaml") == "kd2m_res50_res18_w2"


def test_published_lookup():
    path = os.path.join(REPO, "mdistiller", "reference", "published_results.csv")
    assert bm.REFERENCE_CSV == path and os.path.exists(path)
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "DKD") == (76.32, "DKD paper (Zhao et al. CVPR 2022) / mdistiller README")
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "IPOT+CRD+KD")[0] == 76.82
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "WCoRD")[0] == 76.15
    assert published_top1("CIFAR100", "resnet32x4", "resnet8x4", "wkd-l")[0] == 76.53  # case-insensitive
    assert published_top1("imagenet", "ResNet34", "ResNet18", "WKD-L+F")[0] == 72.76
    assert published_top1("cifar100", "ResNet34", "ResNet18", "KD2M-CW2(G)")[0] == 61.43
    assert published_top1("cifar100", "ResNet50", "resnet8x4", "student")[0] == 72.50  # any teacher
    assert published_top1("cifar100", "resnet32x4", "resnet32x4", "teacher")[0] == 79.42
    assert published_top1("cifar100", "resnet32x4", "resnet8x4", "WKL") == (None, None)
    assert published_top1("digits", "resnet20", "resnet8", "KD") == (None, None)
    # the shipped config's header states the number the table will show
    cfg = get_cfg(os.path.join(REPO, "configs/cifar100/ipot_crd_kd/res110_res20.yaml"))
    assert published_top1(cfg.DATASET.TYPE, cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT, method_label(cfg))[0] == 71.81


# ----------------------------------------------------------------------------- aggregation on synthetic records


def record(name, seed, last, best, status="ok", error="", method="KD"):
    return dict(name=name, config=name + ".yaml", method=method, type="KD", dataset="cifar100", teacher="resnet32x4",
                student="resnet8x4", seed=seed, status=status, epochs=3, last_acc=last, best_acc=best, best_epoch=2,
                wall_time=10.0 + seed, error=error, run_dir="x")


def test_aggregate_and_markdown():
    records = [record("kd", 0, 70.0, 71.0), record("kd", 1, 72.0, 74.0), record("kd", 2, None, None, "failed", "OOM"),
               record("one", 0, 60.0, 61.5), record("dead", 0, None, None, "failed", "KeyError: 'x'")]
    rows = aggregate(records)
    kd, one, dead = rows
    assert kd["last_mean"] == 71.0 and kd["last_std"] == pytest.approx(math.sqrt(2.0))
    assert kd["best_mean"] == 72.5 and kd["n"] == 2 and kd["runs"] == 3 and kd["wall_time"] == 10.5
    assert kd["published"] == 73.33 and kd["pair"] == "resnet32x4→resnet8x4"
    assert kd["status"] == "1/3 failed: seed 2: OOM"
    assert one["last_std"] is None and dead["status"] == "failed: seed 0: KeyError: 'x'"
    text = format_markdown(rows)
    assert "| KD | kd | cifar100 | resnet32x4→resnet8x4 | 71.00 ± 1.41 | 72.50 ± 2.12 | 2/3 | 10.5 | 73.33 |" in text
    assert "| 60.00 ± — | 61.50 ± — | 1 |" in text
    assert "| — | — | 0/1 | — | 73.33 | failed: seed 0: KeyError: 'x' |" in text
    assert mean_std([]) == (None, None) and mean_std([3.0]) == (3.0, None)
