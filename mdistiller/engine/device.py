"""Device selection and (optional) torch.distributed set-up: the one place that knows about CUDA.

Launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process
joins a process group — NCCL when it drives a GPU, gloo on CPU — and owns the
GPU ``LOCAL_RANK``. Otherwise everything runs in one process.
"""
import ctypes
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    host_memory_reuse: bool = False  # reuse_host_memory() applied

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0


def resolve_device(name="auto", local_rank=0):
    """``auto`` picks CUDA when available; ``cuda`` means the local rank's GPU."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = "cuda:{}".format(local_rank)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError("device {!r} (EXPERIMENT.DEVICE, --device) is not a device: use auto, cpu, cuda or "
                         "cuda:N".format(name)) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device {!r} (EXPERIMENT.DEVICE, --device): CUDA is not available here; use cpu or "
                         "auto".format(name))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def setup_runtime(device_name="auto"):
    """Join the torchrun process group if there is one, choose this process's device and keep freed host memory
    for reuse (:func:`reuse_host_memory`; before any data loader forks its workers, which inherit it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(device=device, rank=rank, world_size=world_size, local_rank=local_rank,
                   host_memory_reuse=reuse_host_memory())


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt() parameters (<malloc.h>)
_KEEP_FREED_BYTES = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of freed heap for reuse


def reuse_host_memory():
    """Serve large host (CPU) tensors from malloc's heap and keep freed memory for the next step (glibc only).

    glibc gives every block above its mmap threshold (at most 32 MiB) a fresh
    ``mmap`` and unmaps it on free, so each large activation of each step is
    page-faulted in anew (a 64 MiB tensor: about 16,000 faults, ~25 ms on this
    project's 2-core test machine — more than the arithmetic of a cheap op on
    it). ``mallopt(M_MMAP_MAX, 0)`` puts those blocks on the heap and
    ``M_TRIM_THRESHOLD`` keeps up to 2 GiB of freed heap instead of returning
    it, so steps after the first reuse the same pages: the CPU counterpart of
    PyTorch's CUDA caching allocator. The process then holds its peak host
    memory (plus what fragmentation adds) until it exits.

    Does nothing (returns False) outside glibc, or when the environment tunes
    malloc itself (any ``MALLOC_*`` variable or ``GLIBC_TUNABLES``: the user's
    choice wins). Returns True when applied.
    """
    if any(name.startswith("MALLOC_") or name == "GLIBC_TUNABLES" for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL(None)  # the symbols of the running process, its C library included
    except (OSError, TypeError):  # TypeError: Windows has no such handle
        return False
    if not hasattr(libc, "gnu_get_libc_version"):
        return False  # these mallopt parameters are glibc's
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES))


def teardown_runtime(runtime):
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values, runtime):
    """Sum a list of floats over all processes (identity in a single process)."""
    if not runtime.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_buffers(module, runtime):
    """Give every process rank 0's buffers (BatchNorm statistics drift apart in the last train step)."""
    if runtime.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(runtime):
    if runtime.distributed:
        dist.barrier()


def unwrap(model):
    """The module inside DistributedDataParallel (or the model itself)."""
    return getattr(model, "module", model)


def autocast(device, enabled):
    """Mixed precision for the forward: fp16 on CUDA, bf16 on CPU."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def grad_scaler(device, enabled):
    return torch.amp.GradScaler(device.type, enabled=enabled and device.type == "cuda")


def teacher_channels_last(device, channels_last=False):
    """Whether the frozen teacher runs in channels_last: always on CUDA (cuDNN's fast layout, above all
    under AMP); on CPU only with ``SOLVER.CHANNELS_LAST``, since it changes the teacher's rounding."""
    return bool(channels_last) or device.type == "cuda"


def place_distiller(distiller, device, channels_last=False):
    """``distiller`` moved to ``device``, its 4-D weights in channels_last when ``SOLVER.CHANNELS_LAST`` is on
    and the teacher's also where :func:`teacher_channels_last` says so (converted once, here)."""
    distiller = distiller.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    teacher = getattr(distiller, "teacher", None)
    if teacher is not None and teacher_channels_last(device, channels_last):
        teacher.to(memory_format=torch.channels_last)
    return distiller


def move_to(obj, device, channels_last=False):
    """``obj`` on ``device``: a tensor (a 4-D float batch in channels_last when asked), or the tensors inside a
    list, tuple or dict (a detection batch's images and targets); anything else as it is."""
    if torch.is_tensor(obj):
        if channels_last and obj.dim() == 4 and obj.is_floating_point():
            return obj.to(device, non_blocking=True, memory_format=torch.channels_last)
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(item, device, channels_last) for item in obj)
    if isinstance(obj, dict):
        return {key: move_to(value, device, channels_last) for key, value in obj.items()}
    return obj


def peak_memory_text(device):
    """Peak memory of this process: CUDA's max allocated on a GPU, else the peak resident set size."""
    if getattr(device, "type", str(device)) == "cuda":
        return "{:.1f} MiB peak CUDA memory allocated".format(torch.cuda.max_memory_allocated(device) / 2 ** 20)
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":  # bytes there, kilobytes on Linux
            kb /= 1024.0
        return "{:.1f} MiB peak resident memory (process)".format(kb / 1024.0)
    except ImportError:  # Windows
        return "peak memory not measured on this platform"
