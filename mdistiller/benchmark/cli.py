"""Command line of the runner (``python -m mdistiller.benchmark``).

    python -m mdistiller.benchmark --configs configs/digits/kd.yaml configs/digits/dkd.yaml --seeds 0 1 2 \
        [--jobs 2] [--out benchmark_runs] [--name digits] [KEY VALUE ...]
    python -m mdistiller.benchmark --suite suite.yaml [--jobs 2] [KEY VALUE ...]
    python -m mdistiller.benchmark --suite suite.yaml --launcher slurm --partition gpu --time 12:00:00 [--wait]
    python -m mdistiller.benchmark --suite suite.yaml --collect-only
    python -m mdistiller.benchmark published README.md      # the README's published-results tables (:mod:`.published`)

A suite yaml lists ``configs: [...]``, ``seeds: [...]`` and ``opts: [...]`` (KEY VALUE overrides for
every run; command-line overrides come after them). Each run goes to
``<out>[/<name>]/<run name>/seed<s>``; finished runs are skipped and interrupted ones resumed, so
re-running the same command completes a sweep. Tables: results.md / results.csv in the sweep folder.

``--launcher local`` (default) runs ``--jobs`` runs at once on this machine. ``--launcher slurm``
submits the unfinished runs as a SLURM job array (:mod:`.slurm`; options from flags and/or
``--slurm-config``); with ``--wait`` it waits for the jobs and writes the tables, otherwise it
prints the job ids and the ``--collect-only`` command that writes them later. ``--collect-only``
runs nothing and tabulates the run folders as they are.
The exit code is 1 when a run failed (or, collecting, is not finished).
"""
import argparse
import os
import re
import shlex
import sys

from .._cli import USER_ERRORS, UsageError, add_debug_flag, one_line, pull_flags, run_main
from .slurm import OPTIONS, SubmissionError
from .suites import load_suite
from .sweep import run_sweep

# A config override key: upper-case dotted path (SOLVER.EPOCHS); config files end in .yaml (lower case).
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")

# --flag -> SLURM option (mdistiller.benchmark.slurm.OPTIONS)
SLURM_FLAGS = (
    ("--partition", "partition", str, "NAME"),
    ("--gpus-per-job", "gpus_per_job", int, "N"),
    ("--cpus-per-job", "cpus_per_job", int, "N"),
    ("--mem-gb", "mem_gb", float, "GB"),
    ("--time", "time", str, "TIME"),
    ("--account", "account", str, "NAME"),
    ("--qos", "qos", str, "NAME"),
    ("--constraint", "constraint", str, "FEATURES"),
    ("--array-parallelism", "array_parallelism", int, "N"),
    ("--max-requeue", "max_requeue", int, "N"),
    ("--job-name", "job_name", str, "NAME"),
    ("--slurm-folder", "folder", str, "DIR"),
)


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


def sbatch_option(text):
    """``KEY=VALUE`` -> (KEY, VALUE); a bare ``KEY`` is a flag without value (True)."""
    key, sep, value = text.partition("=")
    key = key.strip().lstrip("-")
    if not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, got {!r}".format(text))
    return key, (value if sep else True)


def collect_command(configs, seeds, out, name, opts, plots=True, python=None):
    """The shell command that builds the tables of this sweep from its run folders (``--collect-only``)."""
    cmd = [python or sys.executable, "-m", "mdistiller.benchmark", "--configs"] + list(configs)
    cmd += ["--seeds"] + [str(s) for s in seeds] + ["--out", out]
    if name:
        cmd += ["--name", name]
    if not plots:
        cmd.append("--no-plots")
    cmd.append("--collect-only")
    if opts:
        cmd += ["--"] + list(opts)
    return " ".join(shlex.quote(str(c)) for c in cmd)


def add_slurm_arguments(parser, wait=True):
    """The SLURM options group (``--slurm-config``, one flag per :data:`SLURM_FLAGS`, ``--sbatch``, ``--setup``,
    ``--slurm-cluster``, ``--poll``, and ``--wait`` unless the command always waits)."""
    def help_of(key):
        return OPTIONS[key][1].replace("%", "%%")

    slurm = parser.add_argument_group("SLURM (--launcher slurm)")
    slurm.add_argument("--slurm-config", default=None, metavar="YAML",
                       help="yaml of SLURM options (keys: {}); flags override it".format(", ".join(OPTIONS)))
    for flag, key, kind, metavar in SLURM_FLAGS:
        slurm.add_argument(flag, dest="slurm_" + key, type=kind, default=None, metavar=metavar, help=help_of(key))
    slurm.add_argument("--sbatch", dest="slurm_sbatch", action="append", type=sbatch_option, default=None,
                       metavar="KEY[=VALUE]", help="extra sbatch option (repeatable), e.g. --sbatch mail-type=END")
    slurm.add_argument("--setup", dest="slurm_setup", action="append", default=None, metavar="LINE",
                       help=help_of("setup") + " (repeatable)")
    slurm.add_argument("--slurm-cluster", dest="slurm_cluster", choices=("slurm", "local"), default=None,
                       help=help_of("cluster"))
    if wait:
        slurm.add_argument("--wait", action="store_true", help="wait for the jobs, then write the tables")
    slurm.add_argument("--poll", type=float, default=None, help="seconds between job status checks while waiting")
    return slurm


def slurm_flags_given(args):
    """The SLURM options given on the command line (flag names)."""
    given = [flag for flag, key, _, _ in SLURM_FLAGS if getattr(args, "slurm_" + key) is not None]
    given += [f for f, v in (("--slurm-config", args.slurm_config), ("--sbatch", args.slurm_sbatch),
                             ("--setup", args.slurm_setup), ("--slurm-cluster", args.slurm_cluster),
                             ("--wait", getattr(args, "wait", False) or None), ("--poll", args.poll)) if v is not None]
    return given


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mdistiller-benchmark",
        description="Run every (config, seed), skip finished runs, resume interrupted ones, and tabulate.",
        epilog="Trailing KEY VALUE pairs (or everything after --) override every run's config. A config that is not "
               "a file here names a config shipped in the package (digits/kd.yaml; see mdistiller-train --help). "
               "`mdistiller-benchmark published [README.md]` rewrites a README's published-results tables.",
    )
    parser.add_argument("--configs", nargs="+", default=[],
                        help="yaml configs (one table row each): paths, or packaged names such as digits/kd.yaml")
    parser.add_argument("--suite", default=None, help="yaml with configs, seeds, opts (and optionally jobs, out, name)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="EXPERIMENT.SEED values (default 0)")
    parser.add_argument("--jobs", type=int, default=None, help="runs at once, local launcher (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per run (default: cores // jobs locally, the job's CPUs on SLURM)")
    parser.add_argument("--out", default=None, help="output root (default benchmark_runs)")
    parser.add_argument("--name", default=None, help="sweep name: the sweep folder is <out>/<name>")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="local: subprocesses on this machine (default); slurm: one SLURM job array")
    parser.add_argument("--collect-only", action="store_true",
                        help="run nothing: build results.md/results.csv from the run folders")
    add_slurm_arguments(parser)
    add_debug_flag(parser)
    return parser


def sweep_from_args(parser, args, overrides, default_out, collect_only=False):
    """The sweep a command line describes, ``dict(configs, seeds, opts, jobs, out, name, suite)``: ``--suite``'s
    values where the flags give none (``opts``: the suite's, then the command line's KEY VALUE pairs). An odd KEY VALUE
    list, SLURM flags without ``--launcher slurm`` (unless only collecting), ``--jobs`` with it, or no config is a
    usage error."""
    if len(overrides) % 2:
        parser.error("overrides must be KEY VALUE pairs, got {}".format(overrides))
    slurm_given = slurm_flags_given(args)
    if args.launcher == "local" and slurm_given and not collect_only:
        parser.error("{} only apply to --launcher slurm".format(", ".join(slurm_given)))
    if args.launcher == "slurm" and args.jobs is not None:
        parser.error("--jobs is for the local launcher; with SLURM, every run is a job (see --array-parallelism)")
    suite = load_suite(args.suite) if args.suite else {}
    configs = suite.get("configs", []) + list(args.configs)
    if not configs:
        parser.error("give --configs and/or --suite")
    name = args.name
    if name is None and args.suite:
        name = suite.get("name", os.path.splitext(os.path.basename(args.suite))[0])
    return dict(configs=configs, seeds=args.seeds if args.seeds is not None else suite.get("seeds", [0]),
                opts=list(suite.get("opts", [])) + list(overrides),
                jobs=args.jobs if args.jobs is not None else suite.get("jobs"),
                out=args.out if args.out is not None else suite.get("out") or default_out, name=name, suite=suite)


def slurm_launcher_or_usage_error(parser, args, wait=None):
    """:func:`slurm_launcher_from_args`, its errors (a bad option, no submitit) as the parser's usage errors."""
    try:
        return slurm_launcher_from_args(args, wait)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    except ImportError as e:
        parser.error("--launcher slurm needs submitit (pip install 'mdistiller[slurm]'): {}".format(e))


def slurm_launcher_from_args(args, wait=None):
    """The :class:`.slurm.SlurmLauncher` of parsed arguments: ``--slurm-config`` yaml, then the flags (``wait``: a
    command that always waits for its jobs)."""
    from .slurm import SlurmLauncher, load_slurm_config, slurm_options

    config = load_slurm_config(args.slurm_config) if args.slurm_config else {}
    flags = {key: getattr(args, "slurm_" + key) for _, key, _, _ in SLURM_FLAGS}
    flags["sbatch"] = dict(args.slurm_sbatch) if args.slurm_sbatch else None
    flags["setup"] = args.slurm_setup
    flags["cluster"] = args.slurm_cluster
    wait = args.wait if wait is None else wait
    return SlurmLauncher(slurm_options(config, **flags), wait=wait, threads=args.threads, poll_s=args.poll)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "published":
        from .published import main as published_main

        return published_main(argv[1:])
    parser = build_parser()
    options, overrides = split_overrides(argv)
    args = parser.parse_args(options)
    overrides = pull_flags(parser, args, overrides)
    return run_main(lambda a: _run(parser, a, overrides), args, parser.prog)


def _run(parser, args, overrides):
    from ..engine.cfg import get_cfg

    sweep = sweep_from_args(parser, args, overrides, "benchmark_runs", collect_only=args.collect_only)
    configs, seeds, opts, jobs, out, name = (sweep[k] for k in ("configs", "seeds", "opts", "jobs", "out", "name"))
    launcher = None
    if args.launcher == "slurm" and not args.collect_only:
        launcher = slurm_launcher_or_usage_error(parser, args)
    for config in configs:  # a missing file or a bad key/value stops here, before any run starts
        try:
            get_cfg(config, list(opts))
        except USER_ERRORS as e:
            raise UsageError("{}: {}".format(config, one_line(e))) from e
    try:
        result = run_sweep(
            configs,
            seeds=seeds,
            out=out,
            name=name,
            opts=opts,
            jobs=(jobs or 1) if launcher is None else 1,
            threads=args.threads,
            plots=not args.no_plots,
            launcher=launcher,
            collect_only=args.collect_only,
        )
    except SubmissionError as e:
        print("error: {}".format(e), file=sys.stderr)
        return 2
    if result["records"] is None:  # submitted, not waited for
        print("")
        print("When the jobs have ended, write the tables (from this folder) with:")
        print("  " + collect_command(configs, seeds, out, name, opts, plots=not args.no_plots))
        print("Running this command again submits only the runs that are neither finished nor queued; "
              "interrupted ones resume from their latest checkpoint.")
        return 0
    failed = sum(r["status"] != "ok" for r in result["records"])
    return 1 if failed else 0
