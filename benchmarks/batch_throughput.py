"""Attack throughput against batch size, on a GPU or a CPU: what a larger batch buys.

Each row is ``advlab.experiments.planning.measure_throughput`` (the rate ``advlab plan`` uses:
the attack itself on an untrained model, image-passes under autograd per second, best of two
timed calls after a warm-up) for one (model, attack, batch). A GPU is mostly idle at the
batches the experiments use on CPU (Omari's pools attack chunks of 256 images, Mygdalis'
attacks batches of 32), so the ratios say what ``--set batch_size=...`` is worth there.

    python benchmarks/batch_throughput.py --device cuda --out gpu.json

Not a test: compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from advlab.experiments.planning import ATTACKS, measure_throughput
from advlab.utils.io import atomic_write_json

DEFAULT_GRID = ["resnet18:ifgsm:256,1024,4096", "small_cnn:ifgsm:256,4096",
                "lenet5:cw:32,256,2048", "lenet5:lbfgs:32,256"]  # fmt: skip


def _grid(specs: list[str]) -> list[tuple[str, str, list[int]]]:
    """'model:attack:b1,b2' -> (model, attack, [b1, b2])."""
    grid = []
    for spec in specs:
        model, attack, batches = spec.split(":")
        if attack not in ATTACKS:
            raise SystemExit(f"{spec}: attack must be one of {ATTACKS}")
        grid.append((model, attack, [int(b) for b in batches.split(",")]))
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--grid", nargs="+", default=DEFAULT_GRID, metavar="MODEL:ATTACK:BATCHES")
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device_name = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor()
    )
    report: dict[str, object] = {
        "benchmark": "batch_throughput", "date": time.strftime("%Y-%m-%d"), "device": args.device,
        "device_name": device_name, "torch": torch.__version__, "threads": args.threads, "rows": [],
    }  # fmt: skip
    for model, attack, batches in _grid(args.grid):
        base = None
        for batch in batches:
            rate = measure_throughput(model, (1, 28, 28), args.device, batch=batch, attack=attack)
            base = base or rate
            row = {"model": model, "attack": attack, "batch": batch,
                   "image_steps_per_second": round(rate, 1), "vs_smallest_batch": round(rate / base, 2)}  # fmt: skip
            report["rows"].append(row)  # type: ignore[attr-defined]
            print(json.dumps(row), flush=True)
    print(json.dumps(report, indent=1))
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
