"""Wall time of one experiment profile, side by side in one run: serially at one thread per unit
(the default), serially at one thread per core per unit, on ``--executor local --workers N``
and on a Dask ``LocalCluster`` of N single-threaded workers; and whether each ``results.json``
is byte-identical to the default serial run's (where not: how many comparisons differ and the
largest relative difference; a run at another number of threads per unit rounds float32 sums
differently).

    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/executors.py poison-cluster quick
    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/executors.py omari2024 digits
    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/executors.py omari2024 quick \
        --executors serial local dask

``--executors`` picks which of the four run (``serial``, the reference, always does), for
profiles where all four do not fit in one sitting.

Each executor runs into its own run directory with its own empty cache, so every one pays for
training and pools (nothing is shared between them). Threads: every unit of the ``serial``,
``local`` and ``dask`` runs computes on one thread (torch and BLAS/OpenMP, pinned by the
executors), so N workers never oversubscribe N cores; ``serial_all_cores`` runs every unit on
all the cores (how serial runs behaved before the pinning). Prints one JSON object. Not a test:
compare the numbers of one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

from advlab.experiments import Cache, get_experiment, run_experiment, validate_config
from advlab.experiments.executors import DaskExecutor, Executor, LocalExecutor, SerialExecutor

EXECUTORS = ("serial", "serial_all_cores", "local", "dask")


def _timed(name: str, profile: str, root: Path, label: str, executor: Executor) -> float:
    exp = get_experiment(name)
    config = validate_config(exp.config_cls, exp.profiles[profile])
    start = time.perf_counter()
    try:
        run_experiment(exp, config, root / label, Cache(root / f"cache-{label}"), profile,
                       quiet=True, executor=executor)  # fmt: skip
    finally:
        executor.close()
    return time.perf_counter() - start


def _ours(path: Path) -> dict[str, float]:
    return {c["id"]: c["ours"] for c in json.loads(path.read_text())["comparisons"]}


def _differences(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """How many comparisons differ (NaN = NaN) and the largest |a - b| / max(|a|, 1e-12)."""
    differ, worst = 0, 0.0
    for key, x in a.items():
        y = b[key]
        if x != y and not (math.isnan(x) and math.isnan(y)):
            differ += 1
            worst = max(worst, abs(x - y) / max(abs(x), 1e-12))
    return {"comparisons": len(a), "differ": differ, "max_relative": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("profile")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, help="keep the run directories here")
    parser.add_argument("--executors", nargs="+", choices=EXECUTORS, default=list(EXECUTORS),
                        help="which runs to time (serial, the reference, always runs)")  # fmt: skip
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="advlab-executors-"))
    cores = os.cpu_count() or 1
    chosen = {"serial", *args.executors}
    seconds = {"serial": _timed(args.experiment, args.profile, root, "serial", SerialExecutor())}
    if "serial_all_cores" in chosen:
        seconds["serial_all_cores"] = _timed(
            args.experiment, args.profile, root, "serial_all_cores", SerialExecutor(cores)
        )
    if "local" in chosen:
        seconds["local"] = _timed(
            args.experiment, args.profile, root, "local", LocalExecutor(args.workers)
        )
    if "dask" in chosen:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
            seconds["dask"] = _timed(
                args.experiment, args.profile, root, "dask", DaskExecutor(client)
            )
    reference = (root / "serial" / "results.json").read_bytes()
    ours = {k: _ours(root / k / "results.json") for k in seconds}
    print(json.dumps({
        "experiment": args.experiment, "profile": args.profile, "cores": cores,
        "workers": args.workers, "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "speedup_vs_serial": {k: round(seconds["serial"] / v, 2) for k, v in seconds.items()},
        "identical_results": {k: (root / k / "results.json").read_bytes() == reference
                              for k in seconds},
        "differences_vs_serial": {k: _differences(ours["serial"], ours[k]) for k in seconds},
        "runs": str(root),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
