"""A module for the fork server's tests: ``python -m tests.helpers.fork_target ACTION [ARG]``."""
import os
import sys
import time


def main(action, arg=None):
    if action == "report":  # what the process sees, one fact per line
        import torch

        print("argv", " ".join(sys.argv[1:]))
        print("cwd", os.getcwd())
        print("env", os.environ.get(arg, "-"))
        print("threads", torch.get_num_threads())
        print("kernels", torch.backends.cpu.get_cpu_capability())
        print("main", sys.modules["__main__"].__name__, os.path.basename(sys.modules["__main__"].__file__))
        print("to stderr", file=sys.stderr)
    elif action == "exit":
        sys.exit(int(arg))
    elif action == "raise":
        raise RuntimeError("raised on purpose")
    elif action == "sleep":
        print("sleeping", flush=True)
        time.sleep(float(arg))


if __name__ == "__main__":
    main(*sys.argv[1:])
