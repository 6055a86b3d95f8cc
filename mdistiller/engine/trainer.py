"""The one trainer: every distiller, CPU or CUDA, one process or torchrun + DDP.

It owns the training loop, resuming from ``latest`` and the checkpoint policy. Per epoch it trains,
evaluates, hands the epoch's record to the run's sinks (``engine.logging``) and writes checkpoints
atomically. Each evaluator's best epoch is kept: the test set's as ``best`` (mdistiller's), the validation
split's (``DATASET.VAL_SPLIT``) as ``val_best``; with ``DATASET.TEST_AT_END_ONLY`` the test set is evaluated
only after the last epoch, on the last and the ``val_best`` model. Randomness is re-seeded from (seed, epoch, rank) at the start of every epoch, so a run
resumed from ``latest`` continues exactly as an uninterrupted one would. What happens to one batch is
the step's (``engine.step``, ``engine.dot``: optimizer, scaler, backward passes); what is measured on an
evaluation set is the evaluator's (``engine.evaluate``); loaders and the batch: ``engine.data``; LR
schedule: ``engine.optim``; run folder naming: ``engine.naming``.
"""
import os
import shutil
import signal
import threading
import time
from collections import OrderedDict

import torch

from .._cli import check_writable, first_missing_folder
from ..dataset import build_data, dataset_spec
from ..dataset.split import check_split, write_split
from ..distillers import build_distiller
from ..registry import DOT_TRAINERS, data_needs
from .build import build_student_and_teacher
from .cfg import show_cfg
from .checkpoint import (
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
    strip_data_parallel_prefix,
)
from .data import batch_inputs, batch_size, build_loaders, set_loader_epoch
from .device import (
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    place_distiller,
    setup_runtime,
    teardown_runtime,
    unwrap,
)
from .dot import DotStep
from .evaluate import EVALUATORS
from .logging import EvaluatorLog, RunLogger, build_diagnostics, write_run_info
from .optim import learning_rate, set_learning_rate, warmup_factor
from .records import read_csv
from .keys import check_values, warn_unused_keys
from .meters import NO_BAD_ITERATION, TRAIN_ACCURACY, DeviceMeters
from .step import Step
from .utils import log_msg, seed_everything

# SOLVER.TRAINER -> the step the loop runs; mdistiller's "base" and "crd" are one (the data follows the distiller),
# as are "dot" and "crd_dot" (DOT's two-step update).
STEPS = dict({"base": Step, "crd": Step}, **dict.fromkeys(DOT_TRAINERS, DotStep))
REFRESH_INTERVAL = 50  # steps between host reads (progress bar, non-finite check)
# Signals that stop a run cleanly: SLURM sends SIGTERM to every process of a preempted job, and submitit's jobs
# ask for SIGUSR2 before the time limit (sbatch --signal=USR2@90).
STOP_SIGNALS = ("SIGTERM", "SIGUSR2")


class TrainingInterrupted(Exception):
    """The run stopped on a signal (preemption, time limit) with its ``latest`` intact; ``--resume`` continues it."""

    def __init__(self, signal_name, epoch, latest):
        self.signal_name, self.epoch, self.latest = signal_name, epoch, latest
        kept = ("its latest checkpoint {} (end of epoch {}) is intact; --resume continues from there".format(
            latest, epoch - 1) if epoch > 1 else "no epoch had finished, nothing was kept: run it again to start it")
        super().__init__("stopped by {} during epoch {}: {}".format(signal_name, epoch, kept))


class StopSignals:
    """While installed (main thread only), SIGTERM / SIGUSR2 set :attr:`received` instead of killing the process;
    the trainer polls it between steps. The previous handlers are restored on exit."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                number = getattr(signal, name, None)  # SIGUSR2 does not exist on Windows
                if number is not None:
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame):
        self.received = signal.Signals(number).name

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
        return False


class Trainer:
    """Builds everything a run needs from ``cfg`` and trains it; ``train()`` returns the summary."""

    def __init__(self, cfg, log_path, resume=False, sinks=()):
        """``sinks``: extra :class:`~mdistiller.engine.logging.Sink` objects that get every epoch's record (main
        process), e.g. a hyper-parameter search's reporter."""
        if cfg.SOLVER.TRAINER not in STEPS:
            raise ValueError(
                "Unknown SOLVER.TRAINER {!r}; this trainer runs {} (the dataset variant follows the distiller)".format(
                    cfg.SOLVER.TRAINER, ", ".join(STEPS)
                )
            )
        check_values(cfg)
        if resume and not os.path.isfile(os.path.join(log_path, "latest")):
            raise FileNotFoundError(
                "Nothing to resume in {}: it holds no `latest` checkpoint (a run folder is named from the config and "
                "its KEY VALUE overrides: give the same ones, or drop --resume to start the run)".format(log_path))
        check_writable(log_path, "the run folder {} (LOG.PREFIX)".format(log_path))
        self.cfg = cfg
        self.log_path = log_path
        self.new_folder = None  # the outermost folder this run created: removed if it fails before its first epoch
        self.runtime = setup_runtime(cfg.EXPERIMENT.DEVICE)
        self.device = self.runtime.device
        self.is_main = self.runtime.is_main
        seed_everything(cfg.EXPERIMENT.SEED)
        if self.is_main:
            warn_unused_keys(cfg)
        task = dataset_spec(cfg.DATASET.TYPE).task
        if self.device.type == "cuda":
            # one input size per classification dataset; detection images vary in size (cuDNN would re-tune each)
            torch.backends.cudnn.benchmark = task == "classification"

        needs = data_needs(cfg)
        data = build_data(cfg, needs=needs)
        self.split = data.split
        self.test_at_end_only = bool(cfg.DATASET.TEST_AT_END_ONLY)  # with a split (check_values)
        self.num_classes = data.num_classes
        student, teacher = build_student_and_teacher(cfg, data.num_classes, needs_teacher=needs.teacher,
                                                     category_ids=getattr(data.train, "category_ids", None))
        distiller = build_distiller(cfg, student, teacher, num_data=len(data.train))
        distiller = place_distiller(distiller, self.device, cfg.SOLVER.CHANNELS_LAST)
        if cfg.SOLVER.COMPILE:
            for module in (distiller.student, distiller.teacher):
                if module is not None:
                    module.compile()  # in place: parameter names (and checkpoints) are unchanged
        if self.runtime.distributed:
            distiller = torch.nn.parallel.DistributedDataParallel(
                distiller,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self.distiller = distiller
        self.step = STEPS[cfg.SOLVER.TRAINER](cfg, distiller, self.runtime)
        held_out = [] if data.val is None else [data.val]
        self.train_loader, eval_loaders = build_loaders(cfg, data.train, held_out + [data.test], self.runtime)
        self.train_accuracy = TRAIN_ACCURACY[task]
        evaluator = EVALUATORS[task]
        evaluators = [evaluator(name, loader, self.runtime, cfg.SOLVER.CHANNELS_LAST, cfg.SOLVER.AMP)
                      for name, loader in zip(["val"] * len(held_out) + ["test"], eval_loaders)]
        self.test_evaluator = evaluators[-1]
        # Evaluated every epoch, each keeping its best epoch; the test set after the last epoch only, when asked.
        self.evaluators = evaluators[:-1] if self.test_at_end_only else evaluators
        self.best = OrderedDict((e.name, (-1.0, 0)) for e in self.evaluators)
        probe_set = data.test if data.val is None else data.val  # no test image is looked at before the end
        self.diagnostics = build_diagnostics(cfg, unwrap(distiller), probe_set) if self.is_main else None

        self.start_epoch = 1
        self.logger = None
        if self.is_main:
            self.new_folder = first_missing_folder(log_path)
            os.makedirs(log_path, exist_ok=True)
        try:
            resumed_epoch = self._resume() if resume else None
            if self.is_main:
                write_run_info(log_path, cfg, self.runtime, resume)
                if self.split is not None:
                    write_split(log_path, self.split, cfg)
                self.logger = RunLogger(cfg, log_path, resumed_epoch, extra_sinks=sinks,
                                        evaluators=[evaluator_log(e) for e in evaluators])
        except BaseException:
            self.discard_new_folder()
            raise

    @property
    def best_acc(self):
        """The best test accuracy so far (-1 before the first epoch; None when the test set waits for the end)."""
        return self.best.get("test", (None, None))[0]

    @property
    def best_epoch(self):
        return self.best.get("test", (None, None))[1]

    def discard_new_folder(self):
        """Remove the folders this run created when it has no checkpoint yet: a run that fails before its first
        epoch ends leaves nothing behind (a run with a ``latest`` keeps everything, to be resumed)."""
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        if self.new_folder and not os.path.exists(os.path.join(self.log_path, "latest")):
            shutil.rmtree(self.new_folder, ignore_errors=True)

    # ------------------------------------------------------------------ resume
    def _resume(self):
        """Load ``latest`` (model, optimizer, scaler, RNG, best accuracies); returns the epoch it ended. The
        validation split drawn now must be the one the run started with."""
        check_split(self.log_path, self.split)
        path = os.path.join(self.log_path, "latest")
        state = load_checkpoint(path, map_location=self.device)
        load_weights(unwrap(self.distiller), strip_data_parallel_prefix(state["model"]), path,
                     "this run's config ({} {} -> {})".format(self.cfg.DISTILLER.TYPE, self.cfg.DISTILLER.TEACHER,
                                                          self.cfg.DISTILLER.STUDENT))
        self.step.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            self.step.scaler.load_state_dict(state["scaler"])
        if "rng" in state:
            set_rng_state(state["rng"])
        self.start_epoch = state["epoch"] + 1
        for name in self.best:
            self.best[name] = (float(state.get(best_name(name) + "_acc", -1.0)),
                               int(state.get(best_name(name) + "_epoch", 0)))
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
        finished = False
        try:
            with StopSignals() as stop:
                for epoch in range(self.start_epoch, cfg.SOLVER.EPOCHS + 1):
                    last = self.train_epoch(epoch, stop)
                    if self._stop_requested(stop) and epoch < cfg.SOLVER.EPOCHS:
                        raise TrainingInterrupted(stop.received or "a signal on another process", epoch + 1,
                                                  os.path.join(self.log_path, "latest"))
            finished = True
        finally:
            if not finished:
                self.discard_new_folder()  # closes the logger first
            elif self.is_main:
                self.logger.close()
            barrier(self.runtime)
        summary = self._finish(last, time.time() - started)
        teardown_runtime(self.runtime)
        return summary

    def _stop_requested(self, stop):
        """Whether a stop signal arrived (on any process: every rank must stop at the same step)."""
        if not self.runtime.distributed:
            return stop.received is not None
        flag = torch.tensor([float(stop.received is not None)], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def train_epoch(self, epoch, stop=None):
        """Train and evaluate one epoch, log it, checkpoint it. ``stop`` (:class:`StopSignals`): after a stop signal
        the epoch is abandoned after its current step (:class:`TrainingInterrupted`); ``latest`` stays the end of
        the previous epoch."""
        cfg, rt = self.cfg, self.runtime
        # Every epoch's randomness (shuffling, augmentation, workers) depends on (seed, epoch, rank) only.
        seed_everything(cfg.EXPERIMENT.SEED + 1000003 * epoch + 7919 * rt.rank)
        set_loader_epoch(self.train_loader, epoch)
        lr = learning_rate(cfg, epoch)
        set_learning_rate(self.step.optimizer, lr)

        self.distiller.train()
        meters = DeviceMeters(self.device)
        start = time.time()
        progress = self.train_loader
        if self.is_main and cfg.LOG.PROGRESS_BAR:
            from tqdm import tqdm

            progress = tqdm(self.train_loader, desc="epoch {}/{}".format(epoch, cfg.SOLVER.EPOCHS), leave=False)
        iteration = -1
        warmup = int(cfg.SOLVER.WARMUP_ITERS)
        steps_before = (epoch - 1) * len(self.train_loader)
        for iteration, batch in enumerate(progress):
            if warmup and steps_before + iteration <= warmup:  # warm-up LR; at step WARMUP_ITERS the epoch's again
                set_learning_rate(self.step.optimizer, lr * warmup_factor(cfg, steps_before + iteration))
            self.train_step(batch, epoch, iteration, meters)
            # one process polls a flag every step; DDP ranks agree at the host reads (an all-reduce each)
            if stop is not None and (not rt.distributed or (iteration + 1) % REFRESH_INTERVAL == 0) \
                    and self._stop_requested(stop):
                raise TrainingInterrupted(stop.received or "a signal on another process", epoch,
                                          os.path.join(self.log_path, "latest"))
            if (iteration + 1) % REFRESH_INTERVAL == 0:
                self._check_finite(meters, epoch)
                if progress is not self.train_loader:
                    loss, top1 = meters.averages("loss", "top1")
                    progress.set_postfix(loss="{:.4f}".format(loss), top1="{:.2f}".format(top1))
        if (iteration + 1) % REFRESH_INTERVAL:
            self._check_finite(meters, epoch)
        train_time = time.time() - start

        # Global train statistics (sample-weighted over processes), read from the device once.
        names, sums, count = meters.read()
        totals = all_reduce_sum(sums + [count], rt)
        n = max(totals[-1], 1)
        averages = OrderedDict((name, t / n) for name, t in zip(names, totals[:-1]))
        train_loss, train_acc = averages.pop("loss"), averages.pop("top1")

        record = OrderedDict(epoch=epoch, lr=lr, train_acc=train_acc, train_loss=train_loss)
        record.update(self.evaluate())
        record.update(("train_" + k, v) for k, v in averages.items())
        improved = []
        for evaluator in self.evaluators:
            if record[evaluator.key] > self.best[evaluator.name][0]:  # the first epoch reaching the best value
                self.best[evaluator.name] = (record[evaluator.key], epoch)
                improved.append(evaluator.name)
        record.update((best_name(name) + "_acc", acc) for name, (acc, _) in self.best.items())
        record.update(epoch_time=train_time)
        if self.is_main:
            diagnostics = self.diagnostics.compute(unwrap(self.distiller), epoch) if self.diagnostics else {}
            self.logger.log_epoch(record, diagnostics)
            self._save(epoch, improved)
        barrier(rt)
        return record

    def _check_finite(self, meters, epoch):
        """Raise if a loss of this epoch was non-finite (on any process); one host read of the device flag."""
        first_bad = meters.first_bad
        if self.runtime.distributed:
            first_bad = first_bad.clone()
            torch.distributed.all_reduce(first_bad, op=torch.distributed.ReduceOp.MIN)
        first_bad = int(first_bad)
        if first_bad == NO_BAD_ITERATION:
            return
        raise FloatingPointError(
            "Non-finite loss at epoch {}, iteration {}: {}. Training stopped; the last good checkpoint "
            "is {} (end of epoch {}).".format(
                epoch,
                first_bad,
                {k: float(v) for k, v in meters.bad_losses.items()} if meters.bad_losses else "on another process",
                os.path.join(self.log_path, "latest"),
                epoch - 1,
            )
        )

    def train_step(self, batch, epoch, iteration, meters):
        inputs = batch_inputs(batch, self.device, self.cfg.SOLVER.CHANNELS_LAST)
        output, losses, loss = self.step(inputs, epoch)
        meters.update(loss, losses, self.train_accuracy(output, inputs["target"]), batch_size(batch), iteration)

    def evaluate(self, evaluators=None):
        """The metrics of ``evaluators`` (default: those of every epoch; ``val_acc``, ``test_acc``, ``test_acc_top5``,
        ``test_loss``, ...) on rank 0's model."""
        self.distiller.eval()
        model = unwrap(self.distiller)
        broadcast_buffers(model, self.runtime)  # evaluate (and save) one model: rank 0's
        metrics = OrderedDict()
        for evaluator in self.evaluators if evaluators is None else evaluators:
            metrics.update(evaluator(model))
        return metrics

    def test_at_end(self):
        """``(last, at_val_best)``: the test metrics of the model now (the last epoch's) and of the ``val_best``
        checkpoint (its weights loaded for the evaluation, then the last ones put back)."""
        last = self.evaluate([self.test_evaluator])
        if self.best["val"][1] == self.cfg.SOLVER.EPOCHS:
            return last, last
        model = unwrap(self.distiller)
        current = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
        state = load_checkpoint(os.path.join(self.log_path, "val_best"), map_location=self.device)
        model.load_state_dict(strip_data_parallel_prefix(state["model"]))
        at_val_best = self.evaluate([self.test_evaluator])
        model.load_state_dict(current)
        return last, at_val_best

    # ------------------------------------------------------------------ outputs
    def _save(self, epoch, improved=()):
        """``latest`` and ``student_latest`` (plus ``epoch_N`` every ``LOG.SAVE_CHECKPOINT_FREQ`` epochs), and the
        best checkpoints of the evaluators named in ``improved`` (``best``/``student_best`` for the test set,
        ``val_best``/``student_val_best`` for the validation split)."""
        model = unwrap(self.distiller)
        state = {"epoch": epoch, "model": model.state_dict(), "optimizer": self.step.optimizer.state_dict()}
        for name, (acc, best_epoch) in self.best.items():
            state.update([(best_name(name) + "_acc", acc), (best_name(name) + "_epoch", best_epoch)])
        state.update(scaler=self.step.scaler.state_dict(), rng=rng_state())
        student = {"model": model.student.state_dict()}
        save_checkpoint(state, os.path.join(self.log_path, "latest"))
        save_checkpoint(student, os.path.join(self.log_path, "student_latest"))
        if self.cfg.LOG.SAVE_CHECKPOINT_FREQ > 0 and epoch % self.cfg.LOG.SAVE_CHECKPOINT_FREQ == 0:
            save_checkpoint(state, os.path.join(self.log_path, "epoch_{}".format(epoch)))
            save_checkpoint(student, os.path.join(self.log_path, "student_{}".format(epoch)))
        for name in improved:
            save_checkpoint(state, os.path.join(self.log_path, best_name(name)))
            save_checkpoint(student, os.path.join(self.log_path, "student_" + best_name(name)))

    def _finish(self, last, wall_time):
        history = read_csv(os.path.join(self.log_path, "metrics.csv")) if self.is_main else []
        key, names = self.test_evaluator.key, self.test_evaluator.names  # test_acc (top-1 %) or test_ap (AP %)
        if self.test_at_end_only:
            last_row, at_val_best = self.test_at_end()
        else:
            last_row = history[-1] if history else last
        last_acc = last_row[key] if last_row else None
        best_row = next((row for row in history if row["epoch"] == self.best_epoch), None)
        summary = OrderedDict(
            method=self.cfg.DISTILLER.TYPE,
            teacher=self.cfg.DISTILLER.TEACHER if self.cfg.DISTILLER.TYPE != "NONE" else None,
            student=self.cfg.DISTILLER.STUDENT,
            dataset=self.cfg.DATASET.TYPE,
            seed=self.cfg.EXPERIMENT.SEED,
            epochs=self.cfg.SOLVER.EPOCHS,
            metric=key,  # what best_acc / last_acc / test_top1_at_val_best are
            best_acc=self.best_acc,
            best_epoch=self.best_epoch,
            last_acc=last_acc,
            best_metrics=OrderedDict((n, best_row[n]) for n in names) if best_row else None,
            last_metrics=OrderedDict((n, last_row[n]) for n in names) if last_row else None,
        )
        if self.split is not None:
            val_acc, val_epoch = self.best["val"]
            if self.test_at_end_only:
                test_at_val_best = at_val_best[key]
            else:
                test_at_val_best = next((row[key] for row in history if row["epoch"] == val_epoch), None)
            summary.update(val_best_acc=val_acc, val_best_epoch=val_epoch, test_top1_at_val_best=test_at_val_best,
                           test_at_end_only=self.test_at_end_only, val_size=len(self.split.val_indices),
                           val_split_sha256=self.split.sha256)
        summary.update(
            train_time=sum(row["epoch_time"] for row in history),
            wall_time_this_process=wall_time,
            log_path=self.log_path,
        )
        if self.is_main:
            self.logger.finish(summary)
        return summary


def best_name(evaluator_name):
    """The name of an evaluator's best epoch (its checkpoint; ``_acc`` / ``_epoch`` for the records): ``best`` for
    the test set (mdistiller's), ``<name>_best`` for another evaluation set (``val_best``)."""
    return "best" if evaluator_name == "test" else evaluator_name + "_best"


def evaluator_log(evaluator):
    """How ``evaluator`` appears in the run's logs (:data:`~mdistiller.engine.logging.EvaluatorLog`)."""
    return EvaluatorLog(evaluator.name, tuple(evaluator.names), best_name(evaluator.name) + "_acc",
                        tuple((evaluator.name + "_" + metric, label) for metric, label in evaluator.CONSOLE))


def train(cfg, log_path, resume=False, sinks=()):
    """Train ``cfg`` writing to ``log_path``; returns the run summary (best/last accuracy, ...)."""
    return Trainer(cfg, log_path, resume=resume, sinks=sinks).train()


# mdistiller exposes trainers by SOLVER.TRAINER; every name runs the same loop here, with its step (STEPS).
trainer_dict = dict.fromkeys(STEPS, Trainer)
