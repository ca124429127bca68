"""Process-wide CPU performance settings for long runs (the CLI and the benchmarks call them;
the local and Dask executors tune every worker process whose client is tuned).

glibc's ``malloc`` hands blocks above its mmap threshold straight back to the kernel when they
are freed, and trims the top of the heap beyond its trim threshold, so every attack step
re-allocates its activation buffers from fresh pages and pays a page fault per 4 KiB
(``aten::fill_`` and ``threshold_backward`` dominated the CPU profile of an I-FGSM step).
PyTorch's CPU tuning guide swaps in jemalloc or tcmalloc for this; raising glibc's two
thresholds with ``mallopt`` keeps freed buffers in the heap for reuse with no extra dependency.
The cost is a resident size that does not shrink after a peak. Library code never calls this.

``pinned_threads`` fixes the number of threads a unit of an experiment computes on: torch's
and every BLAS/OpenMP pool's. It changes the numbers, not just the speed (float32 sums split
over more threads round differently), so the runner pins it for every executor alike.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD = 1 << 30
OPT_OUT_VARIABLE = "ADVLAB_MALLOC_TUNING"
_tuned = False  # set by tune_cpu_allocator, read by allocator_tuned


def tune_cpu_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds (see the module docstring).

    Returns True when both were set; False off Linux/glibc or when ``ADVLAB_MALLOC_TUNING=0``.
    """
    if os.environ.get(OPT_OUT_VARIABLE, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    global _tuned
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _tuned


def allocator_tuned() -> bool:
    """Whether ``tune_cpu_allocator`` has succeeded in this process (recorded in manifests)."""
    return _tuned


DEFAULT_THREADS_PER_UNIT = 1  # the only count every machine and every worker layout can give


@contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` threads: torch's intra-op pool (``torch.set_num_threads``)
    and every native BLAS/OpenMP pool numpy, scipy and scikit-learn use
    (``threadpoolctl.threadpool_limits``); both are restored afterwards."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)
