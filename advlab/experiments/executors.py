"""Where an experiment's units run: in this process, in worker processes on this machine, or on
a Dask distributed cluster.

A *job* is a picklable zero-argument callable returning a JSON-serialisable dict: a
``functools.partial`` of a module-level function over numpy arrays, configs and plain values.
Anything heavy it needs (trained weights, adversarial pools) it reads from the artefact cache by
key, so a worker on another machine that sees the same cache folder computes the same dict.
Seeds come from a job's arguments (its unit key), never from the order in which jobs run, and
every executor runs each job at the same number of threads (``threads_per_unit``: torch's
intra-op threads and every BLAS/OpenMP pool through threadpoolctl, 1 by default), so every
executor and every number of workers gives identical results. The thread count is pinned
because it changes the numbers: float32 sums split over more threads round differently, and a
k-means assignment or an attack step near a tie can then go the other way (measured in
``docs/benchmarks/executors-*.json``).

The executors only compute; the run's ``RunContext.units`` stores each result in the run
directory as soon as it arrives, so an interrupted run resumes from the units that finished,
whichever executor ran them.

Dask is used as it is, not re-implemented: its scheduler places the jobs, reschedules the ones
of a worker that dies, and ``as_completed`` returns them in finishing order.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from advlab.experiments.config import ConfigError
from advlab.utils.perf import (
    DEFAULT_THREADS_PER_UNIT,
    allocator_tuned,
    reproducible_unit,
    tune_cpu_allocator,
)

Job = Callable[[], dict[str, Any]]


class ExecutorError(ValueError):
    """A bad executor option, or a Dask scheduler that cannot be reached."""


class WorkerError(ExecutorError):
    """A unit failed in a worker for want of what that machine lacks: a file (data, weights)
    or the user's module. The message names the machine and process."""


EXECUTORS = ("serial", "local", "dask")


def timed_call(
    job: Job,
    threads: int | None = None,
    tune_allocator: bool = False,
    cuda: bool = False,
    worker: bool = False,
) -> tuple[dict[str, Any], float]:
    """``job()`` on ``threads`` threads (None: as the process is set) and the seconds it took
    where it ran. Module level, so it pickles. ``tune_allocator``: raise glibc's malloc
    thresholds in the process that runs it first (``tune_cpu_allocator``; the executors pass
    whether the client did, so a worker process allocates as the client does). ``cuda``: the
    run computes on a CUDA device, so the job runs on deterministic CUDA kernels
    (``reproducible_unit``). ``worker``: it runs in a worker, where a missing file or module
    (``FileNotFoundError``, ``ConfigError``) is raised as a ``WorkerError`` naming the machine,
    which the CLI prints as one line."""
    if tune_allocator:
        tune_cpu_allocator()
    start = time.perf_counter()
    try:
        if threads is None:
            result = job()
        else:
            with reproducible_unit(threads, cuda):
                result = job()
    except (FileNotFoundError, ConfigError) as exc:
        if not worker:
            raise
        raise WorkerError(
            f"a unit failed on {socket.gethostname()} (worker process {os.getpid()}): {exc}. "
            "Every machine that runs units needs the same files and modules"
        ) from exc
    return result, time.perf_counter() - start


def _check_threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ExecutorError(f"--threads-per-unit must be an integer >= 1, got {threads!r}")
    return threads


class Executor(ABC):
    """Runs jobs and yields ``(key, result, seconds)`` as each finishes, every job on
    ``threads_per_unit`` threads."""

    name = "executor"
    threads_per_unit = DEFAULT_THREADS_PER_UNIT
    cuda = False  # set by the runner when the run computes on a CUDA device

    @abstractmethod
    def run(self, jobs: Mapping[str, Job]) -> Iterator[tuple[str, dict[str, Any], float]]:
        """Run every job; yield each one's key, result and seconds in finishing order. The
        first job to raise stops the others and the exception reaches the caller."""

    def describe(self) -> dict[str, Any]:
        """What the run directory's manifest records about this executor."""
        return {"executor": self.name, "threads_per_unit": self.threads_per_unit}

    def close(self) -> None:  # noqa: B027 - optional hook: the serial executor holds nothing
        """Release workers or connections (nothing for the serial executor)."""


class SerialExecutor(Executor):
    """Every job in this process, in the order given.

    Parameters
    ----------
    threads_per_unit : int, default=1
        Threads each job runs on.
    """

    name = "serial"

    def __init__(self, threads_per_unit: int = DEFAULT_THREADS_PER_UNIT) -> None:
        self.threads_per_unit = _check_threads(threads_per_unit)

    def run(self, jobs: Mapping[str, Job]) -> Iterator[tuple[str, dict[str, Any], float]]:
        for key, job in jobs.items():
            result, seconds = timed_call(job, self.threads_per_unit, cuda=self.cuda)
            yield key, result, seconds


ORPHAN_POLL_SECONDS = 1.0


def _exit_when_orphaned(parent: int) -> None:
    """Poll, every ``ORPHAN_POLL_SECONDS``, that this process's parent is still ``parent``; when it
    is not (the client died: SIGTERM, SIGKILL, a crash), exit at once. ``ProcessPoolExecutor``
    stops its workers only when the client shuts it down; without this, the workers of a killed
    client would go on running the units already queued and write their checkpoints into a run
    directory nobody watches (measured: two orphans at full CPU 10 minutes after a ``kill``)."""
    while True:
        time.sleep(ORPHAN_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)  # no cleanup: outputs are written atomically, so nothing is half-written


def _init_local_worker(threads: int, parent: int) -> None:
    """Worker process set-up: ``threads`` torch threads, no progress bars, and a daemon thread
    that ends the worker when its client ``parent`` (a pid) is gone."""
    import threading

    import torch

    from advlab.utils.progress import set_quiet

    torch.set_num_threads(threads)
    set_quiet(True)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True,
                     name="advlab-orphan-watchdog").start()  # fmt: skip


class LocalExecutor(Executor):
    """Jobs in ``workers`` worker processes on this machine (``spawn``, so no state of the
    parent leaks in; the environment, ``ADVLAB_CACHE`` and ``ADVLAB_DATA`` included, does).

    Parameters
    ----------
    workers : int
        Number of processes (>= 1); ``workers x threads_per_unit`` at most the cores, or they
        oversubscribe them.
    threads_per_unit : int, default=1
        Threads each job runs on, in every worker.
    """

    name = "local"

    def __init__(self, workers: int, threads_per_unit: int = DEFAULT_THREADS_PER_UNIT) -> None:
        if workers < 1:
            raise ExecutorError(f"--workers must be >= 1, got {workers}")
        self.workers = int(workers)
        self.threads_per_unit = _check_threads(threads_per_unit)
        self._pool: Any = None

    def _get_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_local_worker,
                initargs=(self.threads_per_unit, os.getpid()),
            )
        return self._pool

    def run(self, jobs: Mapping[str, Job]) -> Iterator[tuple[str, dict[str, Any], float]]:
        from concurrent.futures import as_completed

        if not jobs:
            return
        pool = self._get_pool()
        futures = {
            pool.submit(
                timed_call, job, self.threads_per_unit, allocator_tuned(), self.cuda, True
            ): key
            for key, job in jobs.items()
        }
        try:
            for future in as_completed(futures):
                result, seconds = future.result()
                yield futures[future], result, seconds
        finally:
            for future in futures:
                future.cancel()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "workers": self.workers}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class DaskExecutor(Executor):
    """Jobs on a Dask distributed cluster: an existing scheduler's address
    (``tcp://host:8786``; dask-jobqueue and dask-kubernetes clusters expose one) or a
    ``distributed.Client``. Every worker must import advlab and see the same cache folder
    (``ADVLAB_CACHE``) and data (``ADVLAB_DATA``).

    Parameters
    ----------
    scheduler : str or distributed.Client
        The scheduler's address, or a connected client (not closed by ``close``).
    threads_per_unit : int, default=1
        Threads each job runs on (a worker's ``--nthreads`` times this should not exceed its
        machine's cores, or the jobs oversubscribe them).
    """

    name = "dask"

    def __init__(self, scheduler: Any, threads_per_unit: int = DEFAULT_THREADS_PER_UNIT) -> None:
        self.threads_per_unit = _check_threads(threads_per_unit)
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - the message is the point
            raise ImportError(
                "--executor dask needs Dask: pip install 'advlab[dask]' (dask[distributed])"
            ) from exc
        if isinstance(scheduler, Client):
            self.client, self._owned = scheduler, False
        else:
            if not scheduler:
                raise ExecutorError("--executor dask needs --scheduler ADDRESS (tcp://host:8786)")
            try:
                self.client, self._owned = Client(scheduler, timeout="10s"), True
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(
                    f"could not reach the Dask scheduler at {scheduler} ({exc})"
                ) from exc
        self.address = str(self.client.scheduler_info().get("address", scheduler))

    def run(self, jobs: Mapping[str, Job]) -> Iterator[tuple[str, dict[str, Any], float]]:
        from distributed import as_completed

        if not jobs:
            return
        batch = uuid.uuid4().hex[:8]  # unique task keys: a rerun never collides with old tasks
        futures = {
            self.client.submit(
                timed_call,
                job,
                self.threads_per_unit,
                allocator_tuned(),
                self.cuda,
                True,
                key=f"advlab-{batch}-{key}",
                pure=False,
            ): key
            for key, job in jobs.items()
        }
        try:
            for future in as_completed(futures):
                result, seconds = future.result()
                yield futures[future], result, seconds
        finally:
            self.client.cancel(list(futures))

    def describe(self) -> dict[str, Any]:
        workers = self.client.scheduler_info().get("workers", {})
        return {**super().describe(), "scheduler": self.address, "workers": len(workers)}

    def close(self) -> None:
        if self._owned:
            self.client.close()


def make_executor(
    kind: str = "serial",
    workers: int | None = None,
    scheduler: Any = None,
    threads_per_unit: int = DEFAULT_THREADS_PER_UNIT,
) -> Executor:
    """The executor ``kind``; an ``ExecutorError`` naming a bad option.

    Parameters
    ----------
    kind : {"serial", "local", "dask"}, default="serial"
        This process, worker processes on this machine, or a Dask cluster.
    workers : int or None, default=None
        Processes for "local"; None: one per core.
    scheduler : str, distributed.Client or None, default=None
        The Dask scheduler's address (or a client) for "dask".
    threads_per_unit : int, default=1
        Threads every job runs on, whatever the executor (so the results do not depend on it).

    Returns
    -------
    Executor
    """
    if kind == "serial":
        if workers not in (None, 1) or scheduler is not None:
            raise ExecutorError("--workers and --scheduler need --executor local or dask")
        return SerialExecutor(threads_per_unit)
    if kind == "local":
        if scheduler is not None:
            raise ExecutorError("--scheduler is for --executor dask")
        threads = _check_threads(threads_per_unit)
        default_workers = max(1, (os.cpu_count() or 1) // threads)
        return LocalExecutor(workers if workers is not None else default_workers, threads)
    if kind == "dask":
        if workers is not None:
            raise ExecutorError("--workers is for --executor local (a Dask cluster has its own)")
        return DaskExecutor(scheduler, threads_per_unit)
    raise ExecutorError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
