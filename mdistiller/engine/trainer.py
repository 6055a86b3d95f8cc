"""The one trainer: every distiller, CPU or CUDA, one process or torchrun + DDP.

Per epoch it trains, validates, logs (worklog.txt in mdistiller's format,
metrics.csv, tensorboardX, optional wandb, alignment diagnostics) and writes
checkpoints atomically. Randomness is re-seeded from (seed, epoch, rank) at the
start of every epoch, so a run resumed from ``latest`` continues exactly as an
uninterrupted one would.
"""
import hashlib
import json
import math
import os
import sys
import time
from collections import OrderedDict

import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from ..dataset import build_datasets
from ..distillers import build_distiller
from ..registry import data_needs
from .build import build_student_and_teacher
from .cfg import show_cfg
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .evaluate import as_percentages, evaluation_sums
from .records import append_csv, read_csv, truncate_csv
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
from .utils import AverageMeter, correct_counts, environment_info, log_msg, seed_everything, seed_worker

# Names of the fields of a training batch, by position (CRD's datasets add the last one).
BATCH_FIELDS = ("image", "target", "index", "contrastive_index")
SUPPORTED_TRAINERS = ("base", "crd")


class ShardSampler(Sampler):
    """Evaluation sharding without padding: rank r gets indices r, r+W, r+2W, ... (each sample once)."""

    def __init__(self, length, rank, world_size):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def experiment_name(cfg, opts=()):
    """mdistiller's run folder name: NAME or TAG, plus the command-line overrides."""
    name = cfg.EXPERIMENT.NAME or cfg.EXPERIMENT.TAG
    extra = ["{}:{}".format(k, v) for k, v in zip(opts[0::2], opts[1::2]) if k != "LOG.PREFIX"]
    if extra:
        name = ",".join([name] + extra)
    name = name.replace(os.sep, "%")  # an override holding a path must not create nested folders
    if len(name) > 180:  # file systems cap a name at 255 bytes
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
        name = "{}~{}".format(name[:160], digest)
    return os.path.join(cfg.EXPERIMENT.PROJECT, name)


def learning_rate(cfg, epoch):
    """LR for a 1-based epoch: mdistiller's step decay, or cosine annealing to ``SOLVER.LR_MIN``.

    cosine: ``LR_MIN + (LR − LR_MIN) · (1 + cos(π (epoch − 1) / EPOCHS)) / 2`` — torch's
    ``CosineAnnealingLR(T_max=EPOCHS, eta_min=LR_MIN)`` stepped once per epoch.
    """
    if cfg.SOLVER.LR_SCHEDULER == "cosine":
        lr_min = cfg.SOLVER.LR_MIN
        return lr_min + 0.5 * (cfg.SOLVER.LR - lr_min) * (1 + math.cos(math.pi * (epoch - 1) / cfg.SOLVER.EPOCHS))
    if cfg.SOLVER.LR_SCHEDULER != "step":
        raise ValueError("Unknown SOLVER.LR_SCHEDULER {!r}; valid: step, cosine".format(cfg.SOLVER.LR_SCHEDULER))
    steps = sum(epoch > stage for stage in cfg.SOLVER.LR_DECAY_STAGES)
    return cfg.SOLVER.LR * cfg.SOLVER.LR_DECAY_RATE**steps


def build_optimizer(cfg, params):
    if cfg.SOLVER.TYPE != "SGD":
        raise ValueError("Unknown SOLVER.TYPE {!r}; valid: SGD".format(cfg.SOLVER.TYPE))
    return torch.optim.SGD(
        params,
        lr=cfg.SOLVER.LR,
        momentum=cfg.SOLVER.MOMENTUM,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        nesterov=cfg.SOLVER.NESTEROV,
    )


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
        self.train_loader, self.val_loader = self._build_loaders(train_set, val_set)
        self.diagnostics = self._build_diagnostics(val_set)

        self.start_epoch = 1
        self.best_acc = -1.0
        self.best_epoch = 0
        if self.is_main:
            os.makedirs(log_path, exist_ok=True)
        if resume:
            self._resume()
        if self.is_main:
            self._write_run_info(resume)
            self._init_loggers()

    # ------------------------------------------------------------------ set-up
    def _build_loaders(self, train_set, val_set):
        cfg, rt = self.cfg, self.runtime
        if cfg.SOLVER.BATCH_SIZE % rt.world_size:
            raise ValueError(
                "SOLVER.BATCH_SIZE {} is the global batch; it must divide by the {} processes".format(
                    cfg.SOLVER.BATCH_SIZE, rt.world_size
                )
            )
        self.train_sampler = DistributedSampler(
            train_set, num_replicas=rt.world_size, rank=rt.rank, shuffle=True, seed=cfg.EXPERIMENT.SEED
        )
        common = dict(
            num_workers=cfg.DATASET.NUM_WORKERS,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=seed_worker,
            persistent_workers=False,
        )
        train_loader = DataLoader(
            train_set, batch_size=cfg.SOLVER.BATCH_SIZE // rt.world_size, sampler=self.train_sampler, **common
        )
        val_loader = DataLoader(
            val_set,
            batch_size=cfg.DATASET.TEST.BATCH_SIZE,
            sampler=ShardSampler(len(val_set), rt.rank, rt.world_size),
            **common,
        )
        return train_loader, val_loader

    def _build_diagnostics(self, val_set):
        model = unwrap(self.distiller)
        if not (self.cfg.LOG.DIAGNOSTICS and self.is_main and getattr(model, "teacher", None) is not None):
            return None
        from .diagnostics import AlignmentDiagnostics

        count = min(len(val_set), self.cfg.LOG.get("DIAGNOSTICS_SAMPLES", 256))
        items = [val_set[i] for i in range(count)]
        images = torch.stack([item[0] for item in items])
        targets = torch.as_tensor([int(item[1]) for item in items])
        return AlignmentDiagnostics(self.cfg, images, targets)

    def _write_run_info(self, resume):
        with open(os.path.join(self.log_path, "config.yaml"), "w") as f:
            f.write(self.cfg.dump())
        info = environment_info(self.device)
        info.update(world_size=self.runtime.world_size, seed=self.cfg.EXPERIMENT.SEED, argv=sys.argv, resumed=resume)
        with open(os.path.join(self.log_path, "env.json"), "w") as f:
            json.dump(info, f, indent=2)

    def _init_loggers(self):
        from tensorboardX import SummaryWriter

        self.tf_writer = SummaryWriter(os.path.join(self.log_path, "train.events"))
        self.wandb = None
        if self.cfg.LOG.WANDB:
            try:
                import wandb

                self.wandb = wandb.init(
                    project=self.cfg.EXPERIMENT.PROJECT,
                    name=os.path.basename(self.log_path),
                    config=json.loads(json.dumps(self.cfg, default=str)),
                    dir=self.log_path,
                    resume="allow",
                )
            except Exception as e:  # a failing wandb never stops training
                print(log_msg("wandb disabled: {}".format(e), "INFO"))
                self.wandb = None

    # ------------------------------------------------------------------ resume
    def _resume(self):
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
            # Rows logged after the checkpoint was taken (a kill between logging and saving) are redone.
            for name in ("metrics.csv", "alignment.csv"):
                truncate_csv(os.path.join(self.log_path, name), state["epoch"])
            with open(os.path.join(self.log_path, "worklog.txt"), "a") as f:
                f.write("resumed from epoch {}{}".format(state["epoch"], os.linesep))
            print(log_msg("Resumed from {} (epoch {})".format(path, state["epoch"]), "INFO"))

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
                self.tf_writer.close()
            barrier(self.runtime)
        summary = self._finish(last, time.time() - started)
        teardown_runtime(self.runtime)
        return summary

    def train_epoch(self, epoch):
        cfg, rt = self.cfg, self.runtime
        # Every epoch's randomness (shuffling, augmentation, workers) depends on (seed, epoch, rank) only.
        seed_everything(cfg.EXPERIMENT.SEED + 1000003 * epoch + 7919 * rt.rank)
        self.train_sampler.set_epoch(epoch)
        lr = learning_rate(cfg, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

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
            self._log_epoch(record, diagnostics)
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
    def _log_epoch(self, record, diagnostics):
        epoch = record["epoch"]
        for key, value in record.items():
            if key != "epoch":
                self.tf_writer.add_scalar(key, value, epoch)
        for key, value in diagnostics.items():
            self.tf_writer.add_scalar("alignment/" + key, value, epoch)
        self.tf_writer.flush()
        append_csv(os.path.join(self.log_path, "metrics.csv"), record)
        if diagnostics:
            append_csv(os.path.join(self.log_path, "alignment.csv"), OrderedDict([("epoch", epoch)] + list(diagnostics.items())))
        worklog = ["-" * 25, "epoch: {}".format(epoch), "lr: {:.2f}".format(record["lr"])]
        for key in ("train_acc", "train_loss", "test_acc", "test_acc_top5", "test_loss"):
            worklog.append("{}: {:.2f}".format(key, record[key]))
        worklog.append("-" * 25)
        with open(os.path.join(self.log_path, "worklog.txt"), "a") as f:
            f.write(os.linesep.join(worklog) + os.linesep)
        print(
            log_msg(
                "Epoch {} | lr {:.4f} | train loss {:.4f} acc {:.2f} | test acc {:.2f} (best {:.2f}) top5 {:.2f}".format(
                    epoch, record["lr"], record["train_loss"], record["train_acc"], record["test_acc"],
                    record["best_acc"], record["test_acc_top5"],
                ),
                "EVAL",
            )
        )
        if self.wandb is not None:
            try:
                self.wandb.log(dict(record, **{"alignment/" + k: v for k, v in diagnostics.items()}), step=epoch)
            except Exception as e:
                print(log_msg("wandb logging failed, disabled: {}".format(e), "INFO"))
                self.wandb = None

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
            with open(os.path.join(self.log_path, "worklog.txt"), "a") as f:
                f.write("best_acc\t{:.2f}{}".format(self.best_acc, os.linesep))
                f.write("last_acc\t{:.2f}{}".format(last_acc, os.linesep))
            with open(os.path.join(self.log_path, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
            if self.wandb is not None:
                try:
                    self.wandb.summary.update({"best_acc": self.best_acc, "last_acc": last_acc})
                    self.wandb.finish()
                except Exception as e:
                    print(log_msg("wandb finish failed: {}".format(e), "INFO"))
        return summary


def train(cfg, log_path, resume=False):
    """Train ``cfg`` writing to ``log_path``; returns the run summary (best/last accuracy, ...)."""
    return Trainer(cfg, log_path, resume=resume).train()


# mdistiller exposes trainers by SOLVER.TRAINER; both names run the same loop here.
trainer_dict = {"base": Trainer, "crd": Trainer}
