"""Training processes forked from a server that imported torch and the package once.

A run of a sweep is ``python -m mdistiller.train --cfg <run>/benchmark_cfg.yaml``. Started as a new interpreter,
each run first spends ~4 CPU-seconds importing torch, torchvision, ``torch._dynamo`` and tensorboardX: for the 40
small runs of ``make demo`` that is 160 of about 600 CPU-seconds. The local launcher instead asks a fork server
(``python -m mdistiller.benchmark.fork_server``, started once per sweep process and set of load-time environment
variables) to fork a process that runs the same module with the same arguments, working folder, environment and
thread count, as ``python -m`` would; the training code is the same and so is the run.

Protocol (one JSON object per line): the client writes ``{"id", "module", "args", "cwd", "env", "stdout",
"stderr"}`` to the server's stdin; the server answers ``["started", id, pid]`` and, when the process has ended,
``["ended", id, code]`` (the exit code, or minus the signal that ended it, as :class:`subprocess.Popen` reports
it). The server exits when its stdin closes; running processes carry on.

The server never touches CUDA (a process forked after CUDA was initialised cannot use it): its imports do not
query it (tested), and each forked run initialises CUDA itself, as a new interpreter would.

Unlike :mod:`multiprocessing`'s forkserver, a forked run does not re-import the client's ``__main__`` script, so a
script calling :func:`mdistiller.benchmark.run_sweep` needs no ``if __name__ == "__main__"`` guard.
"""
import json
import os
import select
import signal
import subprocess
import sys
import threading

# Imported once by the server (a missing optional one, e.g. optuna, is skipped). Not the run modules themselves:
# runpy executes those as ``__main__``, as ``python -m`` does.
PRELOAD = ("torch", "torch._dynamo", "torchvision", "tensorboardX", "mdistiller._cli", "mdistiller.engine.cfg",
           "mdistiller.engine.trainer", "mdistiller.distillers", "mdistiller.dataset", "mdistiller.tune.study")
# Environment variables that native libraries read when torch loads (CPU kernels, OpenMP, MKL, oneDNN, CUDA): a
# forked process keeps its server's, so there is one server per set of their values. The thread counts are not
# among them: each forked run sets its own (torch.set_num_threads, as OMP_NUM_THREADS does for a new interpreter).
LOAD_TIME_ENV = ("ATEN_", "ONEDNN_", "DNNL_", "MKL_", "OMP_", "KMP_", "GOMP_", "CUDA_", "PYTORCH_", "TORCH_",
                 "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHON")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
POLL_S = 0.05  # how often the server looks for ended processes while some run


def load_time_env(env):
    """The part of ``env`` that a forked process inherits from its server rather than from its request."""
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith(LOAD_TIME_ENV) and k not in THREAD_ENV))


def exit_code(status):
    """A ``waitpid`` status as :class:`subprocess.Popen` reports it: the exit code, or minus the signal."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


# ---------------------------------------------------------------------------------------------------------- server
def _run_request(request):
    """In the forked process: ``python -m module *args`` with the request's folder, environment and files; returns
    the exit code."""
    import atexit
    import io
    import runpy
    import traceback

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    append = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], append),
                            (2, request["stderr"], append)):
        opened = os.open(path, flags, 0o644)
        if opened != fd:
            os.dup2(opened, fd)
            os.close(opened)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True, write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True, write_through=True)
    sys.path[0] = os.getcwd()  # what `python -m` puts first
    import torch

    threads = request["env"].get("OMP_NUM_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    sys.argv = [request["module"]] + list(request["args"])
    sys.modules.pop(request["module"], None)  # imported by a preloaded module: run afresh, as `python -m` does
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    for thread in threading.enumerate():  # what an interpreter does at exit: wait for non-daemon threads, atexit
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _fork(request, channels):
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for fd in channels:
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the server ignores it; an interpreter does not
        code = _run_request(request)
    except BaseException:
        import traceback

        traceback.print_exc()  # into the run's stderr once _run_request has redirected it
    finally:
        os._exit(code)


def serve(requests_fd=0, replies_fd=1):
    """The server's loop: fork a process per request line, report its start and its end."""
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    replies = os.fdopen(os.dup(replies_fd), "w", buffering=1)
    os.dup2(2, replies_fd)  # anything printed by the server goes to its stderr, not into the replies
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the client, which stops its runs
    running, pending = {}, b""
    while True:
        ready, _, _ = select.select([requests_fd], [], [], POLL_S if running else None)
        if ready:
            data = os.read(requests_fd, 65536)
            if not data:  # the client has gone: stop serving; running processes carry on
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = _fork(request, (requests_fd, replies.fileno()))
                running[pid] = request["id"]
                replies.write(json.dumps(["started", request["id"], pid]) + "\n")
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if not pid:
                break
            replies.write(json.dumps(["ended", running.pop(pid), exit_code(status)]) + "\n")


# ---------------------------------------------------------------------------------------------------------- client
class _Server:
    """The client's end of one fork server."""

    def __init__(self, env):
        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, close_fds=True)
        self.lock = threading.Lock()
        self.runs = {}
        self.next_id = 0
        self.reader = threading.Thread(target=self._read, name="mdistiller-fork-server", daemon=True)
        self.reader.start()

    def alive(self):
        return self.process.poll() is None and self.reader.is_alive()

    def _read(self):
        for line in self.process.stdout:
            what, run_id, value = json.loads(line)
            with self.lock:
                run = self.runs[run_id]
            if what == "started":
                run._started(value)
            else:
                with self.lock:
                    del self.runs[run_id]
                run._ended(value)
        with self.lock:  # the server has gone: its processes can no longer be waited for
            runs, self.runs = list(self.runs.values()), {}
        for run in runs:
            run._ended(None)

    def submit(self, run, request):
        with self.lock:
            request["id"] = run_id = self.next_id
            self.next_id += 1
            self.runs[run_id] = run
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()


_servers = {}
_servers_lock = threading.Lock()


def fork_server(env):
    """The running fork server for ``env``'s load-time variables (started on first use)."""
    key = load_time_env(env)
    with _servers_lock:
        server = _servers.get(key)
        if server is None or not server.alive():
            server = _servers[key] = _Server(env)
        return server


class ForkedRun:
    """``python -m module *args`` forked from a fork server, with :class:`subprocess.Popen`'s interface:
    ``pid``, ``wait(timeout)``, ``terminate()``, ``kill()``, ``returncode`` (None when
    the server died before the process ended)."""

    def __init__(self, module, args, env, stdout, stderr, cwd=None):
        self.pid = self.returncode = None
        self._has_started, self._has_ended = threading.Event(), threading.Event()
        fork_server(env).submit(self, {"module": module, "args": list(args), "env": dict(env),
                                       "cwd": os.path.abspath(cwd or os.getcwd()),
                                       "stdout": os.path.abspath(stdout), "stderr": os.path.abspath(stderr)})

    def _started(self, pid):
        self.pid = pid
        self._has_started.set()

    def _ended(self, code):
        self.returncode = code
        self._has_started.set()
        self._has_ended.set()

    def wait(self, timeout=None):
        if not self._has_ended.wait(timeout):
            raise subprocess.TimeoutExpired("python -m mdistiller.benchmark.fork_server", timeout)
        return self.returncode

    def send_signal(self, sig):
        self._has_started.wait()
        if self.pid is not None and not self._has_ended.is_set():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)


if __name__ == "__main__":
    serve()
