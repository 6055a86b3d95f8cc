"""Side-by-side comparisons: run every (config, seed) of a sweep and aggregate the results.

    from mdistiller.benchmark import run_sweep
    result = run_sweep(["configs/digits/kd.yaml", "configs/digits/dkd.yaml"], seeds=[0, 1, 2],
                       out="benchmark_runs", name="digits", jobs=2, opts=["SOLVER.EPOCHS", "5"])
    print(result["markdown"])

or from the shell, ``python -m mdistiller.benchmark --configs ... --seeds 0 1 2 [KEY VALUE ...]``
(:mod:`.cli`). On a SLURM cluster, ``run_sweep(..., launcher=SlurmLauncher({"partition": "gpu"}))``
or ``--launcher slurm`` submits the unfinished runs as one job array (:mod:`.slurm`).

Layout of a sweep folder (``<out>/<name>``, or ``<out>`` without a name)::

    <sweep>/<run name>/seed<s>/   one run of mdistiller.train: metrics.csv, alignment.csv, summary.json,
                                  latest, ... plus benchmark_cfg.yaml (the exact config it ran),
                                  benchmark.json (wall time, threads, job id and outcome of each attempt),
                                  stdout.txt, stderr.txt, error.txt (why the run failed, only when it did),
                                  slurm_job.json (the job last submitted for it, SLURM launcher only)
    <sweep>/slurm/                submitit's job scripts, pickles and job logs (SLURM launcher only)
    <sweep>/runs.csv              one row per (config, seed)
    <sweep>/results.csv, results.md   one row per config: mean ± std over seeds, published number
    <sweep>/*.png                 alignment diagnostics and test accuracy (mdistiller.plot)

Rules:

* Planning, skipping finished runs and collecting are the same for every launcher; the launcher
  (local: :class:`LocalLauncher`; SLURM: :class:`SlurmLauncher`) only executes planned runs, each
  through :func:`execute_run`.
* Every run is a subprocess ``python -m mdistiller.train --cfg <run>/benchmark_cfg.yaml [--resume]``
  (the config file is the merged config with ``EXPERIMENT.SEED``, ``LOG.PREFIX = <sweep>``,
  ``EXPERIMENT.PROJECT = <run name>``, ``EXPERIMENT.NAME = seed<s>``), so a crash is isolated
  and ``jobs`` runs can share the machine. Each gets ``OMP_NUM_THREADS = MKL_NUM_THREADS =
  max(1, cores // jobs)`` (``threads`` overrides), i.e. the same compute per run.
* A run is *finished* when its ``summary.json`` records at least the configured number of
  epochs and ``metrics.csv`` holds them: it is skipped. An unfinished run with a ``latest``
  checkpoint is resumed (``--resume``); otherwise it starts over.
* A run that fails (non-zero exit, or no summary afterwards) keeps its stderr; its reason (the
  command's one-line error, else the exception that ended the traceback, else how the process
  ended: :func:`failure_reason`) goes to ``error.txt`` and into the tables. Nothing is dropped
  silently. A run stopped by SIGTERM/SIGUSR2 (preemption, time limit) is *interrupted*, not
  failed: it resumes from its ``latest`` on the next attempt.
* Numbers: top-1 of the last epoch and of the best epoch, read from each run's
  ``metrics.csv``; mean and sample standard deviation (n - 1) over the seeds that finished
  ("—" when n = 1). Runs with a validation split (``DATASET.VAL_SPLIT``) also give the test top-1
  at their validation-best epoch (``summary.json``), which then leads the table (:mod:`.tables`). Wall time = the runner's measurement of the run's subprocesses (all
  attempts), or the summed epoch times when the runner did not launch it.
* Published numbers come from ``mdistiller/reference/published_results.csv`` (looked up by
  dataset, teacher, student and :func:`method_label`, the registered class's ``label(cfg)``);
  they are for the papers' full protocols, so short runs are not expected to reach them.

Modules: :mod:`.plan` (runs, names, labels), :mod:`.execute` (subprocesses, ``jobs`` at once),
:mod:`.collect` (a run folder -> its record), :mod:`.tables` (mean ± std, markdown/CSV),
:mod:`.published` (published numbers), :mod:`.suites` (suite files), :mod:`.slurm` (SLURM job arrays
through submitit), :mod:`.sweep` (all of it).
"""
# name -> the submodule that defines it; imported on first use (PEP 562), so that `mdistiller-benchmark --help`
# and a mistake in its arguments answer without importing torch.
_EXPORTS = {
    "collect": ("ERROR_FILE", "RUN_INFO", "collect_run", "read_json", "run_state"),
    "execute": ("RUN_CFG", "TRAIN_MODULE", "LocalLauncher", "cores_available", "execute_run", "execute_runs",
                "failure_reason", "run_config", "threads_per_run", "train_command"),
    "plan": ("Run", "method_label", "plan_runs", "run_name", "slug"),
    "published": ("REFERENCE_CSV", "load_published", "published_top1"),
    "suites": ("load_suite",),
    "slurm": ("RunJob", "SlurmLauncher", "load_slurm_config", "slurm_options"),
    "sweep": ("collect_sweep", "draw_sweep_plots", "pending_runs", "run_sweep", "sweep_folder"),
    "tables": ("CSV_FIELDS", "DASH", "RUN_FIELDS", "TABLE_COLUMNS", "aggregate", "format_markdown", "mean_std",
               "pair_text", "paired_difference", "write_csv"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name in _MODULE_OF:
        import importlib

        return getattr(importlib.import_module("." + _MODULE_OF[name], __name__), name)
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
