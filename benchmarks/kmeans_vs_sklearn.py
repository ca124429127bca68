"""advlab KMeans vs scikit-learn KMeans, same data, same machine, same process, interleaved.

Prints (and optionally writes) JSON: for each case, wall time of ``fit`` (seeding + Lloyd to
convergence, same tol and max_iter), seeding time alone, final inertia, iterations and
majority-vote test accuracy, plus the ratios sklearn / advlab.

    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/kmeans_vs_sklearn.py --out bench.json
    ... --cases main          # only MNIST-60k, k = 856

Not a test: timings vary with the machine; compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from sklearn.cluster import KMeans as SKKMeans
from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus
from threadpoolctl import threadpool_info

from advlab.cluster import KMeans, clustering_accuracy, majority_vote_mapping
from advlab.data import load_dataset
from advlab.utils.io import atomic_write_json

CASES = {
    "main": [(60000, 856)],
    "scaling": [(15000, 856), (30000, 856), (60000, 856), (60000, 100), (60000, 400)],
}


def _accuracy(labels, predict, k, train, test) -> float:
    mapping = majority_vote_mapping(labels, train.labels, k)
    return 100.0 * clustering_accuracy(test.labels, predict(test.data), mapping)


def run_sklearn(X, k, seed, tol, max_iter, train, test) -> dict:
    t0 = time.perf_counter()
    sk_kmeans_plusplus(X, k, random_state=seed)
    seed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    km = SKKMeans(
        k, n_init=1, random_state=seed, tol=tol, max_iter=max_iter, algorithm="lloyd"
    ).fit(X)
    fit_s = time.perf_counter() - t0
    return {
        "fit_seconds": fit_s,
        "seeding_seconds": seed_s,
        "inertia": float(km.inertia_),
        "n_iter": int(km.n_iter_),
        "test_accuracy": _accuracy(km.labels_, km.predict, k, train, test),
    }


def run_advlab(X, k, seed, tol, max_iter, train, test) -> dict:
    t0 = time.perf_counter()
    km = KMeans(k, random_state=seed, tol=tol, max_iter=max_iter).fit(X)
    fit_s = time.perf_counter() - t0
    return {
        "fit_seconds": fit_s,
        "seeding_seconds": km.init_seconds_,
        "inertia": float(km.inertia_),
        "n_iter": int(km.n_iter_),
        "test_accuracy": _accuracy(km.labels_, km.predict, k, train, test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--cases", choices=sorted(CASES), default="scaling")
    parser.add_argument("--seeds", type=int, default=1, help="repetitions per case (seeds 0..n-1)")
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()

    train, test = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    rows = []
    for n, k in CASES[args.cases]:
        sub = train.subset(slice(0, n))
        for seed in range(args.seeds):
            # interleave: sklearn first on even seeds, advlab first on odd ones
            order = [("sklearn", run_sklearn), ("advlab", run_advlab)]
            if seed % 2:
                order.reverse()
            result = {"n": n, "k": k, "seed": seed}
            for name, fn in order:
                result[name] = fn(sub.data, k, seed, args.tol, args.max_iter, sub, test)
            sk, ours = result["sklearn"], result["advlab"]
            result["speedup_fit"] = sk["fit_seconds"] / ours["fit_seconds"]
            result["speedup_seeding"] = sk["seeding_seconds"] / ours["seeding_seconds"]
            result["inertia_rel_diff"] = ours["inertia"] / sk["inertia"] - 1.0
            result["accuracy_diff_points"] = ours["test_accuracy"] - sk["test_accuracy"]
            rows.append(result)
            print(json.dumps(result), flush=True)
    report = {
        "benchmark": "kmeans_vs_sklearn",
        "dataset": args.dataset,
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
        "results": rows,
        "summary": {
            f"n={r['n']},k={r['k']}": {
                "speedup_fit_mean": float(
                    np.mean(
                        [x["speedup_fit"] for x in rows if (x["n"], x["k"]) == (r["n"], r["k"])]
                    )
                ),
            }
            for r in rows
        },
    }
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
