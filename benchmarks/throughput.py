"""Training throughput: one step of every registered method as a ratio to KD, plus the data path.

For a teacher → student pair (default resnet32x4 → resnet8x4, CIFAR-100 shapes:
32×32 images, 100 classes) and a batch size (default 64), times one training
step — ``forward_train`` (student forward, teacher forward under no_grad, the
losses) + ``backward`` + an SGD step (momentum 0.9, Nesterov, weight decay
5e-4) — of the student alone (Vanilla) and of every method in
``mdistiller.registry.distiller_dict``, each built from the default config
with ``DISTILLER.TYPE <key>``, once per configuration its class lists
(``variants()``) with the settings this pair needs (``pair_settings``; see
:func:`method_specs`; a method that cannot be built or stepped is listed as
skipped with the reason). Every method has its own student (same
initialisation); the teacher is shared; both are placed as the trainer places
them (``mdistiller.engine.device.place_distiller``: on CUDA the teacher runs
in channels_last). Repetitions are interleaved (each round times one step of
every method, in a rotated order) and the median over ``--repeats`` rounds is
reported, with its ratio to KD's median.

Peak memory: on CUDA, ``max_memory_allocated`` during the step minus the
memory allocated before it; on CPU, the growth of the process's peak RSS
during one step (``/proc/self/clear_refs`` resets the peak; measured in a
fresh subprocess run with ``MALLOC_MMAP_THRESHOLD_`` = 64 KiB so freed
tensors leave the RSS), after one warm-up step of the method.

The data path (per-sample DataLoader vs the batched loader,
``benchmarks/data_throughput.py``) is measured first unless ``--no-data``.

    python benchmarks/throughput.py                        # from the repository root
    python benchmarks/throughput.py --methods KD,CRD,IPOT --repeats 7
    python benchmarks/throughput.py --device cuda --no-data
    python benchmarks/throughput.py --channels-last    # as SOLVER.CHANNELS_LAST True
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

import torch
from torch.utils.flop_counter import FlopCounterMode

from mdistiller.distillers import build_distiller
from mdistiller.engine.cfg import CFG
from mdistiller.engine.device import move_to, place_distiller, reuse_host_memory
from mdistiller.models import cifar_model_dict
from mdistiller.registry import distiller_dict, get_distiller_class

try:  # python benchmarks/throughput.py
    from data_throughput import measure_data_path
except ImportError:  # python -m benchmarks.throughput
    from benchmarks.data_throughput import measure_data_path

REFERENCE = "KD"


def method_specs(key, student, teacher, args):
    """``[(overrides, note)]``: the configurations of method ``key`` timed on this pair: each of its class's
    ``variants()`` plus the ``pair_settings`` the pair needs (the widths of CRD's heads, ReviewKD's levels, ...)."""
    cls = get_distiller_class(key)
    specs = []
    for overrides, note in cls.variants():
        specs.append((dict(overrides, **cls.pair_settings(make_cfg(key, overrides, args), student, teacher)), note))
    return specs


def make_cfg(key, overrides, args):
    cfg = CFG.clone()
    cfg.defrost()
    cfg.DISTILLER.TYPE = key
    cfg.DISTILLER.STUDENT = args.student
    cfg.DISTILLER.TEACHER = args.teacher
    cfg.DATASET.TYPE = "cifar100"
    cfg.SOLVER.CHANNELS_LAST = bool(args.channels_last)
    return cfg.merge_from_dict(overrides)


def _fmt_overrides(overrides):
    return " ".join("{} {}".format(k, v) for k, v in overrides.items())


class Method:
    """One row of the table: a distiller, its optimizer and its batch extras."""

    def __init__(self, key, overrides, note, teacher, args, device):
        self.key, self.overrides, self.note = key, overrides, note
        self.cfg = make_cfg(key, overrides, args)
        cls = get_distiller_class(key)
        self.label = "Vanilla" if key == "NONE" else cls.label(self.cfg)
        torch.manual_seed(0)
        student = cifar_model_dict[args.student][0](num_classes=args.num_classes)
        self.needs = cls.data_needs(self.cfg)
        self.distiller = place_distiller(
            build_distiller(self.cfg, student, teacher if self.needs.teacher else None, num_data=args.num_data),
            device,
            channels_last=args.channels_last,
        )
        self.distiller.train()
        self.optimizer = torch.optim.SGD(
            self.distiller.get_learnable_parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4, nesterov=True
        )

    def extras(self, batch):
        if self.needs.contrastive_k <= 0:
            return {}
        k = self.needs.contrastive_k
        index, pool = batch["index"], batch["negatives"]
        negatives = pool[:, :k]
        return {"index": index, "contrastive_index": torch.cat([index.unsqueeze(1), negatives], 1)}

    def forward_backward(self, batch, epoch):
        self.optimizer.zero_grad(set_to_none=True)
        _, losses = self.distiller.forward_train(
            image=batch["image"], target=batch["target"], epoch=epoch, **self.extras(batch)
        )
        loss = sum(v.float().mean() for v in losses.values())
        loss.backward()
        return loss

    def step(self, batch, epoch):
        loss = self.forward_backward(batch, epoch)
        self.optimizer.step()
        return loss

    def flops(self, batch, epoch):
        """FLOPs of one ``forward_train`` + backward: matrix products and convolutions, as counted by
        ``torch.utils.flop_counter`` (element-wise work, SVDs and the optimizer step are not counted)."""
        counter = FlopCounterMode(display=False)
        with counter:
            self.forward_backward(batch, epoch)
        return counter.get_total_flops()


def make_batches(args, device, max_k, count=3):
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        index = torch.randperm(args.num_data, generator=g)[: args.batch_size]
        batch = {
            "image": torch.randn(args.batch_size, 3, 32, 32, generator=g),
            "target": torch.randint(0, args.num_classes, (args.batch_size,), generator=g),
            "index": index,
            "negatives": torch.randint(0, args.num_data, (args.batch_size, max(max_k, 1)), generator=g),
        }
        batches.append({k: move_to(v, device, args.channels_last) for k, v in batch.items()})
    return batches


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_methods(args, device, teacher):
    """Every selected configuration as a :class:`Method`; ``(methods, skipped)``, skipped = [(label, reason)]."""
    wanted = {m.strip().lower() for m in args.methods.split(",")} if args.methods else None
    student_probe = cifar_model_dict[args.student][0](num_classes=args.num_classes)
    methods, skipped = [], []
    keys = ["NONE"] + [k for k in distiller_dict if k != "NONE"]
    for key in keys:
        try:
            specs = method_specs(key, student_probe, teacher, args)
        except Exception as e:  # noqa: BLE001
            skipped.append((key, "no configuration for this pair: {}".format(_first_line(e))))
            continue
        for overrides, note in specs:
            try:
                label = "Vanilla" if key == "NONE" else get_distiller_class(key).label(make_cfg(key, overrides, args))
            except Exception:  # noqa: BLE001
                label = key
            always = key in ("NONE", REFERENCE)
            if wanted is not None and not always and key.lower() not in wanted and label.lower() not in wanted:
                continue
            try:
                methods.append(Method(key, overrides, note, teacher, args, device))
            except Exception as e:  # noqa: BLE001
                skipped.append((label, "cannot be built: {}".format(_first_line(e))))
    return methods, skipped


def _first_line(e):
    text = str(e).strip().splitlines()
    return "{}: {}".format(type(e).__name__, text[0] if text else "")


def build_all(args):
    device = torch.device(args.device)
    torch.manual_seed(0)
    teacher = cifar_model_dict[args.teacher][0](num_classes=args.num_classes).to(device)
    methods, skipped = build_methods(args, device, teacher)
    max_k = max([m.needs.contrastive_k for m in methods] + [0])
    batches = make_batches(args, device, max_k)
    return device, methods, skipped, batches


def warm_up(methods, skipped, batches, args, device):
    """One step of every method (first-call costs); a method whose step fails is moved to ``skipped``."""
    ok = []
    for m in methods:
        try:
            m.step(batches[0], args.epoch)
            sync(device)
            ok.append(m)
        except Exception as e:  # noqa: BLE001
            if args.verbose:
                traceback.print_exc()
            skipped.append((m.label, "step fails: {}".format(_first_line(e))))
    return ok


def time_steps(methods, batches, args, device, reference):
    """Interleaved timings: ``(times, ratios)``, each ``{id(method): [per round]}``.

    Every round runs, for each method in a rotated order, one step of the
    reference (KD) and one of the method, and ends with a reference step: the
    sequence ``R, m1, R, m2, …, R``. A method's ratio in a round is its step
    time over the mean of the two reference steps around it, so load that comes
    and goes on a shared machine affects both sides of each ratio alike.
    """
    times = {id(m): [] for m in methods}
    ratios = {id(m): [] for m in methods}
    others = [m for m in methods if m is not reference]

    def timed(m, batch):
        sync(device)
        start = time.perf_counter()
        m.step(batch, args.epoch)
        sync(device)
        seconds = time.perf_counter() - start
        times[id(m)].append(seconds)
        return seconds

    for r in range(args.repeats):
        batch = batches[r % len(batches)]
        shift = r % max(len(others), 1)
        order = others[shift:] + others[:shift]
        before = timed(reference, batch)
        for m in order:
            seconds = timed(m, batch)
            after = timed(reference, batch)
            ratios[id(m)].append(seconds / (0.5 * (before + after)))
            before = after
        ratios[id(reference)].append(1.0)
        if args.verbose:
            print("round {}/{} done".format(r + 1, args.repeats), file=sys.stderr, flush=True)
    return times, ratios


def cuda_peaks(methods, batches, args, device):
    peaks = {}
    for m in methods:
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        m.step(batches[0], args.epoch)
        sync(device)
        peaks[id(m)] = torch.cuda.max_memory_allocated(device) - before
    return peaks


def _rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field + " not in /proc/self/status")


def cpu_peaks_here(methods, batches, args):
    """Peak-RSS growth (bytes) of one step of each method (this process; see the module docstring)."""
    peaks = {}
    for m in methods:
        m.step(batches[0], args.epoch)  # steady state: optimizer buffers, bank normalisation constants
        rss = _rss_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        m.step(batches[1 % len(batches)], args.epoch)
        peaks[m.label + "|" + m.note] = (_rss_kb("VmHWM") - rss) * 1024
    return peaks


def cpu_peaks_subprocess(args):
    """:func:`cpu_peaks_here` in a fresh process with ``MALLOC_MMAP_THRESHOLD_=65536``; {} if unavailable."""
    if not (os.path.exists("/proc/self/clear_refs") and os.path.exists("/proc/self/status")):
        return {}
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-probe"] + sys.argv[1:]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    try:
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.CalledProcessError, ValueError, IndexError) as e:
        print("CPU memory probe failed: {}".format(e), file=sys.stderr)
        return {}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--num-data", type=int, default=50000, help="training-set size (CRD memory banks)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default="",
                        help="comma-separated registry keys or labels (e.g. KD,CRD,IPOT,WKD-L); Vanilla and KD are "
                             "always timed")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--epoch", type=int, default=1, help="epoch passed to forward_train")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--channels-last", action="store_true",
                        help="models and images in channels_last, as the trainer with SOLVER.CHANNELS_LAST True")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--no-data", action="store_true", help="skip the data-path measurement")
    parser.add_argument("--data-images", type=int, default=10000)
    parser.add_argument("--data-repeats", type=int, default=3)
    parser.add_argument("--data-workers", type=int, default=2)
    parser.add_argument("--malloc-defaults", action="store_true",
                        help="keep glibc's malloc defaults instead of the trainer's reuse_host_memory()")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--_memory-probe", dest="memory_probe", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        device, methods, skipped, batches = build_all(args)
        methods = warm_up(methods, skipped, batches, args, device)
        print(json.dumps(cpu_peaks_here(methods, batches, args)))
        return

    device = torch.device(args.device)
    reused = False if args.malloc_defaults else reuse_host_memory()  # as the trainer does
    print("machine: {} CPU cores ({}), torch {} ({} intra-op threads), device {}{}".format(
        os.cpu_count(), platform.processor() or platform.machine(), torch.__version__, torch.get_num_threads(),
        device, " ({})".format(torch.cuda.get_device_name(device)) if device.type == "cuda" else ""))
    print("memory format: {}".format("channels_last (SOLVER.CHANNELS_LAST True)" if args.channels_last else
                                     "contiguous (channels_last for the teacher on CUDA only, as the trainer)"))
    print("host memory: {}".format("freed memory kept for reuse (reuse_host_memory, as the trainer)" if reused
                                   else "malloc defaults"))
    if hasattr(os, "getloadavg"):
        print("load average before: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))

    if not args.no_data:
        rates = measure_data_path(args.data_images, args.batch_size, args.data_workers, args.data_repeats, device)
        print("\ndata path: {} generated CIFAR-100 images, batch {}, median of {} alternating epochs".format(
            args.data_images, args.batch_size, args.data_repeats))
        print("  per_sample (DataLoader, {} workers): {:>9.0f} images/s".format(args.data_workers, rates["per_sample"]))
        print("  batched ({}):{} {:>9.0f} images/s   ({:.1f}x)".format(
            device, " " * max(0, 25 - len(str(device))), rates["batched"], rates["batched"] / rates["per_sample"]))

    device, methods, skipped, batches = build_all(args)
    methods = warm_up(methods, skipped, batches, args, device)
    reference = next((m for m in methods if m.key == REFERENCE), None)
    if reference is None:
        raise SystemExit("the reference method {} could not be built or stepped: {}".format(REFERENCE, skipped))
    times, ratios = time_steps(methods, batches, args, device, reference)
    flops = {id(m): m.flops(batches[0], args.epoch) for m in methods}
    peaks, memory_note = {}, ""
    if not args.no_memory:
        if device.type == "cuda":
            peaks = cuda_peaks(methods, batches, args, device)
            memory_note = "peak = max_memory_allocated during one step minus the memory allocated before it"
        else:
            by_name = cpu_peaks_subprocess(args)
            peaks = {id(m): by_name.get(m.label + "|" + m.note) for m in methods}
            memory_note = ("peak = growth of the peak RSS during one step after a warm-up step (fresh process, "
                           "MALLOC_MMAP_THRESHOLD_=65536)") if by_name else "peak memory not measured on this CPU"
    else:
        memory_note = "peak memory not measured (--no-memory)"

    ref_min = min(times[id(reference)])
    print("\ntraining step: {} -> {}, batch {}, {} classes, {} interleaved rounds; "
          "forward_train + backward + SGD step".format(args.teacher, args.student, args.batch_size,
                                                       args.num_classes, args.repeats))
    print("vs KD: median over rounds of the step time / mean of the two KD steps around it; "
          "min ratio: fastest step / fastest KD step")
    print("FLOPs vs KD: matrix products and convolutions of forward_train + backward (torch.utils.flop_counter), "
          "the ratio a step would have if every FLOP cost the same; KD: {:.1f} GFLOP".format(flops[id(reference)] / 1e9))
    print(memory_note)
    header = "{:<14} {:>10} {:>8} {:>10} {:>9} {:>11} {:>10}  {}".format(
        "method", "step (ms)", "vs KD", "min (ms)", "min ratio", "FLOPs vs KD", "peak (MB)", "configuration")
    print(header)
    print("-" * len(header))
    for m in methods:
        peak = peaks.get(id(m))
        config = ", ".join(p for p in (m.note, _fmt_overrides(m.overrides)) if p)
        print("{:<14} {:>10.0f} {:>7.2f}x {:>10.0f} {:>8.2f}x {:>10.2f}x {:>10}  {}".format(
            m.label, 1000 * statistics.median(times[id(m)]), statistics.median(ratios[id(m)]),
            1000 * min(times[id(m)]), min(times[id(m)]) / ref_min, flops[id(m)] / flops[id(reference)],
            "-" if peak is None else "{:.0f}".format(peak / 2**20), config))
    for label, reason in skipped:
        print("{:<14} skipped: {}".format(label, reason))
    if hasattr(os, "getloadavg"):
        print("load average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
