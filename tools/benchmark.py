"""Run configs x seeds side by side and tabulate them: ``python -m mdistiller.benchmark`` as a script.

    python tools/benchmark.py --configs configs/digits/kd.yaml configs/digits/dkd.yaml --seeds 0 1 2 \
        [--jobs 2] [--out benchmark_runs] [--name digits] [KEY VALUE ...]
    python tools/benchmark.py --suite suite.yaml [--jobs 2] [KEY VALUE ...]

See mdistiller/benchmark/ for the rules.
"""
import sys

from mdistiller.benchmark.cli import main, split_overrides

__all__ = ["main", "split_overrides"]

if __name__ == "__main__":
    sys.exit(main())
