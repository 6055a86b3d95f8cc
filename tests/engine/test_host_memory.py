"""reuse_host_memory: large host tensors are served from pages kept from earlier frees (glibc)."""
import os
import platform
import subprocess
import sys

import pytest

from mdistiller.engine.device import reuse_host_memory

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt parameters are glibc's")

# Twelve "steps", each allocating and freeing two 64 MiB tensors (above glibc's largest mmap threshold,
# 32 MiB) and a 12 MiB one; the child prints whether reuse_host_memory applied and each step's page faults.
_CHILD = """
import resource, sys, torch
from mdistiller.engine.device import reuse_host_memory
applied = reuse_host_memory() if sys.argv[1] == "reuse" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for step in range(12):
    before = faults()
    x = torch.ones(16 * 2**20)
    y = x * 2
    z = torch.ones(3 * 2**20)
    del x
    assert float((y + z.sum()).max()) == 2 + 3 * 2**20  # the reused pages hold the new tensors' values
    del y, z
    counts.append(faults() - before)
print(applied, *counts)
"""
PAGES_64_MIB = 64 * 2**20 // 4096
STEADY = 4  # steps after which the heap has grown to the steps' working set


def _start(mode):
    # Without the caller's own malloc settings, which would (rightly) make reuse_host_memory stand aside.
    env = {k: v for k, v in os.environ.items() if not (k.startswith("MALLOC_") or k == "GLIBC_TUNABLES")}
    return subprocess.Popen([sys.executable, "-c", _CHILD, mode], stdout=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def faults_per_step():
    """``{mode: (applied, faults of each step after STEADY)}`` for ``reuse`` and ``defaults``, run side by side."""
    children = {mode: _start(mode) for mode in ("reuse", "defaults")}
    results = {}
    for mode, child in children.items():
        out, _ = child.communicate()
        assert child.returncode == 0
        words = out.split()
        results[mode] = (words[0] == "True", [int(n) for n in words[1:]][STEADY:])
    return results


def _transparent_huge_pages_always():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


def test_after_the_first_steps_large_tensors_reuse_pages_without_faulting_them_in(faults_per_step):
    applied, faults = faults_per_step["reuse"]
    assert applied
    # Mostly none: the heap occasionally grows past memory held by earlier (Python) allocations.
    assert sum(n < PAGES_64_MIB // 10 for n in faults) >= len(faults) - 2, faults


@pytest.mark.skipif(_transparent_huge_pages_always(), reason="huge pages hide the per-page faults")
def test_without_it_every_step_faults_its_large_tensors_in(faults_per_step):
    applied, faults = faults_per_step["defaults"]
    assert not applied
    assert all(n > PAGES_64_MIB for n in faults), faults


@pytest.mark.parametrize("name", ["MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES"])
def test_a_users_malloc_variables_win(monkeypatch, name):
    monkeypatch.setenv(name, "131072")
    assert reuse_host_memory() is False
