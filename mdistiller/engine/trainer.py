"""The one trainer: every distiller, CPU or CUDA, one process or torchrun + DDP.

It owns the training loop, resuming from ``latest`` and the checkpoint policy. Per epoch it trains,
validates, hands the epoch's record to the run's sinks (``engine.logging``) and writes checkpoints
atomically. Randomness is re-seeded from (seed, epoch, rank) at the start of every epoch, so a run
resumed from ``latest`` continues exactly as an uninterrupted one would. Loaders: ``engine.data``;
optimizer and LR schedule: ``engine.optim``; run folder naming: ``engine.naming``.
"""
import os
import time
from collections import OrderedDict

import torch

from ..dataset import build_datasets
from ..distillers import build_distiller
from ..registry import data_needs
from .build import build_student_and_teacher
from .cfg import show_cfg
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import build_loaders
from .device import (
    all_reduce_sum,
    autocast,
    barrier,
    broadcast_buffers,
    grad_scaler,
    move_to,
    setup_runtime,
    teardown_runtime,
    unwrap,
)
from .evaluate import as_percentages, evaluation_sums
from .logging import RunLogger, build_diagnostics, write_run_info
from .optim import build_optimizer, learning_rate, set_learning_rate
from .records import read_csv
from .utils import AverageMeter, correct_counts, log_msg, seed_everything

# Names of the fields of a training batch, by position (CRD's datasets add the last one).
BATCH_FIELDS = ("image", "target", "index", "contrastive_index")
SUPPORTED_TRAINERS = ("base", "crd")


class Trainer:
    """Builds everything a run needs from ``cfg`` and trains it; ``train()`` returns the summary."""

    def __init__(self, cfg, log_path, resume=False):
        if cfg.SOLVER.TRAINER not in SUPPORTED_TRAINERS:
            raise ValueError(
                "Unknown SOLVER.TRAINER {!r}; this trainer runs {} (the dataset variant follows the distiller)".format(
                    cfg.SOLVER.TRAINER, ", ".join(SUPPORTED_TRAINERS)
                )
            )
        self.cfg = cfg
        self.log_path = log_path
        self.runtime = setup_runtime(cfg.EXPERIMENT.DEVICE)
        self.device = self.runtime.device
        self.is_main = self.runtime.is_main
        seed_everything(cfg.EXPERIMENT.SEED)

        needs = data_needs(cfg)
        train_set, val_set, num_classes = build_datasets(cfg, needs=needs)
        self.num_classes = num_classes
        student, teacher = build_student_and_teacher(cfg, num_classes, needs_teacher=needs.teacher)
        distiller = build_distiller(cfg, student, teacher, num_data=len(train_set))
        memory_format = torch.channels_last if cfg.SOLVER.CHANNELS_LAST else torch.contiguous_format
        distiller = distiller.to(self.device, memory_format=memory_format)
        self.optimizer = build_optimizer(cfg, distiller.get_learnable_parameters())
        self.scaler = grad_scaler(self.device, cfg.SOLVER.AMP)
        if self.runtime.distributed:
            distiller = torch.nn.parallel.DistributedDataParallel(
                distiller,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self.distiller = distiller
        self.train_loader, self.val_loader = build_loaders(cfg, train_set, val_set, self.runtime)
        self.diagnostics = build_diagnostics(cfg, unwrap(distiller), val_set) if self.is_main else None

        self.start_epoch = 1
        self.best_acc = -1.0
        self.best_epoch = 0
        if self.is_main:
            os.makedirs(log_path, exist_ok=True)
        resumed_epoch = self._resume() if resume else None
        self.logger = None
        if self.is_main:
            write_run_info(log_path, cfg, self.runtime, resume)
            self.logger = RunLogger(cfg, log_path, resumed_epoch)

    # ------------------------------------------------------------------ resume
    def _resume(self):
        """Load ``latest`` (model, optimizer, scaler, RNG, best accuracy); returns the epoch it ended."""
        path = os.path.join(self.log_path, "latest")
        state = load_checkpoint(path, map_location=self.device)
        unwrap(self.distiller).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if "rng" in state:
            set_rng_state(state["rng"])
        self.start_epoch = state["epoch"] + 1
        self.best_acc = float(state["best_acc"])
        self.best_epoch = int(state.get("best_epoch", 0))
        if self.is_main:
            print(log_msg("Resumed from {} (epoch {})".format(path, state["epoch"]), "INFO"))
        return state["epoch"]

    # ------------------------------------------------------------------ loop
    def train(self):
        cfg = self.cfg
        if self.is_main:
            print(log_msg("CONFIG:\n" + show_cfg(cfg), "INFO"))
            extra = unwrap(self.distiller).get_extra_parameters()
            print(log_msg("Extra parameters of {}: {}".format(cfg.DISTILLER.TYPE, extra), "INFO"))
        started = time.time()
        last = None
        try:
            for epoch in range(self.start_epoch, cfg.SOLVER.EPOCHS + 1):
                last = self.train_epoch(epoch)
        finally:
            if self.is_main:
                self.logger.close()
            barrier(self.runtime)
        summary = self._finish(last, time.time() - started)
        teardown_runtime(self.runtime)
        return summary

    def train_epoch(self, epoch):
        cfg, rt = self.cfg, self.runtime
        # Every epoch's randomness (shuffling, augmentation, workers) depends on (seed, epoch, rank) only.
        seed_everything(cfg.EXPERIMENT.SEED + 1000003 * epoch + 7919 * rt.rank)
        self.train_loader.sampler.set_epoch(epoch)
        lr = learning_rate(cfg, epoch)
        set_learning_rate(self.optimizer, lr)

        self.distiller.train()
        meters = OrderedDict(loss=AverageMeter(), top1=AverageMeter(), top5=AverageMeter())
        parts = OrderedDict()
        start = time.time()
        progress = self.train_loader
        if self.is_main and cfg.LOG.PROGRESS_BAR:
            from tqdm import tqdm

            progress = tqdm(self.train_loader, desc="epoch {}/{}".format(epoch, cfg.SOLVER.EPOCHS), leave=False)
        for iteration, batch in enumerate(progress):
            self.train_step(batch, epoch, iteration, meters, parts)
            if progress is not self.train_loader:
                progress.set_postfix(loss="{:.4f}".format(meters["loss"].avg), top1="{:.2f}".format(meters["top1"].avg))
        train_time = time.time() - start

        # Global train statistics (sample-weighted over processes).
        sums = [m.sum for m in meters.values()] + [m.sum for m in parts.values()]
        counts = meters["loss"].count
        totals = all_reduce_sum(sums + [counts], rt)
        n = max(totals[-1], 1)
        train_loss, train_acc, train_top5 = (t / n for t in totals[:3])
        part_avgs = OrderedDict((k, t / n) for k, t in zip(parts, totals[3:-1]))

        test_acc, test_acc_top5, test_loss = self.validate()
        record = OrderedDict(
            epoch=epoch,
            lr=lr,
            train_acc=train_acc,
            train_loss=train_loss,
            test_acc=test_acc,
            test_acc_top5=test_acc_top5,
            test_loss=test_loss,
        )
        record.update(("train_" + k, v) for k, v in part_avgs.items())
        is_best = test_acc > self.best_acc
        if is_best:
            self.best_acc, self.best_epoch = test_acc, epoch
        record.update(best_acc=self.best_acc, epoch_time=train_time)
        if self.is_main:
            diagnostics = self.diagnostics.compute(unwrap(self.distiller), epoch) if self.diagnostics else {}
            self.logger.log_epoch(record, diagnostics)
            self._save(epoch, is_best)
        barrier(rt)
        return record

    def train_step(self, batch, epoch, iteration, meters, parts):
        cfg = self.cfg
        inputs = {name: move_to(value, self.device, cfg.SOLVER.CHANNELS_LAST) for name, value in zip(BATCH_FIELDS, batch)}
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, cfg.SOLVER.AMP):
            logits, losses = self.distiller(epoch=epoch, **inputs)
        loss = sum(value.float().mean() for value in losses.values())
        finite = torch.isfinite(loss.detach())
        if self.runtime.distributed:
            flag = finite.float().to(self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = flag.bool()
        if not bool(finite):
            raise FloatingPointError(
                "Non-finite loss ({}) at epoch {}, iteration {}: {}. Training stopped; the last good checkpoint "
                "is {} (end of epoch {}).".format(
                    float(loss.detach()),
                    epoch,
                    iteration,
                    {k: float(v.detach().float().mean()) for k, v in losses.items()},
                    os.path.join(self.log_path, "latest"),
                    epoch - 1,
                )
            )
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

        batch_size = inputs["target"].size(0)
        top1, top5 = correct_counts(logits.detach(), inputs["target"], topk=(1, 5))
        meters["loss"].update(loss.item(), batch_size)
        meters["top1"].update(100.0 * top1 / batch_size, batch_size)
        meters["top5"].update(100.0 * top5 / batch_size, batch_size)
        for name, value in losses.items():
            parts.setdefault(name, AverageMeter()).update(float(value.detach().float().mean()), batch_size)

    def validate(self):
        """Top-1, top-5 (percent) and mean cross-entropy over the whole validation set."""
        self.distiller.eval()
        model = unwrap(self.distiller)
        broadcast_buffers(model, self.runtime)  # evaluate (and save) one model: rank 0's
        sums = evaluation_sums(
            lambda image: model(image=image), self.val_loader, self.device, self.cfg.SOLVER.CHANNELS_LAST,
            self.cfg.SOLVER.AMP,
        )
        return as_percentages(*all_reduce_sum(sums, self.runtime))

    # ------------------------------------------------------------------ outputs
    def _save(self, epoch, is_best):
        model = unwrap(self.distiller)
        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
        }
        student = {"model": model.student.state_dict()}
        save_checkpoint(state, os.path.join(self.log_path, "latest"))
        save_checkpoint(student, os.path.join(self.log_path, "student_latest"))
        if self.cfg.LOG.SAVE_CHECKPOINT_FREQ > 0 and epoch % self.cfg.LOG.SAVE_CHECKPOINT_FREQ == 0:
            save_checkpoint(state, os.path.join(self.log_path, "epoch_{}".format(epoch)))
            save_checkpoint(student, os.path.join(self.log_path, "student_{}".format(epoch)))
        if is_best:
            save_checkpoint(state, os.path.join(self.log_path, "best"))
            save_checkpoint(student, os.path.join(self.log_path, "student_best"))

    def _finish(self, last, wall_time):
        history = read_csv(os.path.join(self.log_path, "metrics.csv")) if self.is_main else []
        last_acc = history[-1]["test_acc"] if history else (last["test_acc"] if last else None)
        summary = OrderedDict(
            method=self.cfg.DISTILLER.TYPE,
            teacher=self.cfg.DISTILLER.TEACHER if self.cfg.DISTILLER.TYPE != "NONE" else None,
            student=self.cfg.DISTILLER.STUDENT,
            dataset=self.cfg.DATASET.TYPE,
            seed=self.cfg.EXPERIMENT.SEED,
            epochs=self.cfg.SOLVER.EPOCHS,
            best_acc=self.best_acc,
            best_epoch=self.best_epoch,
            last_acc=last_acc,
            train_time=sum(row["epoch_time"] for row in history),
            wall_time_this_process=wall_time,
            log_path=self.log_path,
        )
        if self.is_main:
            self.logger.finish(summary)
        return summary


def train(cfg, log_path, resume=False):
    """Train ``cfg`` writing to ``log_path``; returns the run summary (best/last accuracy, ...)."""
    return Trainer(cfg, log_path, resume=resume).train()


# mdistiller exposes trainers by SOLVER.TRAINER; both names run the same loop here.
trainer_dict = {"base": Trainer, "crd": Trainer}
