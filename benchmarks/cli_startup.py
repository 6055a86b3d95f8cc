"""How long each console command takes to answer ``--help`` and an argument error, in a fresh interpreter.

    python benchmarks/cli_startup.py                 # --repeats 5; --python /path/to/venv/bin/python

Every command parses its arguments before importing torch, so both answers should take well under a second;
a command whose ``--help`` imports torch takes several (``import torch`` alone is printed for scale). Each
cell is the median wall time of ``--repeats`` runs of ``python -m mdistiller.<module> ...`` (the console
script runs the same module). The exit code is 1 when a median reaches ``--limit`` seconds (default 1).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

# console command -> (module, arguments that make an argument error)
COMMANDS = {
    "mdistiller-train": ("mdistiller.train", ["--cfg"]),
    "mdistiller-eval": ("mdistiller.eval", ["--batch-size", "many"]),
    "mdistiller-benchmark": ("mdistiller.benchmark", ["--launcher", "cloud"]),
    "mdistiller-tune": ("mdistiller.tune", ["--trials", "many"]),
    "mdistiller-plot": ("mdistiller.plot", []),
    "mdistiller-cost-matrix": ("mdistiller.cost_matrix", ["--teacher", "resnet8"]),
    "mdistiller-download": ("mdistiller.download", ["--retries", "many"]),
}


def wall_time(python, args, expect_code):
    started = time.perf_counter()
    done = subprocess.run([python] + args, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != expect_code:
        raise SystemExit("{} exited with {} (expected {}):\n{}".format(" ".join(args), done.returncode, expect_code,
                                                                      done.stderr[-2000:]))
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="the interpreter whose mdistiller is measured")
    parser.add_argument("--limit", type=float, default=1.0, help="seconds a median must stay below")
    args = parser.parse_args(argv)
    load = " ".join("{:.2f}".format(x) for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print("python {}; load average {}; median of {} runs\n".format(args.python, load, args.repeats))
    torch = statistics.median(wall_time(args.python, ["-c", "import torch"], 0) for _ in range(args.repeats))
    print("| command | --help (s) | argument error (s) |\n|---|---:|---:|")
    slow = []
    for command, (module, wrong) in COMMANDS.items():
        row = []
        for extra, code in ((["--help"], 0), (wrong, 2)):
            row.append(statistics.median(wall_time(args.python, ["-m", module] + extra, code)
                                         for _ in range(args.repeats)))
        slow += [command] if max(row) >= args.limit else []
        print("| {} | {:.2f} | {:.2f} |".format(command, *row))
    print("| (`python -c \"import torch\"`, for scale) | {:.2f} | |".format(torch))
    if slow:
        print("\nat or above {:.1f} s: {}".format(args.limit, ", ".join(slow)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
