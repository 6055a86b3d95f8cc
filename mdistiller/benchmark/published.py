"""Published top-1 numbers: ``mdistiller/reference/published_results.csv`` (package data).

Columns: dataset, teacher, student, method (the method label), top1, source. The numbers are
for the papers' full protocols, so short runs are not expected to reach them.
"""
import csv
from importlib import resources

REFERENCE_CSV = str(resources.files("mdistiller") / "reference" / "published_results.csv")

_PUBLISHED_CACHE = {}


def load_published(path=REFERENCE_CSV):
    """Rows of the published-results table: dicts with dataset, teacher, student, method, top1 (float), source."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            row = dict(row)
            row["top1"] = float(row["top1"])
            rows.append(row)
    return rows


def published_top1(dataset, teacher, student, method, table=None):
    """``(top1, source)`` for (dataset, teacher, student, method label), or ``(None, None)``.

    ``student`` rows (a model trained alone) match any teacher; ``teacher`` rows are looked up
    with the model as the pair's teacher. Names compare case-insensitively.
    """
    if table is None:
        if REFERENCE_CSV not in _PUBLISHED_CACHE:
            _PUBLISHED_CACHE[REFERENCE_CSV] = load_published(REFERENCE_CSV)
        table = _PUBLISHED_CACHE[REFERENCE_CSV]
    low = lambda v: str(v or "").lower()  # noqa: E731
    method = low(method)
    for row in table:
        if low(row["dataset"]) != low(dataset) or low(row["method"]) != method:
            continue
        if method == "student":
            ok = low(row["student"]) == low(student)
        elif method == "teacher":
            ok = low(row["teacher"]) == low(student)  # the model trained alone is the pair's teacher
        else:
            ok = low(row["teacher"]) == low(teacher) and low(row["student"]) == low(student)
        if ok:
            return row["top1"], row["source"]
    return None, None
