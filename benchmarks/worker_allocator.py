"""I-FGSM throughput of local worker processes with and without glibc's malloc tuning.

The CLI tunes its own process (:func:`advlab.utils.perf.tune_cpu_allocator`); the local and
Dask executors pass that on to every worker (``timed_call(..., tune_allocator=True)``). This
times both settings side by side: ``--workers`` local worker processes, each job the attack of
a pool task (I-FGSM, ``--steps`` steps, ``--images`` images in batches of 256, on small_cnn),
the two settings alternating over ``--rounds`` rounds (a fresh process pool each time). Prints
JSON with image-steps per second of all workers together, the median per setting and the ratio.

    .venv/bin/python benchmarks/worker_allocator.py --workers 2 --rounds 3

Not a test: compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from functools import partial
from typing import Any

import torch

from advlab.experiments import executors
from advlab.experiments.executors import LocalExecutor

BATCH = 256


def attack_job(seed: int, images: int, steps: int) -> dict[str, Any]:
    """One pool task's attack on random images; its image-steps per second and whether this
    worker process was tuned."""
    from advlab.attacks.evasion import IFGSM
    from advlab.models import build_model
    from advlab.utils.perf import allocator_tuned

    generator = torch.Generator().manual_seed(seed)
    model = build_model("small_cnn", 10, (1, 28, 28)).eval()
    x = torch.rand(images, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (images,), generator=generator)
    start = time.perf_counter()
    for i in range(0, images, BATCH):
        attack = IFGSM(model, eps=0.3, max_iter=steps, eps_step=0.075, batch_size=BATCH)
        attack.generate(x[i : i + BATCH], y[i : i + BATCH])
    return {"rate": images * steps / (time.perf_counter() - start), "tuned": allocator_tuned()}


def one_round(tuned: bool, workers: int, jobs: int, images: int, steps: int) -> float:
    """All workers' image-steps per second, with workers tuned as a ``tuned`` client's are."""
    executors.allocator_tuned = lambda: tuned  # what the client reports to its executor
    executor = LocalExecutor(workers, threads_per_unit=1)
    try:
        results = [r for _, r, _ in executor.run(
            {f"job{i}": partial(attack_job, i, images, steps) for i in range(jobs)}
        )]  # fmt: skip
    finally:
        executor.close()
    assert all(r["tuned"] == tuned for r in results), "a worker's allocator setting was not applied"
    return statistics.mean(r["rate"] for r in results) * workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=8, help="jobs per round")
    parser.add_argument("--images", type=int, default=2048, help="images per job")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"untuned": [], "tuned": []}
    for _ in range(args.rounds):
        for name in rates:
            rates[name].append(one_round(name == "tuned", args.workers, args.jobs, args.images,
                                         args.steps))  # fmt: skip
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(json.dumps({
        "benchmark": "worker_allocator", "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "workers": args.workers, "jobs": args.jobs, "images": args.images, "steps": args.steps,
        "image_steps_per_second": rates, "median": medians,
        "tuned_over_untuned": medians["tuned"] / medians["untuned"],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
