"""Sweeps on SLURM: every unfinished (config, seed) of a sweep is one task of a SLURM job array (submitit).

    python -m mdistiller.benchmark --configs ... --seeds 0 1 2 --launcher slurm \
        --partition gpu --gpus-per-job 1 --cpus-per-job 8 --time 12:00:00 --account myproj [--wait]
    python -m mdistiller.benchmark --configs ... --seeds 0 1 2 --launcher slurm --slurm-config slurm.yaml

Each job calls :func:`.execute.execute_run` on its run, the function the local launcher calls:
``python -m mdistiller.train --cfg <run>/benchmark_cfg.yaml``, with ``--resume`` when the run
folder has a ``latest``. Hence:

* a finished run is never submitted (planning and skipping are the sweep's, :func:`.sweep.pending_runs`),
  nor is a run whose previous job is still queued or running (``<run>/slurm_job.json`` names it;
  ``squeue`` tells);
* a preempted or timed-out job is requeued and resumes from the run's ``latest``: SLURM sends SIGTERM
  (preemption) or SIGUSR2 (time limit) to the job's processes; the training process stops after its
  current step with ``latest`` intact (exit code ``EXIT_REQUEUE``, an *interrupted* attempt, not a
  failure), and the job ends without a result while SLURM requeues it, or submitit's checkpoint hook
  does (:meth:`RunJob.checkpoint` resubmits the same job); a job that died otherwise is resubmitted
  by running the same command again, and resumes the same way;
* the tables are built from the run folders (:func:`.sweep.collect_sweep`): after the jobs when
  ``wait`` is set (it also waits for the sweep's jobs submitted earlier that are still queued or
  running, requeued ones included), else later with ``--collect-only``.

Options (yaml keys of ``--slurm-config``; command-line flags override them), see :data:`OPTIONS`.
The job runs in the folder the sweep was submitted from, so relative paths in configs resolve as
for a local run. Threads per run: ``threads``, else the CPUs SLURM gave the job.
"""
import contextlib
import io
import json
import os
import shutil
import subprocess
import time
from collections import OrderedDict

from .._cli import UsageError, first_missing_folder, load_yaml_mapping
from .collect import ERROR_FILE, RUN_INFO, collect_run, read_json, run_state
from .execute import cores_available, execute_run

SUBMITTED = "slurm_job.json"  # in a run folder: the job that was last submitted for it

# yaml key -> (default, help). None = SLURM's (or the cluster's) default.
OPTIONS = OrderedDict(
    partition=(None, "SLURM partition (sbatch --partition)"),
    gpus_per_job=(1, "GPUs per job, i.e. per run (sbatch --gpus-per-node); 0 for partitions without GPUs"),
    cpus_per_job=(None, "CPUs per job (sbatch --cpus-per-task); also the run's thread count unless --threads"),
    mem_gb=(None, "memory per job in GB (sbatch --mem)"),
    time=("24:00:00", "time limit per job: minutes or [D-]HH:MM[:SS] (sbatch --time); a job that reaches it "
                      "is requeued and resumes from its latest"),
    account=(None, "account charged (sbatch --account)"),
    qos=(None, "quality of service (sbatch --qos)"),
    constraint=(None, "node features (sbatch --constraint)"),
    array_parallelism=(None, "at most this many jobs of the array at once (sbatch --array=...%N)"),
    max_requeue=(3, "times a job may be requeued after reaching its time limit (preemptions do not count)"),
    sbatch=({}, "extra sbatch options, {option: value} (value true for a bare flag), e.g. {mail-type: END}"),
    setup=([], "shell lines run in the job before the run (e.g. module load ..., source venv/bin/activate)"),
    job_name=(None, "job name (default mdistiller-<sweep folder name>)"),
    folder=(None, "submitit's folder: job scripts, pickles and logs (default <sweep>/slurm)"),
    cluster=("slurm", "slurm; or local: submitit's local executor runs the jobs on this machine "
                      "(to try a sweep without a cluster)"),
)
CLUSTERS = ("slurm", "local")


class SubmissionError(UsageError):
    """The job array could not be submitted (no SLURM here, sbatch refused the options, ...)."""


def parse_time(value):
    """A SLURM time limit as whole minutes: ``90``, ``"90"``, ``"MM:SS"``, ``"HH:MM:SS"``, ``"D-HH[:MM[:SS]]"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        minutes = float(value)
    else:
        text = str(value).strip()
        try:
            days, rest = text.split("-", 1) if "-" in text else (None, text)
            parts = [int(p) for p in rest.split(":")]
            if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
                parts += [0] * (3 - len(parts))
                h, m, s = parts
                minutes = int(days) * 1440 + h * 60 + m + s / 60.0
            elif len(parts) == 1:
                minutes = parts[0]
            elif len(parts) == 2:  # MM:SS
                minutes = parts[0] + parts[1] / 60.0
            elif len(parts) == 3:
                minutes = parts[0] * 60 + parts[1] + parts[2] / 60.0
            else:
                raise ValueError
        except ValueError:
            raise ValueError("time limit {!r}: give minutes or [D-]HH:MM[:SS]".format(value)) from None
    if minutes <= 0:
        raise ValueError("time limit {!r} is not positive".format(value))
    return int(-(-minutes // 1))  # ceil


def slurm_options(config=None, **overrides):
    """The launcher's options: :data:`OPTIONS` defaults < ``config`` (dict) < ``overrides`` (None = not given).

    ``sbatch`` mappings are merged (later keys win) and ``setup`` lines appended. Raises ValueError
    on an unknown key or a bad value.
    """
    options = OrderedDict((k, (list(d) if isinstance(d, list) else dict(d) if isinstance(d, dict) else d))
                          for k, (d, _) in OPTIONS.items())
    for source in (config or {}), overrides:
        unknown = set(source) - set(OPTIONS)
        if unknown:
            raise ValueError("unknown SLURM option(s) {}; known: {}".format(
                ", ".join(sorted(unknown)), ", ".join(OPTIONS)))
        for key, value in source.items():
            if value is None:
                continue
            if key == "sbatch":
                if not isinstance(value, dict):
                    raise ValueError("sbatch: give a mapping {option: value}, got %r" % (value,))
                options["sbatch"].update({str(k).lstrip("-"): v for k, v in value.items()})
            elif key == "setup":
                options["setup"] += [str(v) for v in ([value] if isinstance(value, str) else value)]
            else:
                options[key] = value
    for key in ("gpus_per_job", "cpus_per_job", "array_parallelism", "max_requeue"):
        if options[key] is not None:
            options[key] = int(options[key])
            if options[key] < 0:
                raise ValueError("{} must be >= 0".format(key))
    if options["mem_gb"] is not None:
        options["mem_gb"] = float(options["mem_gb"])
    options["time"] = parse_time(options["time"])
    if options["cluster"] not in CLUSTERS:
        raise ValueError("cluster must be one of {}, got {!r}".format(", ".join(CLUSTERS), options["cluster"]))
    return options


def load_slurm_config(path):
    """The options of a ``--slurm-config`` yaml (keys of :data:`OPTIONS`), validated."""
    config = load_yaml_mapping(path, "SLURM options")
    try:
        slurm_options(config)
    except ValueError as e:
        raise ValueError("{}: {}".format(path, e)) from None
    return config


def executor_parameters(options, sweep_dir):
    """``AutoExecutor.update_parameters`` keywords for ``options`` (generic ones, then ``slurm_``-prefixed ones)."""
    name = options["job_name"] or "mdistiller-{}".format(os.path.basename(os.path.abspath(sweep_dir)))
    params = dict(name=name, timeout_min=options["time"], nodes=1, tasks_per_node=1)
    if options["gpus_per_job"]:
        params["gpus_per_node"] = options["gpus_per_job"]
    if options["cpus_per_job"]:
        params["cpus_per_task"] = options["cpus_per_job"]
    if options["mem_gb"]:
        params["mem_gb"] = options["mem_gb"]
    for key in ("partition", "account", "qos", "constraint", "array_parallelism"):
        if options[key] is not None:
            params["slurm_" + key] = options[key]
    if options["sbatch"]:
        params["slurm_additional_parameters"] = dict(options["sbatch"])
    if options["setup"]:
        params["slurm_setup"] = list(options["setup"])
    return params


def make_executor(options, sweep_dir):
    """The submitit executor of a sweep: ``AutoExecutor(cluster=options["cluster"])`` with the options' parameters."""
    import submitit

    folder = options["folder"] or os.path.join(sweep_dir, "slurm")
    executor = submitit.AutoExecutor(folder=folder, cluster=options["cluster"],
                                     slurm_max_num_timeout=options["max_requeue"],
                                     local_max_num_timeout=options["max_requeue"])
    executor.update_parameters(**executor_parameters(options, sweep_dir))
    return executor


class RunJob:
    """One planned run as a submitit job: :func:`execute_run` in the job's allocation.

    Calling it again (a requeued job) resumes the run from its ``latest``; :meth:`checkpoint` is
    submitit's preemption/time-limit hook and resubmits the same job. Raises when the run failed,
    so that SLURM records the job as failed (the run folder holds the error, as locally). When the
    training process was interrupted (a preemption or the time limit), the job returns no result: it
    waits to be requeued (killed and requeued by SLURM, or requeued by submitit on SIGUSR2), so that
    nobody reads a requeued job as ended.
    """

    # Seconds an interrupted job waits for its requeue before it ends as failed (SLURM kills a preempted job
    # after its grace time, KillWait 30 s by default).
    REQUEUE_WAIT_S = 600

    def __init__(self, run, sweep_dir, threads=None, cwd=None, cluster="slurm"):
        self.run = run
        self.sweep_dir = sweep_dir
        self.threads = threads
        self.cwd = cwd or os.getcwd()
        self.cluster = cluster

    def __call__(self):
        os.chdir(self.cwd)
        threads = self.threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or 0) or cores_available()
        info = {"launcher": self.cluster if self.cluster == "slurm" else "submitit-" + self.cluster}
        try:
            import submitit

            env = submitit.JobEnvironment()
            info.update(job_id=env.job_id, host=env.hostname)
        except Exception:  # pragma: no cover - called outside a submitit job
            pass
        action = execute_run(self.run, self.sweep_dir, threads, attempt_info=info)
        if self.run.outcome == "interrupted":
            self._await_requeue()
        record = collect_run(self.run)
        if record["status"] == "failed":
            raise RuntimeError("{}/seed{} failed: {}".format(self.run.name, self.run.seed, record["error"]))
        return {"action": action, "status": record["status"], "run_dir": self.run.run_dir}

    def _await_requeue(self):
        """Sleep until SLURM kills the job or submitit's SIGUSR2 handler requeues it (and exits from here)."""
        deadline = time.time() + self.REQUEUE_WAIT_S
        while time.time() < deadline:
            time.sleep(1.0)
        raise RuntimeError("{}/seed{}: the training process was stopped by a signal, but the job was neither "
                           "requeued nor ended within {} s; run the command again to resubmit it".format(
                               self.run.name, self.run.seed, self.REQUEUE_WAIT_S))

    def checkpoint(self, *args, **kwargs):
        """Requeue the same job (submitit calls this on preemption or at the time limit); it resumes from ``latest``."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(type(self)(self.run, self.sweep_dir, self.threads, self.cwd, self.cluster))


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    try:
        with open("/proc/{}/stat".format(int(pid))) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:  # no /proc: trust kill(pid, 0)
        return True


def job_active(job_id, cluster="slurm"):
    """Whether job ``job_id`` is still queued or running (``squeue``; a process id for the local executor)."""
    if cluster == "local":
        return _pid_alive(job_id)
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    if out.returncode != 0:  # e.g. "Invalid job id specified": long gone
        return False
    ended = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
             "PREEMPTED"}
    states = [s.strip().upper() for s in out.stdout.split()]
    return any(s not in ended for s in states)


def submitted_job(run_dir):
    """The ``slurm_job.json`` record of a run folder, or None."""
    try:
        with open(os.path.join(run_dir, SUBMITTED)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class SlurmLauncher:
    """Submits the planned runs as one job array through submitit; optionally waits for the jobs.

    ``options``: :func:`slurm_options` (or a dict of its keys). ``threads``: threads per run
    (default: the CPUs of the job). ``poll_s``: seconds between status checks while waiting.
    """

    name = "slurm"

    def __init__(self, options=None, wait=False, threads=None, poll_s=None):
        self.options = slurm_options(options)
        self.wait = bool(wait)
        self.threads = int(threads) if threads else None
        self.poll_s = poll_s if poll_s is not None else (1.0 if self.options["cluster"] == "local" else 30.0)
        self.cluster = self.options["cluster"]

    @property
    def waits(self):
        return self.wait

    def describe(self):
        o = self.options
        if self.cluster == "local":
            where = "as jobs of submitit's local executor (all at once on this machine)"
        else:
            where = "as a SLURM job array" + (" on partition {}".format(o["partition"]) if o["partition"] else "")
        parts = ["{} GPU(s)".format(o["gpus_per_job"])]
        if o["cpus_per_job"]:
            parts.append("{} CPU(s)".format(o["cpus_per_job"]))
        parts.append("time limit {} min".format(o["time"]))
        if o["account"]:
            parts.append("account {}".format(o["account"]))
        return "{}; per job: {}".format(where, ", ".join(parts))

    def executor(self, sweep_dir):
        return make_executor(self.options, sweep_dir)

    def launch(self, runs, sweep_dir, on_done=None, echo=print):
        """Submit ``runs`` (planned, unfinished) -> ``[(run, job), ...]``. With ``wait``, waits for them and for the
        runs whose job, submitted earlier, is still queued or running."""
        echo = echo or (lambda *a, **k: None)
        to_submit, running = [], []
        for run in runs:
            if run.load_error:  # nothing to run: record the error here, as the local launcher does
                execute_run(run, sweep_dir, 1)
                if on_done is not None:
                    on_done(run, run.action, time.time())
                continue
            previous = submitted_job(run.run_dir)
            if previous and job_active(previous["job_id"], previous.get("cluster", "slurm")):
                echo("{}/seed{}: job {} is still queued or running; not submitted again{}".format(
                    run.name, run.seed, previous["job_id"], " (waiting for it)" if self.wait else ""))
                running.append((run, previous["job_id"], previous.get("cluster", "slurm")))
                continue
            to_submit.append(run)
        submitted, submitted_at = [], time.time()
        if to_submit:
            submitted = self._submit(to_submit, sweep_dir, echo)
        else:
            echo("Nothing to submit.")
        if self.wait and (submitted or running):
            self.wait_for(submitted, on_done, started=submitted_at, running=running)
        return submitted

    def _submit(self, runs, sweep_dir, echo):
        """One job array of ``runs``; a refused submission leaves nothing in submitit's folder and says what to do."""
        folder = self.options["folder"] or os.path.join(sweep_dir, "slurm")
        created = first_missing_folder(folder)
        before = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        cwd = os.getcwd()
        try:
            executor = self.executor(sweep_dir)
            with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's complaint; ours is one line
                jobs = executor.submit_array([RunJob(run, sweep_dir, self.threads, cwd, self.cluster) for run in runs])
        except ImportError:
            raise
        except Exception as e:
            if created:
                shutil.rmtree(created, ignore_errors=True)
            elif os.path.isdir(folder):  # submitit pickled the jobs before sbatch refused them
                for name in set(os.listdir(folder)) - before:
                    path = os.path.join(folder, name)
                    shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
            raise SubmissionError("could not submit the job array: {}".format(self._refusal_text(e))) from e
        submitted_at = time.time()
        for run, job in zip(runs, jobs):
            os.makedirs(run.run_dir, exist_ok=True)
            with open(os.path.join(run.run_dir, SUBMITTED), "w") as f:
                json.dump({"job_id": job.job_id, "cluster": self.cluster, "submitted": submitted_at,
                           "folder": str(executor.folder)}, f, indent=2)
        echo("Submitted {} run(s); job ids (logs in {}):".format(len(jobs), executor.folder))
        for run, job in zip(runs, jobs):
            echo("  {}  {}/seed{}".format(job.job_id, run.name, run.seed))
        return list(zip(runs, jobs))

    def _refusal_text(self, error):
        """The last line of sbatch's (or submitit's) complaint, with what to do about the common ones."""
        text = str(error)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = lines[-1] if lines else type(error).__name__
        if "srun" in text:
            reason += " (submit from a SLURM login node, or try the sweep here with --slurm-cluster local)"
        elif "node configuration is not available" in text and self.options["gpus_per_job"]:
            reason += (" (each job asks for {} GPU(s): on a partition without GPUs set --gpus-per-job 0, or "
                       "gpus_per_job: 0 in --slurm-config)".format(self.options["gpus_per_job"]))
        return reason

    def wait_for(self, submitted, on_done=None, started=None, running=()):
        """Block until every job has ended; ``on_done(run, action, started)`` after each, as jobs end.

        ``submitted``: ``[(run, submitit job)]``; ``running``: ``[(run, job id, cluster)]`` submitted earlier. A
        job is over when it has ended and is not requeued (a preempted job that SLURM requeued is still waited for).
        """
        started = started or time.time()
        pending = [(run, job, job.job_id, self.cluster) for run, job in submitted]
        pending += [(run, None, job_id, cluster) for run, job_id, cluster in running]
        while pending:
            waiting = []
            for entry in pending:
                run, job, job_id, cluster = entry
                if (job is None or job.done()) and not job_active(job_id, cluster):
                    self._job_ended(run, job, job_id)
                    if on_done is not None:
                        on_done(run, run.action, started)
                else:
                    waiting.append(entry)
            pending = waiting
            if pending:
                time.sleep(self.poll_s)

    @staticmethod
    def _job_ended(run, job, job_id):
        """Set ``run.action`` from the job's result (or the run folder); record why when the run did not finish."""
        error = None
        if job is not None:
            try:
                run.action = job.result()["action"]
                return
            except Exception as e:  # the run folder holds the run's own error; else say why the job ended
                lines = [line.strip() for line in str(e).splitlines() if line.strip()]
                error = lines[-1] if lines else type(e).__name__
        attempts = (read_json(os.path.join(run.run_dir, RUN_INFO)) or {}).get("attempts") or [{}]
        run.action = attempts[-1].get("action", "failed")
        error_path = os.path.join(run.run_dir, ERROR_FILE)
        if run_state(run.run_dir, run.epochs) != "done" and not os.path.exists(error_path):
            run.action = "failed"
            with open(error_path, "w") as f:
                f.write("job {} ended without finishing the run{}\n".format(job_id, ": " + error if error else ""))
