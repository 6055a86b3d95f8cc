"""Plot per-epoch alignment diagnostics and accuracy of several runs on shared figures.

    python tools/plot_alignment.py RUN_DIR [RUN_DIR ...] [--out DIR]

A RUN_DIR holding metrics.csv is one line; a folder of runs (e.g. ``<sweep>/kd`` with seed0,
seed1, ...) is one line, the seed mean. Writes alignment_losses.png (kl, tc, nc, w),
alignment_gradients.png (grad_top1..grad_top6) and accuracy.png (test top-1, train loss).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller.plots import plot_run_dirs  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description="Alignment diagnostics and accuracy curves of runs (PNG).")
    parser.add_argument("runs", nargs="+", help="run folders (or folders of runs)")
    parser.add_argument("--out", default=".", help="output folder (default: current folder)")
    args = parser.parse_args(argv)
    paths = plot_run_dirs(args.runs, args.out)
    for path in paths:
        print(path)
    if not paths:
        print("nothing to plot (no metrics.csv / alignment.csv rows)")
    return paths


if __name__ == "__main__":
    main()
