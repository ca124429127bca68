"""advlab KMeans vs scikit-learn KMeans, same data, same machine, same process, interleaved.

For each case: the wall time of ``fit`` (seeding + Lloyd to convergence, the same ``tol`` and
``max_iter``, ``n_init=1``), advlab's seeding time, the final inertias, the iterations and,
with an explicit init, the share of labels equal to scikit-learn's. Each case runs ``--reps``
times (seeds 0..reps-1; scikit-learn first on even repetitions, advlab first on odd ones);
the ratio reported is the median of the per-repetition ratios sklearn / advlab (> 1: advlab
faster). Prints one JSON line per case, then the whole report as JSON and a Markdown table.

    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/kmeans_vs_sklearn.py --cases grid
    ... --cases main          # only MNIST-60k, k = 856 (own seeding)
    ... --cases scaling       # MNIST subsets and k values (own seeding)

Not a test: timings vary with the machine; compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs
from threadpoolctl import threadpool_info

from advlab.cluster import KMeans
from advlab.data import load_dataset
from advlab.utils.io import atomic_write_json


@dataclass(frozen=True)
class Case:
    name: str
    data: Callable[[], np.ndarray]
    k: int
    init: str = "own"  # "own": each library seeds itself; "explicit": the same given centres


def _uniform(n: int, d: int, dtype=np.float32) -> Callable[[], np.ndarray]:
    return lambda: np.random.default_rng(n + d).uniform(size=(n, d)).astype(dtype)


def _blobs() -> np.ndarray:
    return make_blobs(50000, 50, centers=100, random_state=0)[0].astype(np.float32)


def _duplicates() -> np.ndarray:
    rng = np.random.default_rng(1)
    base = rng.uniform(size=(500, 10)).astype(np.float32)
    return base[rng.integers(0, 500, size=10000)]  # 10,000 rows, 500 distinct


def _idx(name: str, n: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        data = load_dataset(name, "train").data
        return data if n is None else data[:n]

    return load


def _grid() -> list[Case]:
    """A subset of n x d x k x dtype x init that covers each axis (the full product does not
    fit a reasonable time on 2 cores: scikit-learn alone needs minutes per fit at n = 200k,
    d = 784, k = 856)."""
    cases = []
    for d in (2, 10, 50, 784):  # n = 10k: every d against every k
        for k in (10, 100, 856):
            cases.append(Case(f"uniform n=10k d={d} k={k}", _uniform(10000, d), k))
    for d, k in ((2, 10), (2, 100), (10, 10), (10, 100), (10, 856), (50, 10), (50, 100)):
        cases.append(Case(f"uniform n=60k d={d} k={k}", _uniform(60000, d), k))
    for d in (2, 10):
        cases.append(Case(f"uniform n=200k d={d} k=100", _uniform(200000, d), 100))
    cases += [
        Case("uniform float64 n=10k d=10 k=100", _uniform(10000, 10, np.float64), 100),
        Case("uniform float64 n=60k d=50 k=100", _uniform(60000, 50, np.float64), 100),
        Case("blobs n=50k d=50 k=100", _blobs, 100),
        Case("duplicates n=10k d=10 k=195", _duplicates, 195),
        Case("MNIST n=60k k=856", _idx("mnist"), 856),
        Case("MNIST n=60k k=100", _idx("mnist"), 100),
        Case("Fashion-MNIST n=60k k=100", _idx("fashion-mnist"), 100),
    ]
    explicit = [
        "uniform n=10k d=10 k=100",
        "uniform n=60k d=2 k=100",
        "uniform n=60k d=50 k=100",
        "uniform float64 n=60k d=50 k=100",
        "duplicates n=10k d=10 k=195",
        "Fashion-MNIST n=60k k=100",
        "MNIST n=60k k=856",
    ]
    by_name = {c.name: c for c in cases}
    cases += [Case(name, by_name[name].data, by_name[name].k, "explicit") for name in explicit]
    return cases


CASES: dict[str, Callable[[], list[Case]]] = {
    "main": lambda: [Case("MNIST n=60k k=856", _idx("mnist"), 856)],
    "scaling": lambda: [
        Case(f"MNIST n={n // 1000}k k={k}", _idx("mnist", n), k)
        for n, k in ((15000, 856), (30000, 856), (60000, 856), (60000, 100), (60000, 400))
    ],
    "grid": _grid,
}


def _fit(lib: str, X: np.ndarray, k: int, init, seed: int, tol: float, max_iter: int):
    cls = SKKMeans if lib == "sklearn" else KMeans
    extra = {"algorithm": "lloyd"} if lib == "sklearn" else {}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's warning on duplicate points
        km = cls(k, init=init, n_init=1, random_state=seed, tol=tol, max_iter=max_iter,
                 **extra).fit(X)  # fmt: skip
    return km, time.perf_counter() - start


def run_case(case: Case, reps: int, tol: float, max_iter: int) -> dict:
    X = case.data()
    runs = []
    for rep in range(reps):
        init = "k-means++"
        if case.init == "explicit":
            init = X[np.random.default_rng(rep).choice(len(X), case.k, replace=False)]
        order = ["sklearn", "advlab"] if rep % 2 == 0 else ["advlab", "sklearn"]
        fits = {lib: _fit(lib, X, case.k, init, rep, tol, max_iter) for lib in order}
        (sk, sk_s), (ours, ours_s) = fits["sklearn"], fits["advlab"]
        run = {
            "seed": rep,
            "sklearn_seconds": sk_s,
            "advlab_seconds": ours_s,
            "advlab_seeding_seconds": ours.init_seconds_,
            "ratio": sk_s / ours_s,
            "sklearn_inertia": float(sk.inertia_),
            "advlab_inertia": float(ours.inertia_),
            "inertia_ratio": float(ours.inertia_) / float(sk.inertia_),
            "sklearn_iterations": int(sk.n_iter_),
            "advlab_iterations": int(ours.n_iter_),
            "advlab_bounds": ours.bounds_,
        }
        if case.init == "explicit":
            run["labels_equal"] = float(np.mean(ours.labels_ == sk.labels_))
        runs.append(run)
    return {
        "case": case.name,
        "init": case.init,
        "n": len(X),
        "d": X.shape[1],
        "k": case.k,
        "dtype": str(X.dtype),
        "ratio_median": statistics.median(r["ratio"] for r in runs),
        "inertia_ratio_median": statistics.median(r["inertia_ratio"] for r in runs),
        "runs": runs,
    }


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| case | init | time sklearn / advlab (median) | inertia advlab / sklearn | "
        "iterations sklearn, advlab | bounds | labels equal |",
        "| --- | --- | ---: | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        its = ", ".join(f"{x['sklearn_iterations']}/{x['advlab_iterations']}" for x in r["runs"])
        equal = [x["labels_equal"] for x in r["runs"] if "labels_equal" in x]
        lines.append(
            f"| {r['case']} | {r['init']} | {r['ratio_median']:.2f} | "
            f"{r['inertia_ratio_median']:.4f} | {its} | {r['runs'][0]['advlab_bounds']} | "
            + (f"{min(equal):.4f}" if equal else "-")
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", choices=sorted(CASES), default="grid")
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions per case")
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()

    rows = []
    for case in CASES[args.cases]():
        if args.only and args.only not in case.name:
            continue
        row = run_case(case, args.reps, args.tol, args.max_iter)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
    report = {
        "benchmark": "kmeans_vs_sklearn",
        "cases": args.cases,
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "blas": [
                {
                    k: v
                    for k, v in lib.items()
                    if k in ("internal_api", "num_threads", "version", "architecture")
                }
                for lib in threadpool_info()
            ],
        },
        "tol": args.tol,
        "max_iter": args.max_iter,
        "reps": args.reps,
        "results": rows,
    }
    print(json.dumps(report, indent=2))
    print(markdown_table(rows))
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
