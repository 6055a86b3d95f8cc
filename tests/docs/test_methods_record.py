"""docs/methods.md (the fidelity record) cites only things that exist.

Citation forms the record uses (and this test enforces):

* a path inside this repository, from its root (``mdistiller/losses/kd2m.py``, ``configs/cifar100/kd_ls/``), with
  an optional line or line range (``mdistiller/engine/trainer.py:106-120``): the file (or folder) must exist and
  have that many lines; ``tests/...py::test_name`` must name a test defined in that file;
* another repository at a commit, ``owner/repo@commit``, or one of its files, ``owner/repo@commit:path[:line[-line]]`` (e.g.
  ``eddardd/kddm@5489263:src/utils.py:476-477``); only its form is checked here (the record was written from
  the file at that commit; no network at test time).

Any other ``name.py:line`` or ``name.md`` is an error: a line number without its repository, or a file that
does not exist.
"""
import os
import re

from tests.helpers.runutil import REPO

RECORD = os.path.join(REPO, "docs", "methods.md")
TOP = ("mdistiller", "configs", "tests", "benchmarks", "docs", "tools", "requirements")
EXTERNAL = re.compile(r"[\w.-]+/[\w.-]+@[0-9a-f]{7,40}:[\w./-]+(?::\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)?")
LOCAL = re.compile(r"(?<![\w./@:-])((?:%s)/[\w./-]*)(?::(\d+)(?:-(\d+))?)?(?:::(\w+))?" % "|".join(TOP))
LINE_CITATION = re.compile(r"(?<![\w./@:-])([\w./-]+\.(?:py|yaml|md|sh|txt|csv)):(\d+)")
DOC_FILE = re.compile(r"(?<![\w./@:-])([\w./-]+\.md)\b")


def _text():
    with open(RECORD, encoding="utf-8") as f:
        return f.read()


def _without_external(text):
    return EXTERNAL.sub(" ", text)


def test_every_local_path_and_line_exists():
    text = _without_external(_text())
    problems, seen = [], 0
    for match in LOCAL.finditer(text):
        path, first, last, test = match.groups()
        path = path.rstrip(".")
        if text[match.end():match.end() + 1] in ("<", "{", "*"):  # a template (`.../<pair>.yaml`), not a file
            continue
        seen += 1
        full = os.path.join(REPO, path)
        if not os.path.exists(full):
            problems.append("missing: " + path)
            continue
        if first:
            with open(full, encoding="utf-8") as f:
                lines = f.read().count("\n") + 1
            if int(last or first) > lines or int(first) > int(last or first):
                problems.append("{}:{}{} beyond its {} lines".format(path, first, "-" + last if last else "", lines))
        if test:
            with open(full, encoding="utf-8") as f:
                if not re.search(r"def {}\b".format(test), f.read()):
                    problems.append("{}::{} not defined".format(path, test))
    assert seen > 100  # the record cites many files: a broken pattern would see none
    assert not problems, "\n".join(problems)


def test_no_line_citation_without_its_repository():
    text = _without_external(_text())
    bad = [m.group(0) for m in LINE_CITATION.finditer(text) if not m.group(1).startswith(TOP)]
    assert not bad, "cite as owner/repo@commit:path:line or as a path of this repository: {}".format(sorted(set(bad)))


def test_every_markdown_file_named_exists():
    text = _without_external(_text())
    missing = sorted({m.group(1) for m in DOC_FILE.finditer(text)
                      if not os.path.exists(os.path.join(REPO, m.group(1)))
                      and not os.path.exists(os.path.join(REPO, "docs", m.group(1)))})
    assert not missing, missing


def test_external_citations_name_a_commit():
    text = _text()
    assert EXTERNAL.search(text)
    # owner/repo@ must be followed by a commit hash (then optionally :path[:line])
    loose = re.findall(r"[\w.-]+/[\w.-]+@(?![0-9a-f]{7,40}\b)\S+", text)
    assert not loose, loose
