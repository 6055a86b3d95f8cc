"""Side-by-side comparisons: run every (config, seed) of a sweep and aggregate the results.

    from mdistiller.benchmark import run_sweep
    result = run_sweep(["configs/digits/kd.yaml", "configs/digits/dkd.yaml"], seeds=[0, 1, 2],
                       out="benchmark_runs", name="digits", jobs=2, opts=["SOLVER.EPOCHS", "5"])
    print(result["markdown"])

Layout of a sweep folder (``<out>/<name>``, or ``<out>`` without a name)::

    <sweep>/<run name>/seed<s>/   one run of tools/train.py: metrics.csv, alignment.csv, summary.json,
                                  latest, ... plus benchmark_cfg.yaml (the exact config it ran),
                                  benchmark.json (wall time of each attempt), stdout.txt, stderr.txt,
                                  error.txt (last line of stderr, only when the run failed)
    <sweep>/runs.csv              one row per (config, seed)
    <sweep>/results.csv, results.md   one row per config: mean ± std over seeds, published number
    <sweep>/*.png                 alignment diagnostics and test accuracy (mdistiller.plots)

Rules:

* Every run is a subprocess ``python tools/train.py --cfg <run>/benchmark_cfg.yaml [--resume]``
  (the config file is the merged config with ``EXPERIMENT.SEED``, ``LOG.PREFIX = <sweep>``,
  ``EXPERIMENT.PROJECT = <run name>``, ``EXPERIMENT.NAME = seed<s>``), so a crash is isolated
  and ``jobs`` runs can share the machine. Each gets ``OMP_NUM_THREADS = MKL_NUM_THREADS =
  max(1, cores // jobs)`` (``threads`` overrides), i.e. the same compute per run.
* A run is *finished* when its ``summary.json`` records at least the configured number of
  epochs and ``metrics.csv`` holds them: it is skipped. An unfinished run with a ``latest``
  checkpoint is resumed (``--resume``); otherwise it starts over.
* A run that fails (non-zero exit, or no summary afterwards) keeps its stderr; the last
  non-empty line goes to ``error.txt`` and into the tables. Nothing is dropped silently.
* Numbers: top-1 of the last epoch and of the best epoch, read from each run's
  ``metrics.csv``; mean and sample standard deviation (n - 1) over the seeds that finished
  ("—" when n = 1). Wall time = the runner's measurement of the run's subprocesses (all
  attempts), or the summed epoch times when the runner did not launch it.
* Published numbers come from ``mdistiller/reference/published_results.csv`` (looked up by
  dataset, teacher, student and :func:`method_label`); they are for the papers' full
  protocols, so short runs are not expected to reach them.
"""
import csv
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from .engine.records import read_csv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(REPO, "tools", "train.py")
REFERENCE_CSV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "published_results.csv")

RUN_CFG = "benchmark_cfg.yaml"
RUN_INFO = "benchmark.json"
ERROR_FILE = "error.txt"
DASH = "—"

# KD2M.DISTANCE -> the name used in the KD2M paper's Table 1 (E: empirical, G: Gaussian)
KD2M_LABELS = OrderedDict(
    [("w2", "W2(E)"), ("cw2", "CW2(E)"), ("jw2", "JW2(E)"), ("gw2", "W2(G)"), ("cgw2", "CW2(G)"), ("gkl", "KL(G)")]
)
# registry keys whose label is a fixed string different from the key
FIXED_LABELS = {"WCORD": "WCoRD", "FITNET": "FitNet"}


# ----------------------------------------------------------------------------- config helpers


def _get(cfg, path, default=None):
    """``cfg.A.B.C`` or ``default`` when any level is missing (configs of third-party methods may lack a block)."""
    node = cfg
    for part in path.split("."):
        if node is None:
            return default
        try:
            if part in node:
                node = node[part]
                continue
        except TypeError:
            pass
        node = getattr(node, part, None)
        if node is None:
            return default
    return node


def _positive(value):
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def _part_label(cfg, key):
    key = str(key)
    if key == "NONE":
        return "teacher" if _get(cfg, "DISTILLER.STUDENT") == _get(cfg, "DISTILLER.TEACHER") else "student"
    if key == "WKD":
        logit = _positive(_get(cfg, "WKD.LOSS.WKD_LOGIT_WEIGHT", 1.0))
        feat = _positive(_get(cfg, "WKD.LOSS.WKD_FEAT_WEIGHT", 1.0))
        return {(True, False): "WKD-L", (False, True): "WKD-F", (True, True): "WKD-L+F"}.get((logit, feat), "WKD")
    if key == "OTKD":
        return str(_get(cfg, "OTKD.SOLVER", "ipot")).upper()
    if key == "KD2M":
        distance = str(_get(cfg, "KD2M.DISTANCE", "w2")).lower()
        return "KD2M-" + KD2M_LABELS.get(distance, distance.upper())
    if key == "COMBINE":
        parts = [str(k) for k in (_get(cfg, "COMBINE.METHODS", []) or []) if str(k) != "COMBINE"]
        return "+".join(_part_label(cfg, k) for k in parts) or "COMBINE"
    return FIXED_LABELS.get(key, key)


def method_label(cfg):
    """The method's name as in ``published_results.csv`` (``KD``, ``WKD-L``, ``IPOT+CRD+KD``, ``KD2M-W2(E)``...).

    ``NONE`` is ``student`` (a model trained alone), or ``teacher`` when the config names the
    same model as teacher and student (how the demo's teacher config marks itself).
    """
    return _part_label(cfg, _get(cfg, "DISTILLER.TYPE", "NONE"))


def slug(text):
    """Lower-case, with runs of anything but letters and digits turned into ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def run_name(config_path, cfg):
    """Folder name of a config's runs: the file's stem, prefixed with the method when the stem lacks it.

    ``configs/digits/kd.yaml`` -> ``kd``; ``configs/cifar100/dkd/res32x4_res8x4.yaml`` ->
    ``dkd_res32x4_res8x4``; ``configs/cifar100/ipot_kd/vgg13_vgg8.yaml`` -> ``ipot_kd_vgg13_vgg8``.
    """
    stem = slug(os.path.splitext(os.path.basename(config_path))[0]) or "config"
    if cfg is None:
        return stem
    kind = str(_get(cfg, "DISTILLER.TYPE", "NONE"))
    label = method_label(cfg)
    method = ("vanilla" if label == "student" else slug(label)) if kind == "NONE" else slug(label)
    parent = slug(os.path.basename(os.path.dirname(os.path.abspath(config_path))))
    candidates = {method, slug(kind)}
    if kind == "NONE":
        candidates |= {"vanilla", "baseline", "student", "teacher", "scratch"}
    if any(c and c in stem for c in candidates):
        return stem
    if kind != "NONE" and parent and parent.startswith(slug(kind)):
        return "{}_{}".format(parent, stem)  # mdistiller layout: <method folder>/<pair>.yaml
    return "{}_{}".format(method, stem)


# ----------------------------------------------------------------------------- published numbers


def load_published(path=REFERENCE_CSV):
    """Rows of the published-results table: dicts with dataset, teacher, student, method, top1 (float), source."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            row = dict(row)
            row["top1"] = float(row["top1"])
            rows.append(row)
    return rows


_PUBLISHED_CACHE = {}


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


# ----------------------------------------------------------------------------- runs


class Run:
    """One (config, seed) of a sweep."""

    def __init__(self, config, seed, name, sweep_dir, cfg=None, load_error=None):
        self.config = config
        self.seed = int(seed)
        self.name = name
        self.run_dir = os.path.join(sweep_dir, name, "seed{}".format(self.seed))
        self.cfg = cfg
        self.load_error = load_error
        self.label = method_label(cfg) if cfg is not None else "?"
        self.kind = str(_get(cfg, "DISTILLER.TYPE", "?")) if cfg is not None else "?"
        self.dataset = str(_get(cfg, "DATASET.TYPE", "")) if cfg is not None else ""
        self.teacher = str(_get(cfg, "DISTILLER.TEACHER", "")) if cfg is not None else ""
        self.student = str(_get(cfg, "DISTILLER.STUDENT", "")) if cfg is not None else ""
        self.epochs = int(_get(cfg, "SOLVER.EPOCHS", 0)) if cfg is not None else 0
        self.action = None  # "skip" | "resume" | "new" | "failed-config"

    def __repr__(self):
        return "Run({}/seed{})".format(self.name, self.seed)


def _default_teacher():
    try:
        from .engine.cfg import CFG

        return CFG.DISTILLER.TEACHER
    except Exception:  # pragma: no cover - only without the config module
        return None


def pair_text(kind, label, teacher, student):
    """``teacher→student``; a model trained alone shows its teacher only when the config names one."""
    if not student:
        return DASH
    if kind == "NONE":
        if label == "teacher":
            return student
        if teacher and teacher != _default_teacher() and teacher != student:
            return "{}→{}".format(teacher, student)
        return student
    return "{}→{}".format(teacher, student)


def plan_runs(configs, seeds, sweep_dir, opts=()):
    """One :class:`Run` per (config, seed), configs in order; names made unique within the sweep."""
    from .engine.cfg import get_cfg

    runs, used = [], {}
    for config in OrderedDict.fromkeys(configs):  # a config listed twice runs once
        cfg, error = None, None
        try:
            cfg = get_cfg(config, list(opts))
        except Exception as e:  # reported as a failed row, never raised
            error = "{}: {}".format(type(e).__name__, e).splitlines()[0]
        name = run_name(config, cfg)
        if name in used and used[name] != config:  # e.g. configs/<dataset>/<pair>/kd.yaml of two pairs
            parent = slug(os.path.basename(os.path.dirname(os.path.abspath(config))))
            name = "{}_{}".format(parent, name) if parent else name
        if name in used and used[name] != config:
            i = 2
            while "{}_{}".format(name, i) in used:
                i += 1
            name = "{}_{}".format(name, i)
        used[name] = config
        for seed in seeds:
            runs.append(Run(config, seed, name, sweep_dir, cfg, error))
    return runs


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_state(run_dir, epochs):
    """``"done"`` (all epochs logged), ``"resume"`` (has ``latest``) or ``"new"``."""
    summary = _read_json(os.path.join(run_dir, "summary.json"))
    if summary is not None:
        logged = len(read_csv(os.path.join(run_dir, "metrics.csv")))
        if int(summary.get("epochs") or 0) >= epochs and logged >= epochs:
            return "done"
    if os.path.exists(os.path.join(run_dir, "latest")):
        return "resume"
    return "new"


def run_config(run, sweep_dir):
    """The merged config of one run (seed and output folder set) as yaml text."""
    cfg = run.cfg.clone()
    cfg.defrost()
    cfg.EXPERIMENT.SEED = run.seed
    cfg.EXPERIMENT.PROJECT = run.name
    cfg.EXPERIMENT.NAME = "seed{}".format(run.seed)
    cfg.LOG.PREFIX = os.path.abspath(sweep_dir)
    cfg.freeze()
    return cfg.dump()


def last_error_line(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def cores_available():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def threads_per_run(jobs, cores=None):
    """``max(1, cores // jobs)``: every run gets the same share of the machine."""
    return max(1, (cores or cores_available()) // max(1, int(jobs)))


def execute_run(run, sweep_dir, threads, python=None, train_script=TRAIN_SCRIPT):
    """Run (or resume) one run in a subprocess; returns the action taken. Never raises for a failing run."""
    os.makedirs(run.run_dir, exist_ok=True)
    error_path = os.path.join(run.run_dir, ERROR_FILE)
    if run.load_error:
        with open(error_path, "w") as f:
            f.write(run.load_error + "\n")
        run.action = "failed-config"
        return run.action
    state = run_state(run.run_dir, run.epochs)
    if state == "done":
        run.action = "skip"
        return run.action
    if os.path.exists(error_path):
        os.remove(error_path)
    if state == "new":  # leftovers of an attempt that died before its first checkpoint
        for stale in ("metrics.csv", "alignment.csv", "summary.json"):
            path = os.path.join(run.run_dir, stale)
            if os.path.exists(path):
                os.remove(path)
    cfg_path = os.path.join(run.run_dir, RUN_CFG)
    with open(cfg_path, "w") as f:
        f.write(run_config(run, sweep_dir))
    cmd = [python or sys.executable, train_script, "--cfg", cfg_path]
    if state == "resume":
        cmd.append("--resume")
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    started = time.time()
    with open(os.path.join(run.run_dir, "stdout.txt"), "a") as out, open(
        os.path.join(run.run_dir, "stderr.txt"), "w"
    ) as err:
        out.write("$ {}\n".format(" ".join(cmd)))
        out.flush()
        try:
            code = subprocess.call(cmd, stdout=out, stderr=err, env=env)
        except OSError as e:
            err.write("{}: {}\n".format(type(e).__name__, e))
            code = -1
    elapsed = time.time() - started
    info = _read_json(os.path.join(run.run_dir, RUN_INFO)) or {"attempts": []}
    info["attempts"].append(
        {"action": state, "returncode": code, "wall_time": elapsed, "threads": threads, "started": started}
    )
    with open(os.path.join(run.run_dir, RUN_INFO), "w") as f:
        json.dump(info, f, indent=2)
    if code != 0 or run_state(run.run_dir, run.epochs) != "done":
        with open(os.path.join(run.run_dir, "stderr.txt")) as f:
            line = last_error_line(f.read()) or "exit code {} without a summary.json".format(code)
        with open(error_path, "w") as f:
            f.write(line + "\n")
    run.action = state
    return run.action


def collect_run(run):
    """The run's record, from its own logs: status, last/best top-1, wall time, error."""
    record = OrderedDict(
        name=run.name,
        config=run.config,
        method=run.label,
        type=run.kind,
        dataset=run.dataset,
        teacher=run.teacher,
        student=run.student,
        seed=run.seed,
        status="failed",
        epochs=0,
        last_acc=None,
        best_acc=None,
        best_epoch=None,
        wall_time=None,
        error="",
        run_dir=run.run_dir,
    )
    rows = read_csv(os.path.join(run.run_dir, "metrics.csv"))
    if rows:
        accs = [float(r["test_acc"]) for r in rows]
        best = max(range(len(accs)), key=lambda i: accs[i])  # first epoch reaching the max, as the trainer
        record.update(
            epochs=len(rows), last_acc=accs[-1], best_acc=accs[best], best_epoch=int(rows[best]["epoch"])
        )
    info = _read_json(os.path.join(run.run_dir, RUN_INFO))
    if info and info.get("attempts"):
        record["wall_time"] = sum(a["wall_time"] for a in info["attempts"])
    elif rows:
        record["wall_time"] = sum(float(r.get("epoch_time") or 0) for r in rows)
    error_path = os.path.join(run.run_dir, ERROR_FILE)
    if run.load_error:
        record["error"] = run.load_error
    elif run_state(run.run_dir, run.epochs) == "done" and run.epochs > 0:
        record["status"] = "ok"
    elif os.path.exists(error_path):
        with open(error_path) as f:
            record["error"] = f.read().strip()
    else:
        record["status"] = "pending"
        record["error"] = "not finished"
    return record


# ----------------------------------------------------------------------------- aggregation


def mean_std(values):
    """``(mean, sample std)``; std is None for fewer than two values, both None for none."""
    values = [float(v) for v in values]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(records, published_table=None):
    """One row per run name (config), in order of first appearance."""
    groups = OrderedDict()
    for record in records:
        groups.setdefault(record["name"], []).append(record)
    rows = []
    for name, recs in groups.items():
        first = recs[0]
        ok = [r for r in recs if r["status"] == "ok"]
        last_mean, last_std = mean_std([r["last_acc"] for r in ok])
        best_mean, best_std = mean_std([r["best_acc"] for r in ok])
        wall, _ = mean_std([r["wall_time"] for r in ok if r["wall_time"] is not None])
        pub, source = published_top1(first["dataset"], first["teacher"], first["student"], first["method"], published_table)
        failed = [r for r in recs if r["status"] != "ok"]
        if not failed:
            status = "ok"
        else:
            errors = OrderedDict()
            for r in failed:
                errors.setdefault(r["error"] or r["status"], []).append(str(r["seed"]))
            parts = ["seed {}: {}".format(",".join(seeds), err) for err, seeds in errors.items()]
            status = ("failed: " if not ok else "{}/{} failed: ".format(len(failed), len(recs))) + "; ".join(parts)
        rows.append(
            OrderedDict(
                method=first["method"],
                name=name,
                config=first["config"],
                dataset=first["dataset"],
                teacher=first["teacher"],
                student=first["student"],
                pair=pair_text(first["type"], first["method"], first["teacher"], first["student"]),
                last_mean=last_mean,
                last_std=last_std,
                best_mean=best_mean,
                best_std=best_std,
                n=len(ok),
                seeds=" ".join(str(r["seed"]) for r in ok),
                runs=len(recs),
                wall_time=wall,
                published=pub,
                published_source=source or "",
                status=status,
            )
        )
    return rows


def _fmt(value, digits=2):
    return DASH if value is None else "{:.{}f}".format(value, digits)


def _pm(mean, std):
    if mean is None:
        return DASH
    return "{} ± {}".format(_fmt(mean), _fmt(std))


def _md_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


TABLE_COLUMNS = ("Method", "Run", "Dataset", "Teacher→Student", "Last top-1", "Best top-1", "Seeds", "Wall (s)",
                 "Published", "Status")


def format_markdown(rows, title=None, notes=()):
    lines = []
    if title:
        lines += ["## " + title, ""]
    lines.append("| " + " | ".join(TABLE_COLUMNS) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---"] + ["---:"] * 5 + ["---"]) + "|")
    for r in rows:
        cells = [
            r["method"],
            r["name"],
            r["dataset"],
            r["pair"],
            _pm(r["last_mean"], r["last_std"]),
            _pm(r["best_mean"], r["best_std"]),
            "{}/{}".format(r["n"], r["runs"]) if r["n"] != r["runs"] else str(r["n"]),
            _fmt(r["wall_time"], 1),
            _fmt(r["published"]),
            r["status"],
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if notes:
        lines.append("")
        lines += list(notes)
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("method", "name", "config", "dataset", "teacher", "student", "pair", "last_mean", "last_std",
              "best_mean", "best_std", "n", "seeds", "runs", "wall_time", "published", "published_source", "status")


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def write_csv(rows, path, fields=CSV_FIELDS):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in fields})


RUN_FIELDS = ("name", "config", "method", "dataset", "teacher", "student", "seed", "status", "epochs", "last_acc",
              "best_acc", "best_epoch", "wall_time", "error", "run_dir")


# ----------------------------------------------------------------------------- sweeps


def load_suite(path):
    """A suite yaml: ``configs: [...]``, ``seeds: [...]``, ``opts: [...]`` (optional ``jobs``, ``name``, ``out``).

    Config paths are taken relative to the working directory, else to the suite file's folder.
    """
    import yaml

    with open(path) as f:
        suite = yaml.safe_load(f) or {}
    unknown = set(suite) - {"configs", "seeds", "opts", "jobs", "name", "out"}
    if unknown:
        raise ValueError("Unknown keys in suite {}: {}".format(path, ", ".join(sorted(unknown))))
    if not suite.get("configs"):
        raise ValueError("Suite {} lists no configs".format(path))
    here = os.path.dirname(os.path.abspath(path))
    configs = []
    for config in suite["configs"]:
        config = str(config)
        if not os.path.exists(config) and os.path.exists(os.path.join(here, config)):
            config = os.path.join(here, config)
        configs.append(config)
    suite["configs"] = configs
    suite["seeds"] = [int(s) for s in suite.get("seeds", [0])]
    suite["opts"] = [str(o) for o in suite.get("opts", [])]
    return suite


def sweep_folder(out="benchmark_runs", name=None):
    return os.path.join(out, name) if name else out


def run_sweep(configs, seeds=(0,), out="benchmark_runs", name=None, opts=(), jobs=1, threads=None, python=None,
              plots=True, echo=print, title=None):
    """Run every (config, seed) not finished yet, then write and return the tables.

    Returns a dict: ``sweep_dir``, ``records`` (one per run), ``rows`` (one per config),
    ``markdown``, ``paths`` (results.md, results.csv, runs.csv, plots).
    """
    echo = echo or (lambda *a, **k: None)
    sweep_dir = sweep_folder(out, name)
    os.makedirs(sweep_dir, exist_ok=True)
    runs = plan_runs(configs, seeds, sweep_dir, opts)
    jobs = max(1, int(jobs))
    threads = int(threads) if threads else threads_per_run(jobs)
    todo = []
    for run in runs:
        if run.load_error is None and run_state(run.run_dir, run.epochs) == "done":
            run.action = "skip"
        else:
            todo.append(run)
    skipped = len(runs) - len(todo)
    echo("Sweep {}: {} runs ({} configs x {} seeds), {} finished already, {} to run; {} at once, {} thread(s) each".format(
        sweep_dir, len(runs), len(configs), len(seeds), skipped, len(todo), jobs, threads))
    lock = threading.Lock()
    done_count = [0]

    def work(run):
        started = time.time()
        action = execute_run(run, sweep_dir, threads, python=python)
        record = collect_run(run)
        with lock:
            done_count[0] += 1
            what = "resumed" if action == "resume" else "ran"
            if record["status"] == "ok":
                msg = "{} {}/seed{}: last {:.2f} best {:.2f} ({:.0f} s)".format(
                    what, run.name, run.seed, record["last_acc"], record["best_acc"], time.time() - started)
            else:
                msg = "FAILED {}/seed{}: {}".format(run.name, run.seed, record["error"])
            echo("[{}/{}] {}".format(done_count[0], len(todo), msg))
        return record

    if jobs == 1:
        for run in todo:
            work(run)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(work, todo))

    records = [collect_run(run) for run in runs]
    rows = aggregate(records)
    notes = [
        "Top-1 (%) on the test set, mean ± sample std over seeds (— for one seed); Last = final epoch, "
        "Best = best epoch. Wall = mean wall-clock seconds of a run's train.py process(es) (this invocation: "
        "{} run(s) at once, {} thread(s) each; every run's benchmark.json records its own).".format(jobs, threads),
        "Published = the paper's number for the same dataset/pair/method under its full protocol "
        "(mdistiller/reference/published_results.csv).",
    ]
    markdown = format_markdown(rows, title=title or "Results: {}".format(sweep_dir), notes=notes)
    paths = OrderedDict(
        markdown=os.path.join(sweep_dir, "results.md"),
        csv=os.path.join(sweep_dir, "results.csv"),
        runs=os.path.join(sweep_dir, "runs.csv"),
    )
    with open(paths["markdown"], "w") as f:
        f.write(markdown)
    write_csv(rows, paths["csv"])
    write_csv(records, paths["runs"], RUN_FIELDS)
    paths["plots"] = []
    if plots:
        paths["plots"] = draw_sweep_plots(records, sweep_dir, echo=echo)
    echo("")
    echo(markdown)
    echo("Wrote {}, {}, {}{}".format(paths["markdown"], paths["csv"], paths["runs"],
                                    "".join(", " + p for p in paths["plots"])))
    return dict(sweep_dir=sweep_dir, records=records, rows=rows, markdown=markdown, paths=paths)


def draw_sweep_plots(records, sweep_dir, echo=print):
    """Alignment and accuracy figures of the sweep: one line per config (seed mean) -> list of PNG paths."""
    with_logs = [r for r in records if r["epochs"]]
    names_of = OrderedDict()
    for r in with_logs:
        names_of.setdefault(r["method"], set()).add(r["name"])
    groups = OrderedDict()
    for r in with_logs:
        method = "vanilla" if r["method"] == "student" else r["method"]
        label = method if len(names_of[r["method"]]) == 1 else "{} ({})".format(method, r["name"])
        groups.setdefault(label, []).append(r["run_dir"])
    if not groups:
        return []
    try:
        from .plots import plot_groups

        return plot_groups(groups, sweep_dir)
    except ImportError as e:
        echo("plots skipped: {}".format(e))
        return []
