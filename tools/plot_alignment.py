"""Plot per-epoch alignment diagnostics and accuracy of several runs: ``python -m mdistiller.plot`` as a script.

    python tools/plot_alignment.py RUN_DIR [RUN_DIR ...] [--out DIR]

A RUN_DIR holding metrics.csv is one line; a folder of runs (e.g. ``<sweep>/kd`` with seed0,
seed1, ...) is one line, the seed mean. Writes alignment_losses.png (kl, tc, nc, w),
alignment_gradients.png (grad_top1..grad_top6) and accuracy.png (test top-1, train loss).
"""
from mdistiller.plot import main

if __name__ == "__main__":
    main()
