"""Aggregation over seeds and the markdown table, on synthetic records."""
import math

import pytest

from mdistiller.benchmark import aggregate, format_markdown, mean_std


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


def test_a_student_trained_alone_shows_no_teacher():
    """A NONE config names a teacher (for its pair's published baseline), but its row shows the student only."""
    alone = dict(record("vanilla", 0, 60.0, 61.0, method="student"), type="NONE", teacher="resnet20", student="resnet8")
    teacher = dict(record("teacher", 0, 90.0, 91.0, method="teacher"), type="NONE", teacher="resnet20",
                   student="resnet20")
    rows = aggregate([alone, teacher])
    assert [r["pair"] for r in rows] == ["resnet8", "resnet20"]
    assert "resnet20→resnet8" not in format_markdown(rows)


def test_paired_difference_against_an_independent_t_test():
    from scipy import stats

    from mdistiller.benchmark import paired_difference

    method = {0: 91.0, 1: 93.5, 2: 90.25, 3: 94.0, 4: 92.0}
    alone = {0: 90.0, 1: 91.0, 2: 90.5, 3: 91.0, 4: 89.5, 9: 50.0}  # seed 9 has no partner
    got = paired_difference(method, alone)
    diffs = [1.0, 2.5, -0.25, 3.0, 2.5]
    assert got["n"] == 5 and got["wins"] == 4
    assert got["mean"] == pytest.approx(sum(diffs) / 5)
    assert got["std"] == pytest.approx(stats.tstd(diffs))
    assert got["p"] == pytest.approx(stats.ttest_rel([method[s] for s in range(5)], [alone[s] for s in range(5)]).pvalue)
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    assert paired_difference({0: 2.0}, {0: 1.0})["p"] is None
    assert paired_difference({0: 2.0, 1: 3.0}, {0: 2.0, 1: 3.0})["p"] == 1.0
    assert paired_difference({0: 3.0, 1: 4.0}, {0: 2.0, 1: 3.0})["p"] == 0.0


def test_rows_are_compared_with_the_student_alone_seed_by_seed():
    def run(name, method, kind, seed, last, student="resnet8x4"):
        r = record(name, seed, last, last, method=method)
        r.update(type=kind, student=student)
        return r

    records = [run("vanilla", "student", "NONE", s, acc) for s, acc in enumerate([70.0, 72.0, 71.0])]
    records += [run("kd", "KD", "KD", s, acc) for s, acc in enumerate([72.0, 73.0, 74.0])]
    records += [run("other", "KD", "KD", 0, 80.0, student="resnet20")]  # no student-alone run of resnet20
    rows = aggregate(records)
    vanilla, kd, other = rows
    assert vanilla["delta_mean"] is None and other["delta_mean"] is None
    assert kd["paired_vs"] == "vanilla" and kd["delta_n"] == 3 and kd["delta_wins"] == 3
    assert kd["delta_mean"] == pytest.approx(2.0) and kd["delta_std"] == pytest.approx(1.0)
    assert kd["delta_p"] == pytest.approx(0.07417990, abs=1e-6)  # t = 2 / (1 / sqrt 3), 2 dof
    text = format_markdown(rows)
    assert "Last − student alone (paired)" in text
    assert "| 73.00 ± 1.00 | +2.00 ± 1.00 (3/3 seeds up, p = 0.074) | 73.00 ± 1.00 |" in text
    assert "paired t-test" in text
    # without a student-alone run the table keeps its usual columns
    assert "paired" not in format_markdown(aggregate(records[3:]))


def test_a_detection_table_reports_ap_with_ap50_and_ap75(tmp_path):
    from collections import OrderedDict

    from mdistiller.benchmark.tables import write_csv

    def run(name, method, kind, seed, ap, ap50, ap75):
        r = record(name, seed, ap, ap + 1.0, method=method)
        r.update(type=kind, dataset="shapes", teacher="ResNet50", student="MobileNetV2", metric="AP",
                 extras=OrderedDict([("AP50", ap50), ("AP75", ap75)]))
        return r

    records = [run("vanilla", "student", "NONE", s, ap, 50.0 + s, 30.0) for s, ap in enumerate([20.0, 22.0])]
    records += [run("dkd", "DKD", "DKD", s, ap, 60.0 + 2 * s, 40.0) for s, ap in enumerate([23.0, 24.0])]
    rows = aggregate(records)
    text = format_markdown(rows)
    header = ("| Method | Run | Dataset | Teacher→Student | Last AP | Last − student alone (paired) | Last AP50 | "
              "Last AP75 | Best AP | Seeds | Wall (s) | Published | Status |")
    assert header in text and "last-epoch AP minus" in text
    assert "| 23.50 ± 0.71 | +2.50 ± 0.71 (2/2 seeds up, p = 0.126) | 61.00 ± 1.41 | 40.00 ± 0.00 | 24.50 ± 0.71 |" in text
    write_csv(rows, str(tmp_path / "results.csv"))
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[-4:] == ["last_ap50_mean", "last_ap50_std", "last_ap75_mean", "last_ap75_std"]


def test_runs_with_a_validation_split_lead_with_test_top1_at_the_val_best_epoch():
    def run(name, method, kind, seed, at_val_best, last, best=None):
        r = record(name, seed, last, best, method=method)
        r.update(type=kind, test_at_val_best=at_val_best, val_best_acc=at_val_best + 1.0, val_best_epoch=2,
                 val_split_sha256="ab" * 32)
        return r

    records = [run("vanilla", "student", "NONE", s, acc, 50.0) for s, acc in enumerate([70.0, 72.0, 71.0])]
    records += [run("kd", "KD", "KD", s, acc, 90.0 + s) for s, acc in enumerate([72.0, 73.0, 74.0])]
    rows = aggregate(records)
    vanilla, kd = rows
    assert kd["at_val_best_mean"] == 73.0 and kd["at_val_best_std"] == pytest.approx(1.0)
    assert kd["val_mean"] == 74.0 and kd["last_mean"] == 91.0 and kd["best_mean"] is None
    # the paired comparison is made on the selected number, not on the last epoch
    assert kd["delta_on"] == "test_at_val_best" and kd["delta_mean"] == pytest.approx(2.0)
    assert kd["delta_p"] == pytest.approx(0.07417990, abs=1e-6)
    text = format_markdown(rows)
    header = text.splitlines()[0]
    assert header.startswith("| Method | Run | Dataset | Teacher→Student | Test top-1 at val-best epoch | "
                             "At val-best − student alone (paired) | Best val top-1 | Last-epoch test top-1 | Seeds |")
    assert "Best test top-1" not in header  # the test set waited for the end: no epoch was chosen on it
    assert "| 73.00 ± 1.00 | +2.00 ± 1.00 (3/3 seeds up, p = 0.074) | 74.00 ± 1.00 | 91.00 ± 1.00 | 3 |" in text
    # with the test set every epoch, the best-test column comes back, labelled as selected on test
    for r in records:
        r["best_acc"] = r["last_acc"] + 1.0
    assert "| Best test top-1 (selected on test) |" in format_markdown(aggregate(records))
    # one run without a split: the table is the usual one
    records[0] = record("vanilla", 0, 70.0, 70.0, method="student")
    assert "val-best" not in format_markdown(aggregate(records))
