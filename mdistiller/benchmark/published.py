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


# Students that CRD's recipe (and mdistiller's configs) train with LR 0.01 instead of 0.05.
SMALL_LR_STUDENTS = ("MobileNetV2", "ShuffleV1", "ShuffleV2")


def _key(*parts):
    return tuple(str(p).lower() for p in parts)


def configs_by_row(config_paths, get_cfg, label_of):
    """``{(dataset, teacher, student, label): path}`` for the given configs (lower-case keys; first path wins).

    A model trained alone (label ``student`` or ``teacher``) is indexed under both labels with its
    model as student and as teacher, as :func:`published_top1` matches such rows.
    """
    index = {}
    for path in sorted(config_paths):
        cfg = get_cfg(path)
        dataset, teacher, student = cfg.DATASET.TYPE, cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT
        label = label_of(cfg)
        keys = [_key(dataset, teacher, student, label)]
        if label in ("student", "teacher"):
            keys = [_key(dataset, "*", student, "student"), _key(dataset, student, "*", "teacher")]
        for key in keys:
            index.setdefault(key, path)
        index.setdefault(_key(dataset, "any pair", label), path)
    return index


def published_markdown(table, index, link_root=""):
    """Markdown tables of the published numbers, one per (dataset, teacher → student), in the CSV's order.

    Columns: method label, config that reproduces the protocol (``—`` when none ships), published top-1,
    our column (filled by the benchmark runner), and the source with its caveats.
    """
    groups = {}
    for row in table:
        groups.setdefault((row["dataset"], row["teacher"], row["student"]), []).append(row)
    lines = []
    for (dataset, teacher, student), rows in groups.items():
        lines += ["**{}: {} → {}**".format(dataset, teacher, student), "",
                  "| method | config | paper top-1 | ours | source |", "|---|---|---:|---|---|"]
        for row in rows:
            method = row["method"]
            if method.lower() == "student":
                key = _key(dataset, "*", student, "student")
            elif method.lower() == "teacher":
                key = _key(dataset, teacher, "*", "teacher")
            else:
                key = _key(dataset, teacher, student, method)
            path = index.get(key)
            if path:
                config = "[{0}]({1}{0})".format(path, link_root)
            elif index.get(_key(dataset, "any pair", method)):
                # the method's config for another pair, switched to this one (CRD's recipe: LR 0.01 for these students)
                path = index[_key(dataset, "any pair", method)]
                lr = " SOLVER.LR 0.01" if student in SMALL_LR_STUDENTS else ""
                config = "[{0}]({1}{0}) `DISTILLER.TEACHER {2} DISTILLER.STUDENT {3}{4}`".format(
                    path, link_root, teacher, student, lr)
            else:
                config = "—"
            lines.append("| {} | {} | {:.2f} | not run yet | {} |".format(
                method, config, row["top1"], row["source"].replace("|", "/")))
        lines.append("")
    return "\n".join(lines)


README_MARK = "<!-- published-results"
README_START = README_MARK + ": generated by `mdistiller-benchmark published README.md` -->"
README_END = "<!-- /published-results -->"


def readme_tables(root="."):
    """The README's published-results block for the configs under ``<root>/configs``."""
    import glob
    import os

    from ..engine.cfg import get_cfg
    from .plan import method_label

    paths = sorted(glob.glob(os.path.join(root, "configs", "**", "*.yaml"), recursive=True))
    index = configs_by_row([os.path.relpath(p, root) for p in paths],
                           lambda p: get_cfg(os.path.join(root, p)), method_label)
    return "\n".join([README_START, "", published_markdown(load_published(), index).rstrip("\n"), "", README_END])


def readme_block(text):
    """``(start, end)`` of the published-results block in a README's ``text``, both markers included
    (the start marker found by its beginning, :data:`README_MARK`, whatever command it names)."""
    start = text.find(README_MARK)
    end = text.find(README_END, max(start, 0))
    if start < 0 or end < 0:
        raise ValueError("no published-results block: the README needs a line starting with {!r} and a line {!r}"
                         .format(README_MARK, README_END))
    return start, end + len(README_END)


def update_readme(path):
    """Rewrite the block between the markers of ``path`` (a README in the repository root)."""
    import os

    with open(path) as f:
        text = f.read()
    start, end = readme_block(text)
    new = text[:start] + readme_tables(os.path.dirname(os.path.abspath(path))) + text[end:]
    with open(path, "w") as f:
        f.write(new)


def main(argv=None):
    """``mdistiller-benchmark published [README.md]`` (also ``python -m mdistiller.benchmark published``)."""
    import argparse

    from .._cli import add_debug_flag, run_main

    parser = argparse.ArgumentParser(
        prog="mdistiller-benchmark published",
        description="Rewrite the published-results tables of a README (the block between its published-results "
                    "markers) from mdistiller/reference/published_results.csv and the configs/ folder next to it.",
    )
    parser.add_argument("readme", nargs="?", default="README.md", help="the README to update (default README.md)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    run_main(lambda a: update_readme(a.readme), args, parser.prog)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
