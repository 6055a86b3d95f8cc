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

Before the first run starts, every config is loaded with the overrides and checked: keys, values
(``SOLVER.EPOCHS 0``), and the files the runs need (the teacher's checkpoint, with the command that makes
or fetches it); a mistake stops the command with one line and exit code 2. The exit code is 1 when a run
failed (or, collecting, is not finished). torch is imported only after the arguments are parsed.
"""
import argparse
import os
import shlex
import shutil
import sys

from .._cli import ArgumentParser, UsageError, add_debug_flag, first_missing_folder, run_main, user_error_text
from .._cli import split_overrides as split_command_line

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
    """``(options, KEY VALUE overrides)`` of the runner's command line (:func:`mdistiller._cli.split_overrides`)."""
    return split_command_line(build_parser(), argv)


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
    from .slurm import OPTIONS  # the module imports nothing heavy at its top: help stays fast

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
    parser = ArgumentParser(
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
    values where the flags give none (``opts``: the suite's, then the command line's KEY VALUE pairs). SLURM flags
    without ``--launcher slurm`` (unless only collecting), ``--jobs`` with it, or no config is a usage error."""
    from .suites import load_suite

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
    """:func:`slurm_launcher_from_args`; a bad option is the parser's usage error."""
    try:
        return slurm_launcher_from_args(args, wait)
    except (OSError, ValueError) as e:
        parser.error(user_error_text(e))


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
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "published":
        from .published import main as published_main

        return published_main(argv[1:])
    parser = build_parser()
    options, overrides = split_command_line(parser, argv)
    args = parser.parse_args(options)
    if len(overrides) % 2:
        parser.error("overrides must be KEY VALUE pairs, got {}".format(" ".join(overrides)))
    return run_main(lambda a: _run(parser, a, overrides), args, parser.prog)


def check_configs(configs, opts):
    """Load every config with ``opts`` and check what its runs need before any starts: keys and values, and the
    teacher's checkpoint (a missing one is reported with the command that fetches or makes it)."""
    from ..engine.build import missing_teacher_hint, teacher_source
    from ..engine.cfg import get_cfg
    from ..engine.keys import check_values
    from ..registry import data_needs

    for config in configs:
        try:
            cfg = get_cfg(config, list(opts))
            check_values(cfg)
            teacher = teacher_source(cfg) if data_needs(cfg).teacher else None
            if teacher and not os.path.isfile(teacher):
                raise FileNotFoundError("its teacher checkpoint {} does not exist. {}".format(
                    teacher, missing_teacher_hint(cfg)))
        except Exception as e:
            text = user_error_text(e)
            if text is None:
                raise
            raise UsageError(text if config in text else "{}: {}".format(config, text)) from e


def _run(parser, args, overrides):
    sweep = sweep_from_args(parser, args, overrides, "benchmark_runs", collect_only=args.collect_only)
    configs, seeds, opts, jobs, out, name = (sweep[k] for k in ("configs", "seeds", "opts", "jobs", "out", "name"))
    launcher = None
    if args.launcher == "slurm" and not args.collect_only:
        launcher = slurm_launcher_or_usage_error(parser, args)
    if not args.collect_only:  # a mistake stops here, before any run starts
        check_configs(configs, opts)

    from .slurm import SubmissionError
    from .sweep import run_sweep, sweep_folder

    created = first_missing_folder(sweep_folder(out, name))
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
    except SubmissionError:  # nothing ran: a refused submission leaves nothing behind
        if created:
            shutil.rmtree(created, ignore_errors=True)
        raise
    if result["records"] is None:  # submitted, not waited for
        print("")
        print("When the jobs have ended, write the tables (from this folder) with:")
        print("  " + collect_command(configs, seeds, out, name, opts, plots=not args.no_plots))
        print("Running this command again submits only the runs that are neither finished nor queued; "
              "interrupted ones resume from their latest checkpoint.")
        return 0
    failed = sum(r["status"] != "ok" for r in result["records"])
    return 1 if failed else 0
