"""What ``advlab.cluster.kmeans.choose_bounds`` is measured on: each way advlab's Lloyd can run
against scikit-learn's, from the same given centres, and the seeding alone.

    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/kmeans_modes.py [--what modes|seeding]

``modes``: wall time of ``fit`` (best of ``--reps``) for scikit-learn's Lloyd and for advlab's
KMeans with ``bounds`` = "sklearn", "none", "hamerly", "elkan", same init, same tol; plus which
mode the rule picks. ``seeding``: scikit-learn's ``kmeans_plusplus`` vs advlab's greedy k-means++
and k-means|| (``init_algorithm``). Prints JSON lines. Not a test: compare numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from sklearn.cluster import KMeans as SKKMeans
from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus

from advlab.cluster import KMeans, kmeans_plusplus
from advlab.cluster.kmeans import choose_bounds
from advlab.data import load_dataset


def _data(kind: str, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(n + d)
    if kind == "uniform":
        return rng.uniform(size=(n, d)).astype(np.float32)
    if kind == "duplicates":
        return rng.uniform(size=(500, d)).astype(np.float32)[rng.integers(0, 500, size=n)]
    return load_dataset(kind, "train").data[:n]


MODE_CASES = [("uniform", 10000, 10, 10), ("uniform", 10000, 2, 100), ("duplicates", 10000, 10, 195),
              ("uniform", 10000, 784, 10), ("uniform", 60000, 50, 100), ("uniform", 60000, 2, 856),
              ("uniform", 60000, 10, 856), ("fashion-mnist", 60000, 784, 100),
              ("fashion-mnist", 10000, 784, 856)]  # fmt: skip
SEED_CASES = [("uniform", 10000, 10, 195), ("uniform", 60000, 2, 100), ("uniform", 200000, 10, 100),
              ("fashion-mnist", 60000, 784, 100), ("fashion-mnist", 10000, 784, 856)]  # fmt: skip


def _best(reps: int, fn, *args, **kwargs) -> tuple[float, object]:
    """Best wall time of ``fn(*args, **kwargs)`` over ``reps`` calls, and its last result."""
    times, out = [], None
    for _ in range(reps):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times), out


def modes(reps: int) -> None:
    for kind, n, d, k in MODE_CASES:
        X = _data(kind, n, d)
        init = X[np.random.default_rng(1).choice(n, k, replace=False)]
        row = {"data": kind, "n": n, "d": d, "k": k, "rule": choose_bounds(n, d, k)}
        seconds, km = _best(reps, SKKMeans(k, init=init, n_init=1).fit, X)
        row["scikit-learn"] = {"seconds": round(seconds, 3), "iterations": int(km.n_iter_)}
        for mode in ("sklearn", "none", "hamerly", "elkan"):
            seconds, km = _best(reps, KMeans(k, init=init, bounds=mode).fit, X)
            row[mode] = {"seconds": round(seconds, 3), "iterations": int(km.n_iter_)}
        print(json.dumps(row), flush=True)


def seeding(reps: int) -> None:
    for kind, n, d, k in SEED_CASES:
        X = _data(kind, n, d)
        row = {"data": kind, "n": n, "d": d, "k": k}
        row["scikit-learn"] = round(_best(reps, sk_kmeans_plusplus, X, k, random_state=0)[0], 3)
        for alg in ("greedy", "parallel"):
            seconds = _best(reps, kmeans_plusplus, X, k, random_state=0, init_algorithm=alg)[0]
            row[alg] = round(seconds, 3)
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--what", choices=("modes", "seeding"), default="modes")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # scikit-learn's warning on duplicate points
    (modes if args.what == "modes" else seeding)(args.reps)


if __name__ == "__main__":
    main()
