"""Command line of the runner (``python -m mdistiller.benchmark``).

    python -m mdistiller.benchmark --configs configs/digits/kd.yaml configs/digits/dkd.yaml --seeds 0 1 2 \
        [--jobs 2] [--out benchmark_runs] [--name digits] [KEY VALUE ...]
    python -m mdistiller.benchmark --suite suite.yaml [--jobs 2] [KEY VALUE ...]

A suite yaml lists ``configs: [...]``, ``seeds: [...]`` and ``opts: [...]`` (KEY VALUE overrides for
every run; command-line overrides come after them). Each run goes to
``<out>[/<name>]/<run name>/seed<s>``; finished runs are skipped and interrupted ones resumed, so
re-running the same command completes a sweep. Tables: results.md / results.csv in the sweep folder.
The exit code is 1 when a run failed.
"""
import argparse
import os
import re
import sys

from .suites import load_suite
from .sweep import run_sweep

# A config override key: upper-case dotted path (SOLVER.EPOCHS); config files end in .yaml (lower case).
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def split_overrides(argv):
    """``(options, KEY VALUE overrides)``: overrides start after ``--`` or at the first KEY-like word."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    for i, word in enumerate(argv):
        if _KEY.match(word):
            return argv[:i], argv[i:]
    return argv, []


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Run every (config, seed), skip finished runs, resume interrupted ones, and tabulate.",
        epilog="Trailing KEY VALUE pairs (or everything after --) override every run's config.",
    )
    parser.add_argument("--configs", nargs="+", default=[], help="yaml configs (one table row each)")
    parser.add_argument("--suite", default=None, help="yaml with configs, seeds, opts (and optionally jobs, out, name)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="EXPERIMENT.SEED values (default 0)")
    parser.add_argument("--jobs", type=int, default=None, help="runs at once (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="threads per run (default: cores // jobs)")
    parser.add_argument("--out", default=None, help="output root (default benchmark_runs)")
    parser.add_argument("--name", default=None, help="sweep name: the sweep folder is <out>/<name>")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    argv = sys.argv[1:] if argv is None else argv
    options, overrides = split_overrides(argv)
    args = parser.parse_args(options)
    if len(overrides) % 2:
        parser.error("overrides must be KEY VALUE pairs, got {}".format(overrides))

    configs, seeds, opts, jobs, out, name = list(args.configs), args.seeds, [], args.jobs, args.out, args.name
    if args.suite:
        suite = load_suite(args.suite)
        configs = suite["configs"] + configs
        seeds = seeds if seeds is not None else suite["seeds"]
        opts = suite["opts"]
        jobs = jobs if jobs is not None else suite.get("jobs")
        out = out if out is not None else suite.get("out")
        name = name if name is not None else suite.get("name", os.path.splitext(os.path.basename(args.suite))[0])
    if not configs:
        parser.error("give --configs and/or --suite")
    missing = [c for c in configs if not os.path.exists(c)]
    if missing:
        print("warning: config file(s) not found, they will be reported as failed: {}".format(", ".join(missing)))
    result = run_sweep(
        configs,
        seeds=seeds if seeds is not None else [0],
        out=out or "benchmark_runs",
        name=name,
        opts=opts + overrides,
        jobs=jobs or 1,
        threads=args.threads,
        plots=not args.no_plots,
    )
    failed = sum(r["status"] != "ok" for r in result["records"])
    return 1 if failed else 0
