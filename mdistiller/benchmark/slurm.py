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
* a preempted or timed-out job is requeued by submitit's checkpoint hook (:meth:`RunJob.checkpoint`
  resubmits the same job) and resumes from the run's ``latest``; a job that died otherwise is
  resubmitted by running the same command again, and resumes the same way;
* the tables are built from the run folders (:func:`.sweep.collect_sweep`): after the jobs when
  ``wait`` is set, else later with ``--collect-only``.

Options (yaml keys of ``--slurm-config``; command-line flags override them), see :data:`OPTIONS`.
The job runs in the folder the sweep was submitted from, so relative paths in configs resolve as
for a local run. Threads per run: ``threads``, else the CPUs SLURM gave the job.
"""
import json
import os
import subprocess
import time
from collections import OrderedDict

from .collect import ERROR_FILE, collect_run, run_state
from .execute import cores_available, execute_run

SUBMITTED = "slurm_job.json"  # in a run folder: the job that was last submitted for it

# yaml key -> (default, help). None = SLURM's (or the cluster's) default.
OPTIONS = OrderedDict(
    partition=(None, "SLURM partition (sbatch --partition)"),
    gpus_per_job=(1, "GPUs per job, i.e. per run (sbatch --gpus-per-node); 0 for CPU-only partitions"),
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


class SubmissionError(RuntimeError):
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
    import yaml

    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError("{}: expected a mapping of SLURM options".format(path))
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
    so that SLURM records the job as failed (the run folder holds the error, as locally).
    """

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
        record = collect_run(self.run)
        if record["status"] == "failed":
            raise RuntimeError("{}/seed{} failed: {}".format(self.run.name, self.run.seed, record["error"]))
        return {"action": action, "status": record["status"], "run_dir": self.run.run_dir}

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
        """Submit ``runs`` (planned, unfinished) -> ``[(run, job), ...]``; waits for them when ``wait`` is set."""
        echo = echo or (lambda *a, **k: None)
        to_submit = []
        for run in runs:
            if run.load_error:  # nothing to run: record the error here, as the local launcher does
                execute_run(run, sweep_dir, 1)
                if on_done is not None:
                    on_done(run, run.action, time.time())
                continue
            previous = submitted_job(run.run_dir)
            if previous and job_active(previous["job_id"], previous.get("cluster", "slurm")):
                echo("{}/seed{}: job {} is still queued or running; not submitted again".format(
                    run.name, run.seed, previous["job_id"]))
                continue
            to_submit.append(run)
        if not to_submit:
            echo("Nothing to submit.")
            return []
        cwd = os.getcwd()
        try:
            executor = self.executor(sweep_dir)
            jobs = executor.submit_array([RunJob(run, sweep_dir, self.threads, cwd, self.cluster) for run in to_submit])
        except ImportError:
            raise
        except Exception as e:
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            hint = " (submit from a SLURM login node, or try the sweep here with --slurm-cluster local)" if (
                "srun" in str(e)) else ""
            raise SubmissionError("could not submit the job array: {}{}".format(
                lines[-1] if lines else type(e).__name__, hint)) from e
        submitted_at = time.time()
        for run, job in zip(to_submit, jobs):
            os.makedirs(run.run_dir, exist_ok=True)
            with open(os.path.join(run.run_dir, SUBMITTED), "w") as f:
                json.dump({"job_id": job.job_id, "cluster": self.cluster, "submitted": submitted_at,
                           "folder": str(executor.folder)}, f, indent=2)
        echo("Submitted {} run(s); job ids (logs in {}):".format(len(jobs), executor.folder))
        for run, job in zip(to_submit, jobs):
            echo("  {}  {}/seed{}".format(job.job_id, run.name, run.seed))
        submitted = list(zip(to_submit, jobs))
        if self.wait:
            self.wait_for(submitted, on_done, started=submitted_at)
        return submitted

    def wait_for(self, submitted, on_done=None, started=None):
        """Block until every job has ended; ``on_done(run, action, started)`` after each, as jobs end."""
        from submitit.helpers import as_completed

        started = started or time.time()
        run_of = {id(job): run for run, job in submitted}
        for job in as_completed([job for _, job in submitted], poll_frequency=self.poll_s):
            run = run_of[id(job)]
            try:
                action = job.result()["action"]
            except Exception as e:  # the run folder holds the run's own error; else say why the job ended
                action = "failed"
                error_path = os.path.join(run.run_dir, ERROR_FILE)
                if run_state(run.run_dir, run.epochs) != "done" and not os.path.exists(error_path):
                    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
                    with open(error_path, "w") as f:
                        f.write("job {} ended without finishing the run: {}\n".format(
                            job.job_id, lines[-1] if lines else type(e).__name__))
            if on_done is not None:
                on_done(run, action, started)
