"""Sweeps on SLURM (mdistiller.benchmark.slurm): options -> submitit parameters, and job arrays end to end.

The end-to-end tests run the job arrays with submitit's local executor (``--slurm-cluster local``),
which runs the same pickled jobs, with the same checkpoint/requeue hook, as processes on this
machine; the sbatch script is checked with fake ``srun``/``sbatch``/``squeue`` programs on PATH.
"""
import os
import shlex
import signal
import stat
import time

import pytest

from mdistiller._cli import EXIT_REQUEUE
from mdistiller.benchmark import cli as bench_cli
from mdistiller.benchmark import run_sweep
from mdistiller.benchmark.slurm import RunJob, SlurmLauncher, parse_time, slurm_options
from tests.helpers.benchutil import read_rows, write_config
from tests.helpers.runutil import random_teacher_ckpt, tiny_opts

submitit = pytest.importorskip("submitit")

EPOCHS = 2  # a run killed after its first epoch has a `latest` to resume from
SEEDS = [1]  # two configs, one seed: two runs (the killed-jobs test interrupts both)


# ---------------------------------------------------------------------------------------------- helpers
def fake_programs(folder, monkeypatch, squeue_state="", sbatch_error=None):
    """``srun`` (makes submitit see a SLURM cluster), ``sbatch`` (keeps the script, prints a job id; or refuses the
    job with ``sbatch_error``), ``squeue``."""
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    scripts = {
        "srun": "#!/bin/sh\nexit 0\n",
        "sbatch": '#!/bin/sh\ncp "$1" "{}/sbatch_$(ls {} | wc -l).sh"\necho "Submitted batch job 4242"\n'.format(
            folder, folder) if sbatch_error is None else "#!/bin/sh\necho '{}' >&2\nexit 1\n".format(sbatch_error),
        "squeue": "#!/bin/sh\necho '{}'\n".format(squeue_state),
    }
    for name, text in scripts.items():
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", folder + os.pathsep + os.environ.get("PATH", ""))
    return folder


def cli_args(configs, seeds, out, name, opts, *extra):
    return (["--configs"] + list(configs) + ["--seeds"] + [str(s) for s in seeds]
            + ["--out", str(out), "--name", name, "--no-plots"] + list(extra) + ["--"] + list(opts))


def table_without_wall(path):
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in read_rows(path)]


def attempts(run_dir):
    import json

    with open(os.path.join(run_dir, "benchmark.json")) as f:
        return json.load(f)["attempts"]


def children(pid):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(entry)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def descendants(pid):
    found = []
    for kid in children(pid):
        found += [kid] + descendants(kid)
    return found


def cmdline(pid):
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until(condition, timeout=600, what="condition", poll=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("timed out waiting for " + what)


# ---------------------------------------------------------------------------------------------- options
def test_time_limits_in_slurm_formats():
    assert parse_time(90) == 90 and parse_time("90") == 90
    assert parse_time("1:30") == 2  # MM:SS, rounded up to whole minutes
    assert parse_time("12:00:00") == 720 and parse_time("1-00") == 1440 and parse_time("2-03:04:05") == 2 * 1440 + 185
    with pytest.raises(ValueError, match="time limit"):
        parse_time("soon")
    with pytest.raises(ValueError, match="unknown SLURM option"):
        slurm_options({"partiton": "gpu"})


def test_sbatch_parameters_from_yaml_and_flags_reach_the_executor(tmp_path, monkeypatch):
    """--slurm-config yaml, then flags on top -> the SlurmExecutor's parameters and its sbatch script."""
    fake_programs(tmp_path / "bin", monkeypatch)  # only `srun` on PATH matters here: nothing is submitted
    config = tmp_path / "slurm.yaml"
    config.write_text(
        "partition: cpu\naccount: proj\ntime: '02:00:00'\ncpus_per_job: 4\nmem_gb: 16\n"
        "array_parallelism: 2\nsbatch: {mail-type: END, requeue: true}\nsetup: [module load cuda]\n")
    args = bench_cli.build_parser().parse_args([
        "--configs", "x.yaml", "--launcher", "slurm", "--slurm-config", str(config),
        "--partition", "gpu", "--gpus-per-job", "2", "--qos", "high", "--sbatch", "exclude=node7",
        "--setup", "source venv/bin/activate", "--max-requeue", "5"])
    launcher = bench_cli.slurm_launcher_from_args(args)
    executor = launcher.executor(str(tmp_path / "sweep"))
    assert isinstance(executor._executor, submitit.SlurmExecutor)
    params = executor.parameters
    assert params["partition"] == "gpu"  # the flag wins over the yaml
    assert params["account"] == "proj" and params["qos"] == "high"
    assert params["time"] == 120 and params["cpus_per_task"] == 4 and params["gpus_per_node"] == 2
    assert params["mem"] == "16GB" and params["array_parallelism"] == 2
    assert params["additional_parameters"] == {"mail-type": "END", "requeue": True, "exclude": "node7"}
    assert params["setup"] == ["module load cuda", "source venv/bin/activate"]
    assert params["job_name"] == "mdistiller-sweep"
    assert executor._executor.max_num_timeout == 5
    assert str(executor.folder) == str(tmp_path / "sweep" / "slurm")
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --time=120",
                 "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16GB",
                 "#SBATCH --qos=high", "#SBATCH --mail-type=END", "#SBATCH --requeue", "#SBATCH --exclude=node7",
                 "module load cuda", "source venv/bin/activate"):
        assert line in script.splitlines(), line


def test_cli_rejects_mixed_launcher_options(capsys):
    with pytest.raises(SystemExit):
        bench_cli.main(["--configs", "x.yaml", "--partition", "gpu"])
    assert "--partition only apply to --launcher slurm" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_cli.main(["--configs", "x.yaml", "--launcher", "slurm", "--jobs", "2"])
    assert "--jobs is for the local launcher" in capsys.readouterr().err


def test_a_refused_submission_is_one_line_that_says_what_to_do_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """No SLURM here; then a cluster whose partition has no GPUs (sbatch refuses the default gpus_per_job 1)."""
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, "vanilla", "NONE")
    before = sorted(os.listdir(str(tmp_path)))

    def refused(*extra):
        with pytest.raises(SystemExit) as exit_info:
            bench_cli.main(["--configs", config, "--launcher", "slurm", "--no-plots"] + list(extra))
        assert exit_info.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("mdistiller-benchmark: error: could not submit the job array: ")
        assert sorted(os.listdir(str(tmp_path))) == before  # no sweep folder, no pickles of the refused jobs
        return line

    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no srun, no sbatch
    assert "--slurm-cluster local" in refused()
    fake_programs(tmp_path / "bin", monkeypatch, sbatch_error="sbatch: error: Batch job submission failed: "
                                                              "Requested node configuration is not available")
    before = sorted(os.listdir(str(tmp_path)))
    line = refused("--slurm-folder", "jobs")
    assert "Requested node configuration is not available" in line and "--gpus-per-job 0" in line
    (tmp_path / "jobs").mkdir()  # submitit's folder exists already: only the refused job's files go
    (tmp_path / "jobs" / "old.out").write_text("")
    before = sorted(os.listdir(str(tmp_path)))
    refused("--slurm-folder", "jobs")
    assert os.listdir(str(tmp_path / "jobs")) == ["old.out"]


def test_run_job_checkpoint_resubmits_the_same_run(tmp_path):
    """submitit's requeue hook: the job's checkpoint() is the same job again (it resumes from `latest` when run)."""
    from mdistiller.benchmark import plan_runs

    config = write_config(tmp_path, "kd", "KD")
    run = plan_runs([config], [3], str(tmp_path / "sweep"))[0]
    job = RunJob(run, str(tmp_path / "sweep"), threads=1)
    again = job.checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission) and not again.args and not again.kwargs
    assert isinstance(again.function, RunJob) and again.function is not job
    assert (again.function.run.run_dir, again.function.sweep_dir, again.function.threads, again.function.cwd) == (
        run.run_dir, job.sweep_dir, 1, job.cwd)


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """A 2-config x 1-seed sweep of 2-epoch digits runs, as a job array of submitit's local executor."""
    root = tmp_path_factory.mktemp("slurm")
    ckpt = random_teacher_ckpt(root / "teacher.pth", name="resnet8", num_classes=10)
    configs = [write_config(root, "vanilla", "NONE", teacher="resnet20"), write_config(root, "kd", "KD")]
    # the whole training set at 32x32: the killed-jobs test must catch each run between its two epochs
    opts = tiny_opts(root / "unused", epochs=EPOCHS, batch=128, size=32, per_class=None) + ["DISTILLER.TEACHER_CKPT", ckpt]
    out = root / "runs"
    code = bench_cli.main(cli_args(configs, SEEDS, out, "ref", opts, "--launcher", "slurm", "--slurm-cluster",
                                   "local", "--threads", "1", "--wait", "--poll", "0.5"))
    return dict(root=root, configs=configs, opts=opts, out=out, code=code, sweep_dir=str(out / "ref"))


@pytest.mark.slow
def test_job_array_runs_the_sweep_end_to_end(local_sweep):
    sweep_dir = local_sweep["sweep_dir"]
    assert local_sweep["code"] == 0
    runs = read_rows(os.path.join(sweep_dir, "runs.csv"))
    assert [(r["name"], r["seed"], r["status"], r["epochs"]) for r in runs] == [
        ("vanilla", "1", "ok", "2"), ("kd", "1", "ok", "2")]
    rows = read_rows(os.path.join(sweep_dir, "results.csv"))
    assert [(r["name"], r["method"], r["n"], r["status"]) for r in rows] == [("vanilla", "student", "1", "ok"),
                                                                             ("kd", "KD", "1", "ok")]
    job_ids = set()
    for r in runs:
        (attempt,) = attempts(r["run_dir"])
        assert attempt["launcher"] == "submitit-local" and attempt["action"] == "new"
        assert attempt["returncode"] == 0 and attempt["threads"] == 1
        assert r["job_ids"] == attempt["job_id"]
        job_ids.add(attempt["job_id"])
        with open(os.path.join(r["run_dir"], "stdout.txt")) as f:  # the local runner's command, in a job
            assert f.readline().split()[2:5] == ["-m", "mdistiller.train", "--cfg"]
    assert len(job_ids) == 2  # one job per run
    logs = os.listdir(os.path.join(sweep_dir, "slurm"))
    assert sum(name.endswith("_result.pkl") for name in logs) == 2
    with open(os.path.join(sweep_dir, "results.md")) as f:
        assert "run as batch jobs (submitit-local)" in f.read()


@pytest.mark.slow
def test_collect_only_rebuilds_the_same_table_and_finished_runs_are_not_resubmitted(local_sweep, capsys):
    sweep_dir = local_sweep["sweep_dir"]
    names = ("results.md", "results.csv", "runs.csv")
    run_dirs = [r["run_dir"] for r in read_rows(os.path.join(sweep_dir, "runs.csv"))]
    stamps = {d: os.path.getmtime(os.path.join(d, "benchmark.json")) for d in run_dirs}
    before = {}
    for name in names:
        with open(os.path.join(sweep_dir, name)) as f:
            before[name] = f.read()
        os.remove(os.path.join(sweep_dir, name))
    slurm_files = sorted(os.listdir(os.path.join(sweep_dir, "slurm")))
    common = (local_sweep["configs"], SEEDS, local_sweep["out"], "ref", local_sweep["opts"])

    assert bench_cli.main(cli_args(*common, "--collect-only")) == 0
    for name in names:
        with open(os.path.join(sweep_dir, name)) as f:
            assert f.read() == before[name], name

    capsys.readouterr()
    assert bench_cli.main(cli_args(*common, "--launcher", "slurm", "--slurm-cluster", "local")) == 0
    out = capsys.readouterr().out
    assert "2 finished already, 0 to run" in out and "Nothing to submit." in out
    assert sorted(os.listdir(os.path.join(sweep_dir, "slurm"))) == slurm_files  # no job was submitted
    assert {d: os.path.getmtime(os.path.join(d, "benchmark.json")) for d in run_dirs} == stamps  # nothing ran


@pytest.mark.slow
def test_preempted_and_killed_jobs_resume_and_give_the_table_of_an_uninterrupted_sweep(local_sweep, capsys):
    """Same sweep in a new folder where two runs are still to do. One job is preempted as SLURM does it: SIGTERM to
    every process of the job (the training process stops after its step, `latest` intact), then SIGUSR2 (submitit's
    checkpoint hook requeues the job). The other job's node dies (SIGKILL); running the command again resubmits it,
    and --wait waits for both, the requeued one included: every run ends ok and the command exits 0. Both resume
    from their `latest`; the table equals the uninterrupted sweep's."""
    ref_dir = local_sweep["sweep_dir"]
    out = local_sweep["root"] / "runs2"
    sweep_dir = str(out / "ref")  # same sweep name: same run names and table title
    todo = {"kd": os.path.join(sweep_dir, "kd", "seed1"), "vanilla": os.path.join(sweep_dir, "vanilla", "seed1")}
    os.makedirs(sweep_dir, exist_ok=True)  # both runs are still to do
    common = (local_sweep["configs"], SEEDS, out, "ref", local_sweep["opts"])
    launch = ("--launcher", "slurm", "--slurm-cluster", "local", "--threads", "1")

    # 1. submit: only the two unfinished runs become jobs
    launcher = SlurmLauncher({"cluster": "local"}, wait=False, threads=1)
    result = run_sweep(local_sweep["configs"], seeds=SEEDS, out=str(out), name="ref", opts=local_sweep["opts"],
                       launcher=launcher, echo=None)
    assert result["records"] is None
    jobs = {run.name: job for run, job in result["submission"]}
    assert sorted(jobs) == ["kd", "vanilla"] and all(run.seed == 1 for run, _ in result["submission"])
    # ... and running the command again while they run submits nothing
    assert bench_cli.main(cli_args(*common, *launch)) == 0
    printed = capsys.readouterr().out
    assert "still queued or running; not submitted again" in printed and "Nothing to submit." in printed
    assert "--collect-only" in printed

    try:
        # 2. each training process is frozen (SIGSTOP) as soon as its first checkpoint exists, i.e. in its second
        #    and last epoch: what happens next cannot race with the end of the run
        controller = {name: job._process.pid for name, job in jobs.items()}
        trainer = {}
        for name, run_dir in todo.items():
            trainer[name] = wait_until(lambda: [p for p in descendants(controller[name])
                                                if "mdistiller.train" in cmdline(p)], what="the training process")[0]
            wait_until(lambda: os.path.exists(os.path.join(run_dir, "latest")), what="a first checkpoint", poll=0.02)
            os.kill(trainer[name], signal.SIGSTOP)
            assert not os.path.exists(os.path.join(run_dir, "summary.json"))
        task = wait_until(lambda: [p for p in children(controller["kd"]) if "submitit.core._submit" in cmdline(p)],
                          what="the job's process")[0]
        # kd is preempted: SIGTERM to every process of the job, then SIGUSR2 once the training process has stopped
        for pid in (task, trainer["kd"]):
            os.kill(pid, signal.SIGTERM)
        os.kill(trainer["kd"], signal.SIGCONT)
        wait_until(lambda: trainer["kd"] not in descendants(controller["kd"]), what="the training process to stop")
        os.kill(task, signal.SIGUSR2)
        # vanilla's node dies
        for pid in descendants(controller["vanilla"])[::-1] + [controller["vanilla"]]:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: jobs["vanilla"].done(), timeout=60, what="the killed job to end")
        assert not os.path.exists(os.path.join(todo["vanilla"], "summary.json"))

        # 3. the same command again: resubmits the killed run only (the requeued one is still running), and waits
        #    for both
        assert bench_cli.main(cli_args(*common, *launch, "--wait", "--poll", "0.5")) == 0
        printed = capsys.readouterr().out
        assert "kd/seed1: job {} is still queued or running; not submitted again (waiting for it)".format(
            jobs["kd"].job_id) in printed
        assert "Submitted 1 run(s)" in printed and "resumed vanilla/seed1" in printed and "FAILED" not in printed
        assert jobs["kd"].done() and jobs["kd"].result()["action"] == "resume"
    finally:  # never leave a job of this test running
        for job in jobs.values():
            if not job.done():
                job.cancel()

    # 4. the preempted attempt is recorded as interrupted, not failed; every run resumed from its latest (epoch 1),
    #    nothing redone, and the table is the uninterrupted one
    kd, vanilla = attempts(todo["kd"]), attempts(todo["vanilla"])
    assert [(a["action"], a["returncode"], a["outcome"]) for a in kd] == [
        ("new", EXIT_REQUEUE, "interrupted"), ("resume", 0, "finished")]
    assert kd[0]["job_id"] == kd[1]["job_id"] == jobs["kd"].job_id  # requeued: the same job
    assert [(a["action"], a["returncode"]) for a in vanilla] == [("resume", 0)]  # the killed attempt left no record
    assert vanilla[0]["job_id"] != jobs["vanilla"].job_id  # a new job
    assert not os.path.exists(os.path.join(todo["kd"], "error.txt"))
    for run_dir in todo.values():
        with open(os.path.join(run_dir, "worklog.txt")) as f:
            assert "resumed from epoch 1" in f.read()
        assert [r["epoch"] for r in read_rows(os.path.join(run_dir, "metrics.csv"))] == ["1", "2"]
        with open(os.path.join(run_dir, "stdout.txt")) as f:
            commands = [line.split()[1:] for line in f if line.startswith("$ ")]
        assert commands[-1][-1] == "--resume" and commands[-1][:-1] == commands[0]
    assert bench_cli.main(cli_args(*common, "--collect-only")) == 0
    assert table_without_wall(os.path.join(sweep_dir, "results.csv")) == table_without_wall(
        os.path.join(ref_dir, "results.csv"))
    keep = ("name", "seed", "status", "epochs", "last_acc", "best_acc", "best_epoch")
    assert [{k: r[k] for k in keep} for r in read_rows(os.path.join(sweep_dir, "runs.csv"))] == [
        {k: r[k] for k in keep} for r in read_rows(os.path.join(ref_dir, "runs.csv"))]


@pytest.mark.slow
def test_submission_to_slurm_writes_the_array_script_and_prints_the_collect_command(tmp_path, monkeypatch, capsys):
    """With (fake) srun/sbatch/squeue on PATH: one sbatch array for the unfinished runs, the job ids and the
    --collect-only command printed; that command tabulates; a second submission while queued submits nothing."""
    bin_dir = fake_programs(tmp_path / "bin", monkeypatch)
    configs = [write_config(tmp_path, "vanilla", "NONE"), write_config(tmp_path, "kd", "KD")]
    teacher = random_teacher_ckpt(tmp_path / "teacher.pth")  # checked before anything is submitted
    opts = ["SOLVER.EPOCHS", "2", "DATASET.TYPE", "digits", "DISTILLER.TEACHER_CKPT", teacher]
    monkeypatch.chdir(tmp_path)
    args = cli_args(configs, [0, 1], "runs", "grid", opts, "--launcher", "slurm", "--partition", "gpu",
                    "--time", "1:00:00", "--account", "proj", "--cpus-per-job", "8", "--array-parallelism", "3",
                    "--sbatch", "mail-type=END")
    assert bench_cli.main(args) == 0
    printed = capsys.readouterr().out
    (script,) = [n for n in os.listdir(bin_dir) if n.startswith("sbatch_")]
    with open(os.path.join(bin_dir, script)) as f:
        lines = f.read().splitlines()
    for line in ("#SBATCH --array=0-3%3", "#SBATCH --partition=gpu", "#SBATCH --time=60", "#SBATCH --account=proj",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --gpus-per-node=1", "#SBATCH --mail-type=END",
                 "#SBATCH --job-name=mdistiller-grid", "#SBATCH --signal=USR2@90"):
        assert line in lines, line
    assert any("submitit.core._submit" in line and line.startswith("srun") for line in lines)
    for i, run in enumerate(("vanilla/seed0", "vanilla/seed1", "kd/seed0", "kd/seed1")):
        assert "  4242_{}  {}".format(i, run) in printed
    # each array task's pickle is the RunJob of its run
    for i, run in enumerate(("vanilla/seed0", "vanilla/seed1", "kd/seed0", "kd/seed1")):
        delayed = submitit.helpers.DelayedSubmission.load(os.path.join("runs", "grid", "slurm",
                                                                        "4242_{}_submitted.pkl".format(i)))
        assert isinstance(delayed.function, RunJob)
        assert delayed.function.run.run_dir == os.path.join("runs", "grid", run)
        assert delayed.function.cwd == str(tmp_path)
    command = [line.strip() for line in printed.splitlines() if "--collect-only" in line][0]
    words = shlex.split(command)
    assert words[1:3] == ["-m", "mdistiller.benchmark"]
    assert bench_cli.main(words[3:]) == 1  # nothing ran: every run is pending
    rows = read_rows(os.path.join("runs", "grid", "results.csv"))
    assert [(r["name"], r["n"], r["runs"]) for r in rows] == [("vanilla", "0", "2"), ("kd", "0", "2")]
    assert all("not finished" in r["status"] for r in rows)

    fake_programs(tmp_path / "bin", monkeypatch, squeue_state="PENDING")  # squeue now lists the array tasks
    capsys.readouterr()
    assert bench_cli.main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("is still queued or running") == 4 and "Nothing to submit." in printed
    assert len([n for n in os.listdir(bin_dir) if n.startswith("sbatch_")]) == 1
