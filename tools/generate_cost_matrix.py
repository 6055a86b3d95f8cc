"""WKD-L's class-to-class cost matrix: the same as `python -m mdistiller.cost_matrix` (see mdistiller/cost_matrix.py)."""
from mdistiller.cost_matrix import main

if __name__ == "__main__":
    main()
