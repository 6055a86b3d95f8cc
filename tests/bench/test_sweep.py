"""The benchmark runner end to end on tiny CPU runs (subprocesses): its tables, plots, resume and failures."""
import importlib.util
import json
import os
import statistics

import pytest

from mdistiller import benchmark as bm
from mdistiller.benchmark import run_sweep
from mdistiller.plot import plot_run_dirs
from tests.helpers.benchutil import read_rows, write_config
from tests.helpers.runutil import REPO, random_teacher_ckpt, tiny_opts

pytestmark = pytest.mark.slow


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
        for run_dir in run_dirs:  # mdistiller.train's own outputs, in the promised layout
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


def test_runs_start_training_as_a_module(sweep):
    """Each run is ``python -m mdistiller.train --cfg <run>/benchmark_cfg.yaml`` (no script path)."""
    run_dir = os.path.join(sweep["result"]["sweep_dir"], "kd", "seed0")
    with open(os.path.join(run_dir, "stdout.txt")) as f:
        first = f.readline().split()
    assert first[0] == "$" and first[2:4] == ["-m", "mdistiller.train"]
    assert first[4:] == ["--cfg", os.path.join(run_dir, bm.RUN_CFG)]


def test_a_failed_attempt_is_recorded_with_its_error_not_the_last_stderr_line():
    """A warning's source line printed after the traceback (or before the command's one-line error) is no reason."""
    from mdistiller.benchmark import failure_reason

    warning = "/x/trainer.py:129: UnusedKeyWarning: DATASET.NUM_WORKERS 0 is not used\n  warn_unused_keys(cfg)\n"
    crash = ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n    step()\n'
             "RuntimeError: CUDA out of memory.\nTried to allocate 2 GiB\n")
    assert failure_reason(warning + crash + warning, 1) == "RuntimeError: CUDA out of memory."
    assert failure_reason(crash + "\nDuring handling of the above exception, another exception occurred:\n\n"
                          + crash.replace("RuntimeError", "OSError"), 1) == "OSError: CUDA out of memory."
    said = "mdistiller-train: error: Unknown model 'x' (DISTILLER.STUDENT)"
    assert failure_reason(warning + said + "\n" + warning, 2) == said
    assert failure_reason(warning, -9) == "killed by SIGKILL"
    assert failure_reason(warning, 3) == "exit code 3 without a summary.json"
