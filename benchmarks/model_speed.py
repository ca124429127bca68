"""What the zoo's layout and the allocator setting buy: forward + input-gradient throughput.

For each model, side by side in one process, the zoo's layout (max-pool before ReLU,
channels_last) against :func:`advlab.models.zoo.textbook_layout` (conv -> ReLU -> pool, NCHW;
the same weights and function), interleaved over ``--rounds`` rounds, median kept. The glibc
allocator setting of the CLI (:mod:`advlab.utils.perf`) is process-wide, so the whole
measurement runs in child processes with it off and on, alternating, and the medians of the
children are compared.

    .venv/bin/python benchmarks/model_speed.py --models small_cnn lenet5

Prints JSON (image-steps per second: one forward and one backward to the input per image).
Not a test: compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from advlab.models import build_model
from advlab.models.zoo import textbook_layout
from advlab.utils.perf import OPT_OUT_VARIABLE, tune_cpu_allocator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from benchmarks._cli import throughput_parser


def _rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(nn.functional.cross_entropy(model(xr), y), xr)
    return len(x) * steps / (time.perf_counter() - start)


def _measure(names: list[str], batch: int, steps: int, rounds: int) -> dict[str, dict[str, float]]:
    gen = torch.Generator().manual_seed(0)
    x, y = (
        torch.rand(batch, 1, 28, 28, generator=gen),
        torch.randint(0, 10, (batch,), generator=gen),
    )
    out = {}
    for name in names:
        torch.manual_seed(0)
        zoo = build_model(name, 10, (1, 28, 28)).eval().requires_grad_(False)
        variants = {"zoo": zoo, "textbook": textbook_layout(zoo).eval().requires_grad_(False)}
        rates: dict[str, list[float]] = {v: [] for v in variants}
        for model in variants.values():  # warm-up
            _rate(model, x, y, 1)
        for _ in range(rounds):
            for v, model in variants.items():
                rates[v].append(_rate(model, x, y, steps))
        out[name] = {v: statistics.median(r) for v, r in rates.items()}
    return out


def main() -> None:
    parser = throughput_parser(__doc__)
    parser.add_argument("--children", type=int, default=2, help="child processes per setting")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tuned = tune_cpu_allocator()
        result = _measure(args.models, args.batch, args.steps, args.rounds)
        print(json.dumps({"malloc_tuned": tuned, "rates": result}))
        return
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"default": [], "tuned": []}
    for _ in range(args.children):
        for setting, flag in (("default", "0"), ("tuned", "1")):
            env = {**os.environ, OPT_OUT_VARIABLE: flag}
            cmd = [sys.executable, __file__, "--child", "--models", *args.models,
                   "--batch", str(args.batch), "--steps", str(args.steps), "--rounds", str(args.rounds)]  # fmt: skip
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            child = json.loads(done.stdout.strip().splitlines()[-1])
            if child["malloc_tuned"] != (setting == "tuned"):
                raise RuntimeError(
                    f"the {setting} child reported malloc_tuned={child['malloc_tuned']}"
                )
            runs[setting].append(child["rates"])
    report: dict[str, object] = {"benchmark": "model_speed", "batch": args.batch, "steps": args.steps,
                                 "rounds": args.rounds, "children": args.children, "models": {}}  # fmt: skip
    for name in args.models:
        rate = {f"{layout}/{setting}": statistics.median(r[name][layout] for r in runs[setting])
                for setting in runs for layout in ("textbook", "zoo")}  # fmt: skip
        base = rate["textbook/default"]
        report["models"][name] = {  # type: ignore[index]
            "image_steps_per_second": rate,
            "speedup_vs_textbook_default": {k: v / base for k, v in rate.items()},
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
