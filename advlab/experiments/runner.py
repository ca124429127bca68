"""Run an experiment into a run directory, with resumable units and atomic outputs.

Run directory layout::

    DIR/config.json     resolved config (+ experiment name, profile)
    DIR/manifest.json   seeds, package versions, dataset checksums, timings
    DIR/log.txt         the log
    DIR/units/*.json    one file per finished unit of work (the resume state)
    DIR/checkpoints/    the last state of long units in progress (one safetensors file each)
    DIR/results.json    the results, with a ``comparisons`` list (ours vs paper)

Rerunning the same command into the same directory skips every finished unit. Rerunning with
a different config, or at a different number of threads per unit (which changes float32
rounding), into a non-empty directory is refused, so results never mix.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from advlab import __version__
from advlab.data.datasets import Dataset
from advlab.experiments.config import ExperimentConfig
from advlab.experiments.executors import Executor, Job, SerialExecutor, reproducible_unit
from advlab.experiments.registry import Experiment
from advlab.utils.cache import Cache, move_aside, read_verified, write_verified
from advlab.utils.io import atomic_write_json, json_roundtrip, sha256_bytes, strict_json
from advlab.utils.perf import allocator_tuned, is_cuda
from advlab.utils.progress import progress

PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "matplotlib", "pydantic", "safetensors")


class RunDirError(RuntimeError):
    """The run directory holds a run of a different experiment or config."""


class RunContext:
    """What an experiment function gets: output folder, cache, log, units, provenance.

    A context pickles (for a job that needs the cache, checkpoints or the log on a worker): the
    copy keeps the run directory, config and cache, and logs to the run's ``log.txt`` when the
    worker sees it; it has no executor, so a worker never starts workers itself.

    Parameters
    ----------
    out : Path
        The run directory.
    config : ExperimentConfig
        The validated config.
    cache : Cache
        The artefact cache.
    log : logging.Logger
        The run's log (file and, unless quiet, stderr).
    executor : Executor or None, default=None
        Where ``units`` runs its jobs; None: in this process.
    """

    def __init__(
        self,
        out: Path,
        config: ExperimentConfig,
        cache: Cache,
        log: logging.Logger,
        executor: Executor | None = None,
    ):
        self.out = out
        self.config = config
        self.cache = cache
        self.log = log
        self.executor = executor or SerialExecutor()
        self.units_in_process = 0
        self.seeds: dict[str, int] = {"seed": config.seed}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.units_done = 0
        self.units_computed = 0
        self.unit_seconds: dict[str, float] = {}

    def unit(self, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Result of the unit ``key``: loaded if it finished before, else computed and stored.

        ``compute`` must return a JSON-serialisable dict. The stored copy is what is returned
        in both cases, so a resumed run and a fresh run see identical values. A unit file that
        is unreadable or whose result does not match its stored hash is moved aside with a
        warning naming it, and the unit is recomputed.
        """
        stored = self._stored(key)
        if stored is not None:
            return stored
        start = time.perf_counter()
        result = compute()
        self.units_in_process += 1
        return self._store(key, result, time.perf_counter() - start)

    def units(self, jobs: Mapping[str, Job], desc: str = "") -> dict[str, dict[str, Any]]:
        """Results of many independent units, keyed like ``jobs``: finished ones loaded, the
        others run by the run's executor (in parallel with ``local`` or ``dask``) and each stored
        as soon as it arrives, so an interrupted run keeps every unit that finished.

        Each job must be picklable for the parallel executors: a ``functools.partial`` of a
        module-level function (see ``advlab.experiments.executors``). The stored copy is what is
        returned, so serial, parallel and resumed runs see identical values.
        """
        results: dict[str, dict[str, Any]] = {}
        pending: dict[str, Job] = {}
        for key, job in jobs.items():
            stored = self._stored(key)
            if stored is not None:
                results[key] = stored
            else:
                pending[key] = job
        finished = self.executor.run(pending)
        for key, result, seconds in progress(finished, desc=desc, total=len(pending)):
            results[key] = self._store(key, result, seconds)
        return {key: results[key] for key in jobs}

    def _unit_path(self, key: str) -> Path:
        return self.out / "units" / (_safe_name(key) + ".json")

    def _stored(self, key: str) -> dict[str, Any] | None:
        path = self._unit_path(key)
        if not path.is_file():
            return None
        stored = _read_unit(path, key)
        if stored is None:
            return None
        self.units_done += 1
        self.unit_seconds[key] = float(stored.get("seconds") or 0.0)
        return stored["result"]

    def _store(self, key: str, result: dict[str, Any], seconds: float) -> dict[str, Any]:
        result = json_roundtrip(result)
        record = {"key": key, "seconds": seconds, "result": result,
                  "sha256": _result_sha256(result)}  # fmt: skip
        # not strict JSON: NaN must read back as NaN on resume
        atomic_write_json(self._unit_path(key), record, strict=False)
        self.units_computed += 1
        self.unit_seconds[key] = seconds
        return result

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["log"] = None
        state["executor"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.executor = SerialExecutor()
        self.log = _worker_logger(self.out)

    def _checkpoint_path(self, key: str) -> Path:
        return self.out / "checkpoints" / (_safe_name(key) + ".safetensors")

    def load_checkpoint(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The last checkpoint of the unfinished unit ``key``: (arrays, JSON metadata), or None
        (also when the file is damaged: it is then moved aside with a warning)."""
        path = self._checkpoint_path(key)
        if not path.is_file():
            return None
        try:
            arrays, meta = read_verified(path)
            return arrays, json.loads(meta.get("advlab", "{}"))
        except ValueError as exc:
            move_aside(path, str(exc))
            return None

    def load_steps(self, key: str) -> tuple[list[dict[str, Any]], dict[str, np.ndarray] | None]:
        """(history, arrays) of the step-wise checkpoint of unit ``key`` (metadata
        ``{"history": [{"step": s, ...}, ...]}``, as long units such as Algorithm 1 save it
        after every step): ([], None) when there is none; a resume is logged.

        Parameters
        ----------
        key : str
            The unit.

        Returns
        -------
        (list of dict, dict of ndarray or None)
        """
        saved = self.load_checkpoint(key)
        if saved is None:
            return [], None
        arrays, meta = saved
        history = meta["history"]
        self.log.info("%s: resuming after step %d", key, history[-1]["step"])
        return history, arrays

    def save_checkpoint(
        self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> None:
        """Store the state of the unit ``key`` in progress: arrays and JSON metadata in one
        safetensors file with its content hash, written atomically, so a kill at any moment
        leaves either the previous checkpoint or this one, never a mix."""
        write_verified(self._checkpoint_path(key), arrays, {"advlab": json.dumps(meta)})

    def record_dataset(self, ds: Dataset) -> None:
        """Note ``ds``'s checksums in the manifest."""
        self.record_data(f"{ds.name}/{ds.split}", ds.sha256, len(ds), ds.sources)

    def record_data(
        self, key: str, sha256: str, n: int, sources: dict[str, str] | None = None
    ) -> None:
        """Note data that is not a ``Dataset`` (a user's unlabelled rows) in the manifest."""
        self.datasets[key] = {"sha256": sha256, "n": n, "sources": dict(sources or {})}

    def record_seed(self, name: str, value: int) -> None:
        self.seeds[name] = int(value)

    def path(self, name: str) -> Path:
        """A path inside the run directory (for plots and other artefacts)."""
        return self.out / name


def run_experiment(
    experiment: Experiment,
    config: ExperimentConfig,
    out: str | Path,
    cache: Cache | None = None,
    profile: str | None = None,
    quiet: bool = False,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run ``experiment`` with ``config`` into ``out``; returns (and writes) ``results.json``.

    Parameters
    ----------
    experiment : Experiment
        What to run.
    config : ExperimentConfig
        Its validated config.
    out : str or Path
        The run directory; rerunning into it resumes.
    cache : Cache or None, default=None
        Artefact cache; None uses the default folder.
    profile : str or None, default=None
        The profile's name, recorded in the run directory.
    quiet : bool, default=False
        No progress bars, no log on stderr.
    executor : Executor or None, default=None
        Where the experiment's independent units run (``RunContext.units``); None: serially in
        this process, one thread per unit. The results do not depend on it, only on its
        ``threads_per_unit``, at which this process runs too (the units it computes itself).

    Returns
    -------
    dict
        The results, also written to out/results.json.
    """
    out = Path(out)
    resolved = strict_json(  # as config.json reads back (an infinite bound is null there)
        {
            "experiment": experiment.name,
            "profile": profile,
            "config": config.model_dump(mode="json"),
        }
    )
    executor = executor or SerialExecutor()
    executor.cuda = computes_on_cuda(config)
    _claim_run_dir(out, resolved)
    _check_threads_match(out, executor.threads_per_unit)
    log = _make_logger(out, quiet)
    ctx = RunContext(out, config, cache or Cache(), log, executor)
    manifest: dict[str, Any] = {
        "experiment": experiment.name,
        "profile": profile,
        "advlab": __version__,
        "commit": source_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "command": sys.argv,
        "torch_threads": executor.threads_per_unit,
        "malloc_tuned": allocator_tuned(),
        "cuda_deterministic_kernels": executor.cuda,
        **executor.describe(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out / "manifest.json", manifest)
    log.info("running %s (%s) into %s", experiment.name,
             f"profile {profile}" if profile else "custom config", out)  # fmt: skip
    start = time.perf_counter()
    with reproducible_unit(executor.threads_per_unit, executor.cuda):
        results = experiment.run(config, ctx)
    _check_comparisons(results)
    results = {"experiment": experiment.name, "profile": profile, **results}
    atomic_write_json(out / "results.json", results)
    manifest.update(
        seeds=ctx.seeds,
        datasets=ctx.datasets,
        seconds=time.perf_counter() - start,
        units_resumed=ctx.units_done,
        units_computed=ctx.units_computed,
        units_in_process=ctx.units_in_process,
        unit_seconds=ctx.unit_seconds,
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    atomic_write_json(out / "manifest.json", manifest)
    if executor.name != "serial" and ctx.units_in_process:
        log.warning(
            "%d units of %s ran in this process, not on the %s executor (units that hold "
            "in-memory objects are not distributable yet)",
            ctx.units_in_process,
            experiment.name,
            executor.name,
        )
    log.info(
        "done in %.1f s (%d units computed, %d resumed)",
        manifest["seconds"],
        ctx.units_computed,
        ctx.units_done,
    )
    return results


def computes_on_cuda(config: Any) -> bool:
    """Whether a run of ``config`` computes on a CUDA device (its ``device`` field, "cpu" when
    it has none): its units then run on deterministic CUDA kernels (``reproducible_unit``)."""
    return is_cuda(str(getattr(config, "device", "cpu")))


def source_commit() -> str | None:
    """The git commit advlab runs from (with ``-dirty`` when tracked files differ from it), or
    None when advlab is not a git checkout (an installed wheel) or git is absent."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--"],
                               capture_output=True, timeout=10).returncode != 0  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _claim_run_dir(out: Path, resolved: dict[str, Any]) -> None:
    config_path = out / "config.json"
    if config_path.is_file():
        try:
            previous = json.loads(config_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunDirError(
                f"{config_path} is damaged ({exc}); restore it or use another --out"
            ) from exc
        if previous != resolved and _has_finished_work(out):
            raise RunDirError(
                f"{out} holds a run with a different config; resume needs the same config. "
                f"Use another --out, or delete {out}.\n  there: {previous}\n  now:   {resolved}"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise RunDirError(f"{out} is not empty and holds no advlab run; choose another --out")
    atomic_write_json(config_path, resolved)


def _has_finished_work(out: Path) -> bool:
    """Whether a unit or a checkpoint was stored in ``out`` (a run stopped by a config error
    before any work may be started again with a corrected config)."""
    return any(
        (out / folder).is_dir() and any((out / folder).iterdir())
        for folder in ("units", "checkpoints")
    )


def _check_threads_match(out: Path, threads: int) -> None:
    """Refuse to resume units computed at another number of threads per unit (float32 sums
    round differently, so the results would mix two computations). Runs from before the
    setting existed recorded the count as ``threads_per_worker`` or ``torch_threads``."""
    manifest_path = out / "manifest.json"
    units = out / "units"
    if not manifest_path.is_file() or not units.is_dir() or not any(units.glob("*.json")):
        return
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # the manifest is rewritten below; the units carry their own hashes
    before = next(
        (
            manifest[key]
            for key in ("threads_per_unit", "threads_per_worker", "torch_threads")
            if isinstance(manifest.get(key), int)
        ),
        None,
    )
    if before is not None and before != threads:
        raise RunDirError(
            f"{out} holds units computed at {before} thread(s) per unit, this run is at "
            f"{threads}; resume with --threads-per-unit {before}, or use another --out"
        )


def _make_logger(out: Path, quiet: bool) -> logging.Logger:
    log = logging.getLogger(f"advlab.run.{out.resolve()}")
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    file_handler = logging.FileHandler(out / "log.txt")
    file_handler.setFormatter(fmt)
    log.addHandler(file_handler)
    if not quiet:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        log.addHandler(stream)
    return log


def _worker_logger(out: Path) -> logging.Logger:
    """A worker's log: appended to the run's ``log.txt`` when this machine sees it."""
    log = logging.getLogger(f"advlab.worker.{out}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers and (out / "log.txt").is_file():
        handler = logging.FileHandler(out / "log.txt")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [worker] %(message)s"))
        log.addHandler(handler)
    return log


def _check_comparisons(results: dict[str, Any]) -> None:
    comparisons = results.get("comparisons")
    if not isinstance(comparisons, list):
        raise TypeError("an experiment must return a dict with a 'comparisons' list")
    for entry in comparisons:
        missing = {"id", "ours", "paper", "unit"} - set(entry)
        if missing:
            raise TypeError(f"comparison {entry!r} lacks {sorted(missing)}")
        if not isinstance(entry["ours"], int | float | np.floating) or (
            entry["paper"] is not None and not isinstance(entry["paper"], int | float)
        ):
            raise TypeError(
                f"comparison {entry['id']!r}: 'ours' must be a number, 'paper' a number or null"
            )


def _result_sha256(result: Any) -> str:
    return sha256_bytes(json.dumps(result, sort_keys=True, default=str).encode())


def _read_unit(path: Path, key: str) -> dict[str, Any] | None:
    """A finished unit's record (its ``result`` and ``seconds``), or None (file moved aside,
    warning) when it is unreadable, belongs to another key or does not match its hash."""
    try:
        record = json.loads(path.read_text())
        result = record["result"]
        if record.get("key") != key:
            raise ValueError("it belongs to another unit")
        if record.get("sha256") != _result_sha256(result):
            raise ValueError("its result does not match its hash (the file was altered)")
    except (
        OSError,
        UnicodeDecodeError,
        json.JSONDecodeError,
        KeyError,
        TypeError,
        ValueError,
    ) as exc:
        move_aside(path, f"{path}: damaged unit file ({exc})")
        return None
    return record


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", key)
