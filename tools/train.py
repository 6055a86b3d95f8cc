"""Train a student (optionally distilled from a teacher): ``mdistiller.train`` as a script.

    python tools/train.py --cfg configs/cifar100/dkd/res32x4_res8x4.yaml [--resume] [KEY VALUE ...]
    torchrun --nproc_per_node=4 tools/train.py --cfg ...        # DistributedDataParallel
"""
from mdistiller.train import main

if __name__ == "__main__":
    main()
