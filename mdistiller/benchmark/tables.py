"""Aggregating run records over seeds (mean ± sample std) and writing the tables (markdown, CSV).

One row per run name (config): the score — top-1, or a detector's AP — of the last and of the best epoch, mean
and sample standard deviation (n - 1) over the seeds that finished ("—" when n = 1), the task's other last-epoch
metrics (a record's ``extras``: AP50 and AP75 of a detector), mean wall time, the published number, and a status
naming every failed seed with its error.

Paired comparison: when the sweep also trained the student alone (a ``NONE`` run of the same student
on the same dataset), each other row gets the last-epoch difference to it over the seeds both
finished, seed by seed (runs with one seed share its data order, augmentations and, with
``DATASET.TRAIN_PER_CLASS``, the labelled subset): mean ± sample std of the differences, how many
seeds the method won, and the two-sided p-value of the paired t-test.

Runs with a validation split (``DATASET.VAL_SPLIT``): when every finished run of the table has one, the table
leads with the test top-1 at the epoch of best validation accuracy (the one number selected without looking at
the test set), the paired comparison is made on it, and the best validation top-1, the last-epoch test top-1 and
the best test top-1 over the epochs (selected on the test set; absent with ``DATASET.TEST_AT_END_ONLY``) follow as
labelled columns.
"""
import csv
import math
from collections import OrderedDict

from .plan import ALONE
from .published import published_top1

DASH = "—"


def mean_std(values):
    """``(mean, sample std)``; std is None for fewer than two values, both None for none."""
    values = [float(v) for v in values]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired_difference(values, baseline):
    """Paired comparison of ``values`` against ``baseline`` (two ``{seed: accuracy}`` dicts) over their common seeds.

    Returns ``dict(n, mean, std, wins, p)``: mean and sample std of ``values[s] - baseline[s]``, the number
    of seeds with a positive difference, and the two-sided p-value of the paired t-test
    (t = mean / (std / sqrt(n)), n - 1 degrees of freedom; None below two seeds; 1.0 when every
    difference is 0, 0.0 when they are equal and non-zero). None when no seed is common.
    """
    seeds = sorted(set(values) & set(baseline), key=str)
    if not seeds:
        return None
    diffs = [float(values[s]) - float(baseline[s]) for s in seeds]
    mean, std = mean_std(diffs)
    p = None
    if len(diffs) >= 2:
        if std == 0:
            p = 1.0 if mean == 0 else 0.0
        else:
            from scipy.stats import t as student_t

            p = float(2.0 * student_t.sf(abs(mean) / (std / math.sqrt(len(diffs))), len(diffs) - 1))
    return dict(n=len(diffs), mean=mean, std=std, wins=sum(d > 0 for d in diffs), p=p)


def pair_text(kind, label, teacher, student):
    """``teacher→student``; a model trained alone (``NONE``) shows only itself, whatever teacher its config names."""
    if not student:
        return DASH
    if kind == ALONE:
        return student
    return "{}→{}".format(teacher, student)


def selected_on_validation(records):
    """Whether the table leads with test top-1 at the validation-best epoch: every finished run has a split."""
    ok = [r for r in records if r["status"] == "ok"]
    return bool(ok) and all(r.get("test_at_val_best") is not None for r in ok)


def aggregate(records, published_table=None):
    """One row per run name (config), in order of first appearance."""
    groups = OrderedDict()
    for record in records:
        groups.setdefault(record["name"], []).append(record)
    on_validation = selected_on_validation(records)
    compared = "test_at_val_best" if on_validation else "last_acc"
    rows, compared_by_seed, kinds = [], [], []
    for name, recs in groups.items():
        first = recs[0]
        ok = [r for r in recs if r["status"] == "ok"]
        last_mean, last_std = mean_std([r["last_acc"] for r in ok])
        best_mean, best_std = mean_std([r["best_acc"] for r in ok if r["best_acc"] is not None])
        wall, _ = mean_std([r["wall_time"] for r in ok if r["wall_time"] is not None])
        pub, source = published_top1(first["dataset"], first["teacher"], first["student"], first["method"], published_table)
        labels = list(OrderedDict.fromkeys(label for r in ok for label in r.get("extras") or {}))
        extras = OrderedDict((label, mean_std([r["extras"][label] for r in ok if label in (r.get("extras") or {})]))
                             for label in labels)
        failed = [r for r in recs if r["status"] != "ok"]
        if not failed:
            status = "ok"
        else:
            errors = OrderedDict()
            for r in failed:
                errors.setdefault(r["error"] or r["status"], []).append(str(r["seed"]))
            parts = ["seed {}: {}".format(",".join(seeds), err) for err, seeds in errors.items()]
            status = ("failed: " if not ok else "{}/{} failed: ".format(len(failed), len(recs))) + "; ".join(parts)
        row = OrderedDict(
            method=first["method"],
            name=name,
            config=first["config"],
            dataset=first["dataset"],
            teacher=first["teacher"],
            student=first["student"],
            pair=pair_text(first["type"], first["method"], first["teacher"], first["student"]),
            metric=first.get("metric", "top-1"),
            last_mean=last_mean,
            last_std=last_std,
            extras=extras,
            best_mean=best_mean,
            best_std=best_std,
            n=len(ok),
            seeds=" ".join(str(r["seed"]) for r in ok),
            runs=len(recs),
            wall_time=wall,
            published=pub,
            published_source=source or "",
            status=status,
            paired_vs="",
            delta_mean=None,
            delta_std=None,
            delta_n=0,
            delta_wins=None,
            delta_p=None,
        )
        if on_validation:
            at_val_mean, at_val_std = mean_std([r["test_at_val_best"] for r in ok])
            val_mean, val_std = mean_std([r["val_best_acc"] for r in ok])
            row.update(at_val_best_mean=at_val_mean, at_val_best_std=at_val_std, val_mean=val_mean, val_std=val_std,
                       delta_on=compared)
        rows.append(row)
        compared_by_seed.append({r["seed"]: r[compared] for r in ok})
        kinds.append(first["type"])
    baselines = [i for i, row in enumerate(rows) if kinds[i] == ALONE and row["method"] == "student"]
    for i, row in enumerate(rows):
        if kinds[i] == ALONE:
            continue
        b = next((b for b in baselines if (rows[b]["dataset"], rows[b]["student"]) == (row["dataset"], row["student"])),
                 None)
        paired = None if b is None else paired_difference(compared_by_seed[i], compared_by_seed[b])
        if paired:
            row.update(paired_vs=rows[b]["name"], delta_mean=paired["mean"], delta_std=paired["std"],
                       delta_n=paired["n"], delta_wins=paired["wins"], delta_p=paired["p"])
    return rows


def _fmt(value, digits=2):
    return DASH if value is None else "{:.{}f}".format(value, digits)


def format_mean_std(mean, std):
    if mean is None:
        return DASH
    return "{} ± {}".format(_fmt(mean), _fmt(std))


def md_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


# A classification table's columns; a detection table says AP for top-1 and adds its extras (AP50, AP75).
TABLE_COLUMNS = ("Method", "Run", "Dataset", "Teacher→Student", "Last top-1", "Best top-1", "Seeds", "Wall (s)",
                 "Published", "Status")
PAIRED_COLUMN = "Last − student alone (paired)"
# Runs with a validation split: the leading number, its paired column, and the labelled extra columns.
AT_VAL_BEST_COLUMN = "Test top-1 at val-best epoch"
PAIRED_AT_VAL_BEST_COLUMN = "At val-best − student alone (paired)"
SPLIT_EXTRA_COLUMNS = ("Best val top-1", "Last-epoch test top-1", "Best test top-1 (selected on test)")


def table_metric(rows):
    """The score the rows share (``top-1``, ``AP``), or ``score`` when a table mixes tasks."""
    metrics = list(OrderedDict.fromkeys(r.get("metric", "top-1") for r in rows))
    return metrics[0] if len(metrics) == 1 else "score"


def paired_text(row):
    """``+1.23 ± 0.45 (7/8 seeds up, p = 0.003)`` for a row of :func:`aggregate`, "—" without a baseline."""
    if row.get("delta_mean") is None:
        return DASH
    text = "{:+.2f} ± {}".format(row["delta_mean"], _fmt(row["delta_std"]))
    detail = "{}/{} seeds up".format(row["delta_wins"], row["delta_n"])
    if row["delta_p"] is not None:
        detail += ", p = {}".format("{:.3f}".format(row["delta_p"]) if row["delta_p"] >= 0.001 else "{:.0e}".format(
            row["delta_p"]))
    return "{} ({})".format(text, detail)


def _table(rows):
    """``(columns, right-aligned flags, cells of each row)`` of the markdown table."""
    paired = any(r.get("delta_mean") is not None for r in rows)
    metric = table_metric(rows)

    def named(column):
        return column.replace("top-1", metric)

    extras = list(OrderedDict.fromkeys(label for r in rows for label in r.get("extras") or {}))
    extra_columns = [("Last " + label, True) for label in extras]

    def extra_cells(r):
        return [format_mean_std(*(r.get("extras") or {}).get(label, (None, None))) for label in extras]

    head = [(c, False) for c in TABLE_COLUMNS[:4]]
    tail = [("Seeds", True), ("Wall (s)", True), ("Published", True), ("Status", False)]

    def common(r):
        return [r["method"], r["name"], r["dataset"], r["pair"]]

    def status(r):
        return ["{}/{}".format(r["n"], r["runs"]) if r["n"] != r["runs"] else str(r["n"]), _fmt(r["wall_time"], 1),
                _fmt(r["published"]), r["status"]]

    if any("at_val_best_mean" in r for r in rows):
        with_best = any(r["best_mean"] is not None for r in rows)
        columns = head + [(named(AT_VAL_BEST_COLUMN), True)] + ([(PAIRED_AT_VAL_BEST_COLUMN, True)] if paired else [])
        columns += [(named(c), True) for c in SPLIT_EXTRA_COLUMNS[:2]] + extra_columns
        columns += ([(named(SPLIT_EXTRA_COLUMNS[2]), True)] if with_best else []) + tail
        cells = [common(r) + [format_mean_std(r["at_val_best_mean"], r["at_val_best_std"])]
                 + ([paired_text(r)] if paired else [])
                 + [format_mean_std(r["val_mean"], r["val_std"]), format_mean_std(r["last_mean"], r["last_std"])]
                 + extra_cells(r)
                 + ([format_mean_std(r["best_mean"], r["best_std"])] if with_best else []) + status(r) for r in rows]
        return columns, cells
    columns = head + [(named(TABLE_COLUMNS[4]), True)] + ([(PAIRED_COLUMN, True)] if paired else [])
    columns += extra_columns + [(named(TABLE_COLUMNS[5]), True)] + tail
    cells = [common(r) + [format_mean_std(r["last_mean"], r["last_std"])] + ([paired_text(r)] if paired else [])
             + extra_cells(r) + [format_mean_std(r["best_mean"], r["best_std"])] + status(r) for r in rows]
    return columns, cells


def format_markdown(rows, title=None, notes=()):
    """The rows of :func:`aggregate` as a markdown table (``## title`` above, ``notes`` below)."""
    lines = []
    if title:
        lines += ["## " + title, ""]
    columns, cells = _table(rows)
    lines.append("| " + " | ".join(name for name, _ in columns) + " |")
    lines.append("|" + "|".join("---:" if right else "---" for _, right in columns) + "|")
    for row_cells in cells:
        lines.append("| " + " | ".join(md_cell(c) for c in row_cells) + " |")
    notes = list(notes)
    if any(r.get("delta_mean") is not None for r in rows):
        if any("at_val_best_mean" in r for r in rows):
            notes.append("At val-best − student alone (paired) = test {} at the validation-best epoch minus that of "
                         "the student trained alone with the same seed, mean ± sample std over the seeds both "
                         "finished; seeds up = how many differences are positive; p = two-sided paired t-test."
                         .format(table_metric(rows)))
        else:
            notes.append("Last − student alone (paired) = last-epoch {} minus that of the student trained alone "
                         "with the same seed, mean ± sample std over the seeds both finished; seeds up = how many "
                         "differences are positive; p = two-sided paired t-test.".format(table_metric(rows)))
    if notes:
        lines.append("")
        lines += notes
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("method", "name", "config", "dataset", "teacher", "student", "pair", "metric", "last_mean", "last_std",
              "best_mean", "best_std", "n", "seeds", "runs", "wall_time", "published", "published_source", "status",
              "paired_vs", "delta_mean", "delta_std", "delta_n", "delta_wins", "delta_p")
# Added to results.csv when the table leads with test top-1 at the validation-best epoch (delta_* are then on it).
SPLIT_CSV_FIELDS = ("at_val_best_mean", "at_val_best_std", "val_mean", "val_std", "delta_on")

RUN_FIELDS = ("name", "config", "method", "dataset", "teacher", "student", "seed", "status", "epochs", "metric",
              "last_acc", "best_acc", "best_epoch", "wall_time", "error", "run_dir", "attempts", "job_ids")
# Added to runs.csv when a run has a validation split.
SPLIT_RUN_FIELDS = ("test_at_val_best", "val_best_acc", "val_best_epoch", "val_split_sha256")


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def write_csv(rows, path, fields=CSV_FIELDS):
    """``rows`` (dicts) as CSV with the columns ``fields``: None as empty, floats at full precision. A row's
    ``extras`` become columns of their own: ``last_<label>_mean`` / ``_std`` for a row of :func:`aggregate`,
    ``last_<label>`` for a run's record."""
    rows = [_flat_extras(row) for row in rows]
    fields = list(fields) + list(OrderedDict.fromkeys(k for row in rows for k in row if k.startswith("last_")
                                                      and k not in fields and k not in ("last_mean", "last_std")))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in fields})


def _flat_extras(row):
    flat = OrderedDict((k, v) for k, v in row.items() if k != "extras")
    for label, value in (row.get("extras") or {}).items():
        name = "last_" + label.lower()
        if isinstance(value, tuple):
            flat[name + "_mean"], flat[name + "_std"] = value
        else:
            flat[name] = value
    return flat
