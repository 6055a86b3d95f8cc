"""mdistiller's `tools/eval.py` command: the same as `python -m mdistiller.eval` (see mdistiller/eval.py)."""
from mdistiller.eval import main

if __name__ == "__main__":
    main()
