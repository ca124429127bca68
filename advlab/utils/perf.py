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

``reproducible_unit`` is what the runner and every executor wrap a unit in: ``pinned_threads``
and, for a run on a CUDA device, ``deterministic_cuda_kernels``. Several CUDA kernels add
floats with atomics in whatever order the threads arrive (``index_add_``, weighted
``bincount``, some cuDNN and cuBLAS algorithms), so without it two runs of the same unit on one
GPU can differ in the last bits, and k-means or an attack near a tie then goes the other way
(measured on an H100: ``omari2024 --profile digits`` on ``device=cuda``, serial against two
local workers, 77 of 448 comparisons differed, the white-box-trained model's clean accuracy
75.4 vs 77.2; that this mode removes the difference is not yet measured on a GPU).
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


CUBLAS_WORKSPACE_CONFIG = ":4096:8"  # cuBLAS' reproducible setting (PyTorch's notes on randomness)
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


def is_cuda(device: str) -> bool:
    """Whether ``device`` ("cpu", "cuda", "cuda:1", ...) is a CUDA device."""
    import torch

    return torch.device(device).type == "cuda"


@contextmanager
def deterministic_cuda_kernels() -> Iterator[None]:
    """Run the block with PyTorch's deterministic CUDA kernels: ``use_deterministic_algorithms``
    (``warn_only``: an operation with no deterministic kernel warns, naming itself, instead of
    stopping a long run), cuDNN's autotuner off, and ``CUBLAS_WORKSPACE_CONFIG`` set unless the
    user set it (read when the process first uses cuBLAS, so set before any unit computes).
    The previous settings are restored afterwards; the environment variable stays."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


@contextmanager
def reproducible_unit(threads: int, cuda: bool = False) -> Iterator[None]:
    """The numeric settings every unit of an experiment runs under, whatever the executor:
    ``threads`` threads (``pinned_threads``) and, when the run computes on a CUDA device
    (``cuda``), deterministic CUDA kernels (``deterministic_cuda_kernels``), so that a unit
    gives the same bits wherever and however often it runs on the same kind of device. A run on
    CPU keeps PyTorch's default kernels (the deterministic mode swaps some CPU kernels too), so
    its numbers do not depend on whether the machine has a GPU."""
    with pinned_threads(threads):
        if not cuda:
            yield
            return
        with deterministic_cuda_kernels():
            yield
