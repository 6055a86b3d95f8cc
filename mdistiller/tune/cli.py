"""Command line of the tuner (``mdistiller-tune``, ``python -m mdistiller.tune``).

    mdistiller-tune --suite tune_digits.yaml [--jobs 2]                  # a suite shipped in the package
    mdistiller-tune --suite my_suite.yaml --trials 16 [KEY VALUE ...]
    mdistiller-tune --suite my_suite.yaml --launcher slurm --partition gpu --time 4:00:00
    mdistiller-tune --suite my_suite.yaml --dry-run             # check the suite, print the studies, run nothing

A suite is a benchmark suite (``configs``, ``seeds``, ``opts``, ``jobs``, ``name``, ``out``) with a ``tune`` block
(:data:`mdistiller.tune.study.SETTINGS`). Every config gets the same number of trials on the validation split
(``DATASET.VAL_SPLIT`` in ``opts``); the chosen configurations are retrained over ``seeds`` and the test set is
evaluated once per run. Running the same command again resumes: finished trials and runs are kept. Needs Optuna
(``pip install 'mdistiller[tune]'``). This module imports neither torch nor Optuna until the arguments are parsed.
"""
import sys

from .._cli import ArgumentParser, UsageError, add_debug_flag, one_line, run_main, split_overrides

PROG = "mdistiller-tune"


def build_parser():
    from ..benchmark.cli import add_slurm_arguments

    parser = ArgumentParser(
        prog=PROG,
        description="Tune every method of a suite with the same number of Optuna trials on a validation split held "
                    "out of the training set, retrain the chosen configurations over the seeds and tabulate them with "
                    "the test set evaluated once per run.",
        epilog="Trailing KEY VALUE pairs (or everything after --) override every run's config. Packaged suites: "
               "tune_digits.yaml (CPU, minutes), tune_cifar100.yaml (GPU). The tune block of a suite: trials, seed, "
               "startup_trials, pruner (none | median), pruner_options, trial_seed, trials_per_round, teacher, "
               "search_space. Needs Optuna: pip install 'mdistiller[tune]'.",
    )
    parser.add_argument("--suite", default=None, help="suite yaml with a tune block: a path, or a packaged suite name")
    parser.add_argument("--configs", nargs="+", default=[], help="configs added to the suite's (or alone)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="retrain seeds (default: the suite's, else 0)")
    parser.add_argument("--trials", type=int, default=None, help="trials per method (overrides tune.trials)")
    parser.add_argument("--trials-per-round", type=int, default=None,
                        help="trials of each study launched together (overrides tune.trials_per_round)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="runs at once, local launcher (default: the suite's, else 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per run (default: cores // jobs locally, the job's CPUs on SLURM)")
    parser.add_argument("--out", default=None, help="output root (default: the suite's, else tune_runs)")
    parser.add_argument("--name", default=None, help="sweep name: the sweep folder is <out>/<name>")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the suite, its configs and search spaces, print the studies; run nothing")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="local: subprocesses on this machine (default); slurm: each round of trials, and the "
                             "retraining, as a SLURM job array (the command waits for them)")
    add_slurm_arguments(parser, wait=False)
    add_debug_flag(parser)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    options, overrides = split_overrides(parser, argv)
    args = parser.parse_args(options)
    if len(overrides) % 2:
        parser.error("overrides must be KEY VALUE pairs, got {}".format(" ".join(overrides)))
    return run_main(lambda a: _run(parser, a, overrides), args, PROG)


def _run(parser, args, overrides):
    from ..benchmark.cli import slurm_launcher_or_usage_error, sweep_from_args

    sweep = sweep_from_args(parser, args, overrides, "tune_runs")
    import optuna  # noqa: F401  (missing: one line naming the extra, before anything runs)
    configs, seeds, opts, jobs, out, name = (sweep[k] for k in ("configs", "seeds", "opts", "jobs", "out", "name"))
    block = dict(sweep["suite"].get("tune") or {})
    for key, value in (("trials", args.trials), ("trials_per_round", args.trials_per_round)):
        if value is not None:
            block[key] = value
    from .study import tune, tune_settings

    try:
        settings = tune_settings(block)
    except ValueError as e:
        raise UsageError("{}: {}".format(args.suite or "tune", one_line(e))) from e
    if not settings["teacher"]:  # a teacher the suite does not train must exist before anything runs
        from ..benchmark.cli import check_configs

        check_configs(configs, opts)
    if args.dry_run:
        return dry_run(configs, seeds, out, name, opts, settings)
    launcher = slurm_launcher_or_usage_error(parser, args, wait=True) if args.launcher == "slurm" else None
    try:
        result = tune(configs, seeds, out=out, name=name, opts=opts, settings=settings, launcher=launcher,
                      jobs=jobs or 1, threads=args.threads, plots=not args.no_plots)
    except RuntimeError as e:  # a run that failed for another reason than its values (its folder says why)
        print("{}: {}".format(PROG, one_line(e)), file=sys.stderr)
        return 1
    failed = sum(r["status"] != "ok" for r in result["records"])
    return 1 if failed else 0


def dry_run(configs, seeds, out, name, opts, settings):
    """Check everything :func:`~mdistiller.tune.study.tune` checks before running, print the studies; return 0."""
    from ..benchmark.sweep import sweep_folder
    from .space import describe
    from .study import plan_studies

    studies, teacher = plan_studies(configs, seeds, sweep_folder(out, name), opts, settings)
    print("Sweep folder {}; {} trials per method at EXPERIMENT.SEED {}; retrain seeds {}".format(
        sweep_folder(out, name), settings["trials"], studies[0].trial_seed, " ".join(map(str, seeds))))
    if teacher is not None:
        print("teacher: {} ({})".format(teacher.config, teacher.run_dir))
    for study in studies:
        print("{} ({}): {}".format(study.label, study.name, describe(study.space) if study.tuned else
                                   "no search space: retrained as configured"))
    return 0
