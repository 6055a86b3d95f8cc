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
