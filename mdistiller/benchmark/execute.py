"""Running runs: each one a ``python -m mdistiller.train`` process, ``jobs`` of them at once.

:func:`execute_run` is the one way a planned run is executed; :class:`LocalLauncher` calls it on
this machine (each run forked from a server that imported torch once: :mod:`.fork_server`),
:class:`mdistiller.benchmark.slurm.SlurmLauncher` inside SLURM jobs (a subprocess: one run per job).

A run's subprocess reads ``<run>/benchmark_cfg.yaml`` (the merged config with its seed and
output folder), writes its logs into the run folder, and gets ``OMP_NUM_THREADS =
MKL_NUM_THREADS = threads``. Every attempt's exit code, outcome and wall time are appended to
``benchmark.json``; a failed attempt's reason (:func:`failure_reason`) goes to ``error.txt``.

Outcomes: ``finished``; ``interrupted`` when the trainer stopped on SIGTERM/SIGUSR2 (a preemption or a
time limit; exit code :data:`mdistiller._cli.EXIT_REQUEUE`, or killed by one of those signals before it
could handle them): not a failure, the run resumes from its ``latest`` on the next attempt; ``failed``.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import yaml

from .._cli import EXIT_REQUEUE
from .collect import ERROR_FILE, RUN_INFO, read_json, run_state
from .fork_server import ForkedRun

# Seconds a training process gets to stop cleanly (finish its step) when its attempt is cut short; SLURM's
# time-limit signal comes 90 s before the end (submitit's --signal=USR2@90).
STOP_GRACE_S = 60
# How a training process that was stopped by a signal ends: its own exit code after handling it, or the
# signal's (negative) when it came before the trainer installed its handlers.
INTERRUPTED_CODES = (EXIT_REQUEUE, -signal.SIGTERM) + ((-signal.SIGUSR2,) if hasattr(signal, "SIGUSR2") else ())

RUN_CFG = "benchmark_cfg.yaml"
TRAIN_MODULE = "mdistiller.train"


def run_config(run, sweep_dir):
    """The merged config of one run (seed and output folder set) as yaml text."""
    cfg = run.cfg.clone()
    cfg.defrost()
    cfg.EXPERIMENT.SEED = run.seed
    cfg.EXPERIMENT.PROJECT = run.name
    cfg.EXPERIMENT.NAME = run.folder
    cfg.LOG.PREFIX = os.path.abspath(sweep_dir)
    cfg.freeze()
    return cfg.dump()


def _without_prefix(text):
    tree = yaml.safe_load(text) or {}
    tree.get("LOG", {}).pop("PREFIX", None)  # the sweep folder may move
    return tree


def config_changed(run):
    """True when ``run``'s folder holds a run of another config than the planned one (``RUN_CFG`` differs)."""
    path = os.path.join(run.run_dir, RUN_CFG)
    if run.load_error or not os.path.isfile(path):
        return False
    with open(path) as f:
        saved = f.read()
    return _without_prefix(saved) != _without_prefix(run_config(run, os.path.dirname(run.run_dir)))


def retire_run_folder(run):
    """Rename ``run.run_dir`` to ``<run_dir>.replaced-<k>`` (first free k) and return the new path."""
    k = 1
    while os.path.exists("{}.replaced-{}".format(run.run_dir, k)):
        k += 1
    target = "{}.replaced-{}".format(run.run_dir, k)
    os.rename(run.run_dir, target)
    return target


def failure_reason(stderr, returncode):
    """One line saying why an attempt failed: the command's own one-line error (``mdistiller-train: error: ...``),
    else the message of the exception that ended the traceback, else how the process ended. Warnings and other
    lines printed on stderr are not reasons."""
    lines = stderr.splitlines()
    errors = [line.strip() for line in lines if re.match(r"^mdistiller-\S+: error: ", line)]
    if errors:
        return errors[-1]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if starts:
        for line in lines[starts[-1] + 1:]:
            if line.strip() and not line.startswith((" ", "\t")):  # the first unindented line: "Error: message"
                return line.strip()
    if returncode is not None and returncode < 0:
        try:
            return "killed by {}".format(signal.Signals(-returncode).name)
        except ValueError:
            return "killed by signal {}".format(-returncode)
    return "exit code {} without a summary.json".format(returncode)


def cores_available():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def threads_per_run(jobs, cores=None):
    """``max(1, cores // jobs)``: every run gets the same share of the machine."""
    return max(1, (cores or cores_available()) // max(1, int(jobs)))


def train_command(cfg_path, resume=False, python=None, module=TRAIN_MODULE):
    """``[python, -m, module, --cfg, cfg_path(, --resume)]``."""
    cmd = [python or sys.executable, "-m", module, "--cfg", cfg_path]
    if resume:
        cmd.append("--resume")
    return cmd


def execute_run(run, sweep_dir, threads, python=None, attempt_info=None, fork=False):
    """Run (or resume) one run in a new process (``python -m <run.module or mdistiller.train>``); returns the action
    taken. Never raises for a failing run. ``fork``: the process is forked from a fork server
    (:class:`.fork_server.ForkedRun`, same module, arguments, folder, environment and threads) unless another
    ``python`` is asked for or the platform cannot fork; else it is a subprocess.

    The action is decided from the run folder alone (:func:`run_state`): ``"skip"`` when finished,
    ``"resume"`` (``--resume``) when it has a ``latest``, else ``"new"``, so calling this again
    after an interruption continues the run. ``run.outcome`` is set to the attempt's outcome (see the
    module doc). ``attempt_info`` (a dict, e.g. the job id of the batch system) is stored with the
    attempt in ``benchmark.json``. An attempt cut short by an exception (e.g. the ``SystemExit`` of a
    job that SLURM preempts) sends SIGTERM to the subprocess, gives it :data:`STOP_GRACE_S` seconds to
    stop cleanly (then kills it), records the attempt, and the exception propagates.
    """
    os.makedirs(run.run_dir, exist_ok=True)
    error_path = os.path.join(run.run_dir, ERROR_FILE)
    run.outcome = None
    if run.load_error:
        with open(error_path, "w") as f:
            f.write(run.load_error + "\n")
        run.action = "failed-config"
        run.outcome = "failed"
        return run.action
    state = run_state(run.run_dir, run.epochs)
    if state == "done":
        run.action = "skip"
        run.outcome = "finished"
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
    cmd = train_command(cfg_path, resume=state == "resume", python=python, module=run.module or TRAIN_MODULE)
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    fork = fork and hasattr(os, "fork") and cmd[0] == sys.executable
    stdout_path, stderr_path = os.path.join(run.run_dir, "stdout.txt"), os.path.join(run.run_dir, "stderr.txt")
    started = time.time()
    code = child = None
    try:
        with open(stdout_path, "a") as out, open(stderr_path, "w") as err:
            out.write("$ {}\n".format(" ".join(cmd)))
            out.flush()
            try:
                if fork:
                    child = ForkedRun(cmd[2], cmd[3:], env, stdout_path, stderr_path)
                else:
                    child = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
            except OSError as e:
                err.write("{}: {}\n".format(type(e).__name__, e))
                code = -1
            else:
                _wait(child)
    finally:
        if child is not None:
            code = child.returncode  # None when it could not be stopped (left to the caller's exception)
        outcome = ("finished" if code == 0 and run_state(run.run_dir, run.epochs) == "done"
                   else "interrupted" if code in INTERRUPTED_CODES else "failed")
        attempt = {"action": state, "returncode": code, "outcome": outcome, "wall_time": time.time() - started,
                   "threads": threads, "started": started}
        attempt.update(attempt_info or {})
        info = read_json(os.path.join(run.run_dir, RUN_INFO)) or {"attempts": []}
        info["attempts"].append(attempt)
        with open(os.path.join(run.run_dir, RUN_INFO), "w") as f:
            json.dump(info, f, indent=2)
    if outcome == "failed":
        with open(os.path.join(run.run_dir, "stderr.txt")) as f:
            reason = failure_reason(f.read(), code)
        with open(error_path, "w") as f:
            f.write(reason + "\n")
    run.action = state
    run.outcome = outcome
    return run.action


def _wait(child):
    """Wait for the child; on any exception while waiting (e.g. the job's SystemExit), SIGTERM to the child,
    :data:`STOP_GRACE_S` seconds to stop cleanly, then SIGKILL, and the exception propagates."""
    try:
        child.wait()
    except BaseException:
        child.terminate()
        try:
            child.wait(timeout=STOP_GRACE_S)
        except BaseException:
            child.kill()
            child.wait()
        raise


def execute_runs(runs, sweep_dir, jobs, threads, python=None, on_done=None):
    """:func:`execute_run` for each run (forked from the fork server), ``jobs`` at once (one thread per run waiting
    on its process).

    ``on_done(run, action, started)`` is called after each run (``started`` = its start time), one
    call at a time.
    """
    lock = threading.Lock()
    jobs = max(1, int(jobs))

    def work(run):
        started = time.time()
        action = execute_run(run, sweep_dir, threads, python=python, fork=True,
                             attempt_info={"launcher": "local", "jobs": jobs})
        if on_done is not None:
            with lock:
                on_done(run, action, started)
        return action

    if jobs == 1:
        return [work(run) for run in runs]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(work, runs))


class LocalLauncher:
    """Runs on this machine: :func:`execute_runs`, ``jobs`` at once, ``threads`` each (default cores // jobs)."""

    name = "local"
    waits = True  # launch() returns when every run has ended

    def __init__(self, jobs=1, threads=None, python=None):
        self.jobs = max(1, int(jobs or 1))
        self.threads = int(threads) if threads else threads_per_run(self.jobs)
        self.python = python

    def describe(self):
        return "{} at once, {} thread(s) each".format(self.jobs, self.threads)

    def launch(self, runs, sweep_dir, on_done=None, echo=print):
        """Execute ``runs`` (planned, unfinished) and return when all have ended."""
        execute_runs(runs, sweep_dir, self.jobs, self.threads, python=self.python, on_done=on_done)
        return None
