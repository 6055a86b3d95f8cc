"""``python -m mdistiller.tune ...``: see :mod:`mdistiller.tune.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
