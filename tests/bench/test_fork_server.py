"""The local launcher's fork server: a forked run is ``python -m module`` with the same arguments, folder,
environment, threads and exit code, and trains the same run as a subprocess."""
import os
import signal
import subprocess
import sys
import time

import pytest

from mdistiller.benchmark.execute import execute_run
from mdistiller.benchmark.fork_server import ForkedRun, load_time_env
from mdistiller.benchmark.plan import plan_runs
from tests.helpers.runutil import REPO

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")]
TARGET = "tests.helpers.fork_target"


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _forked(tmp_path, args, env=None, cwd=REPO):
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    run = ForkedRun(TARGET, args, env or _env(), str(out), str(err), cwd=cwd)
    code = run.wait(timeout=120)
    return code, out.read_text(), err.read_text()


def _facts(text):
    return dict(line.split(" ", 1) for line in text.splitlines())


def test_a_forked_process_sees_what_python_m_would(tmp_path):
    env = _env(FORK_TEST_VALUE="seen", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    code, out, err = _forked(tmp_path, ["report", "FORK_TEST_VALUE"], env=env)
    direct = subprocess.run([sys.executable, "-m", TARGET, "report", "FORK_TEST_VALUE"], cwd=REPO, env=env,
                            capture_output=True, text=True, check=True)
    assert code == 0 and err == "to stderr\n"
    assert _facts(out) == _facts(direct.stdout)
    assert _facts(out)["env"] == "seen" and _facts(out)["threads"] == "2" and _facts(out)["cwd"] == REPO
    assert _facts(out)["main"] == "__main__ fork_target.py"  # the module runs as __main__; no other __main__ import


def test_exit_codes_and_tracebacks_are_those_of_a_new_interpreter(tmp_path):
    assert _forked(tmp_path, ["exit", "3"])[0] == 3
    assert _forked(tmp_path, ["exit", "0"])[0] == 0
    code, _, err = _forked(tmp_path, ["raise"])
    assert code == 1 and err.startswith("Traceback (most recent call last)")
    assert err.strip().splitlines()[-1] == "RuntimeError: raised on purpose"


def test_terminate_ends_the_process_with_sigterm(tmp_path):
    out = tmp_path / "out.txt"
    run = ForkedRun(TARGET, ["sleep", "60"], _env(), str(out), str(tmp_path / "err.txt"), cwd=REPO)
    deadline = time.time() + 60
    while "sleeping" not in (out.read_text() if out.exists() else "") and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(subprocess.TimeoutExpired):
        run.wait(timeout=0.1)
    run.terminate()
    assert run.wait(timeout=30) == -signal.SIGTERM


def test_other_cpu_kernels_get_their_own_server(tmp_path):
    """ATEN_CPU_CAPABILITY is read when torch loads: a request with another value is forked from another server."""
    plain = {k: v for k, v in _env().items() if k != "ATEN_CPU_CAPABILITY"}  # CI may run with it set already
    restricted = dict(plain, ATEN_CPU_CAPABILITY="default")
    assert load_time_env(restricted) != load_time_env(plain)
    code, out, _ = _forked(tmp_path, ["report", "ATEN_CPU_CAPABILITY"], env=plain)
    assert code == 0 and _facts(out)["env"] == "-"
    code, out, _ = _forked(tmp_path, ["report", "ATEN_CPU_CAPABILITY"], env=restricted)
    assert code == 0 and _facts(out)["kernels"] == "DEFAULT"


def test_a_forked_run_trains_the_run_of_a_subprocess(tmp_path):
    """Same config and seed through execute_run with and without the fork: metrics.csv equal but for the times."""
    config = os.path.join(REPO, "configs", "digits", "vanilla.yaml")
    rows = {}
    for fork in (True, False):
        (run,) = plan_runs([config], seeds=[3], sweep_dir=str(tmp_path / str(fork)),
                           opts=["SOLVER.EPOCHS", "2", "DATASET.TRAIN_PER_CLASS", "5"])
        execute_run(run, str(tmp_path / str(fork)), threads=1, fork=fork)
        assert run.outcome == "finished"
        with open(os.path.join(run.run_dir, "metrics.csv")) as f:
            table = [line.rstrip("\n").split(",") for line in f]
        column = table[0].index("epoch_time")
        rows[fork] = [row[:column] + row[column + 1:] for row in table]
    assert rows[True] == rows[False] and len(rows[True]) == 3


def test_the_servers_imports_leave_cuda_untouched():
    """A process forked after CUDA was queried cannot use CUDA: the server's preload must not query it."""
    script = ("import torch\ncalls = []\ncount = torch._C._cuda_getDeviceCount\n"
              "torch._C._cuda_getDeviceCount = lambda *a: calls.append(1) or count(*a)\n"
              "from mdistiller.benchmark.fork_server import PRELOAD\n"
              "for name in PRELOAD:\n    try:\n        __import__(name)\n    except ImportError:\n        pass\n"
              "print(len(calls), torch.cuda.is_initialized())\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", "False"]
