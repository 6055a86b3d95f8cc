"""The dry run of ``mdistiller-train --dry-run``: everything a run builds, one training step and one evaluation
batch, timed, with the peak memory; nothing written where the run would write."""
import os
import shutil
import tempfile
import time
from collections import OrderedDict

import torch

from .data import batch_size, set_loader_epoch
from .device import peak_memory_text, teardown_runtime, unwrap
from .meters import DeviceMeters
from .trainer import Trainer


def dry_run(cfg):
    """Build what ``train`` builds, run one training step and one evaluation batch; no run folder is written.

    The trainer writes its run information to a temporary folder, removed afterwards. Returns a dict
    with the build and step times (s), the batch sizes, the losses of the training step and the peak-memory text.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.LOG.WANDB = False
    cfg.freeze()
    scratch = tempfile.mkdtemp(prefix="mdistiller-dry-run-")
    trainer = None
    try:
        started = time.time()
        trainer = Trainer(cfg, os.path.join(scratch, "run"))
        build_time = time.time() - started
        device = trainer.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        set_loader_epoch(trainer.train_loader, 1)
        batch = next(iter(trainer.train_loader))
        meters = DeviceMeters(device)
        trainer.distiller.train()
        t0 = time.time()
        trainer.train_step(batch, 1, 0, meters)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_step = time.time() - t0
        evaluator = trainer.evaluators[0]
        val_batch = next(iter(evaluator.loader))
        trainer.distiller.eval()
        model = unwrap(trainer.distiller)
        t0 = time.time()
        evaluator(model, loader=[val_batch])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        val_step = time.time() - t0
        return OrderedDict(
            build_s=build_time, train_step_s=train_step, val_step_s=val_step,
            train_batch=batch_size(batch), val_batch=batch_size(val_batch),
            losses=OrderedDict(zip(meters.term_names, meters.averages(*meters.term_names))),
            memory=peak_memory_text(device),
        )
    finally:
        if trainer is not None:
            if trainer.logger is not None:
                trainer.logger.close()
            teardown_runtime(trainer.runtime)
        shutil.rmtree(scratch, ignore_errors=True)
