"""I-FGSM throughput: advlab vs torchattacks BIM vs ART BasicIterativeMethod vs the raw model.

Same model, same batch, same process; the methods are interleaved over ``--rounds`` rounds and
the median time per method is kept. Prints JSON with image-steps per second and the ratios.

    bash benchmarks/install_extras.sh          # torchattacks and ART without their dependencies
    .venv/bin/python benchmarks/attacks_throughput.py --models small_cnn lenet5

Every method runs in the same process, so the allocator setting the CLI uses
(:func:`advlab.utils.perf.tune_cpu_allocator`, off with ``--no-malloc-tuning``) applies to all.
Not a test: compare only numbers from one run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from advlab.attacks.evasion import IFGSM
from advlab.models import build_model
from advlab.utils.perf import tune_cpu_allocator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from benchmarks._cli import throughput_parser


def _batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from advlab.data import load_dataset

        test = load_dataset("mnist", "test")
        return torch.from_numpy(test.images[:n]), torch.from_numpy(test.labels[:n])
    except (FileNotFoundError, OSError):
        gen = torch.Generator().manual_seed(0)
        return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _methods(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int
) -> dict[str, Callable[[], object]]:
    alpha = eps / 4
    atk = IFGSM(model, eps=eps, max_iter=steps, eps_step=alpha, batch_size=len(x))
    methods: dict[str, Callable[[], object]] = {
        "advlab": lambda: atk.generate(x, y),  # the images only, like torchattacks and ART
        "advlab_with_success": lambda: atk(x, y),  # + a forward pass for predictions and success
    }

    def raw() -> None:  # the model alone: forward + backward to the input, `steps` times
        for p in model.parameters():
            p.requires_grad_(False)
        xr = x.clone()
        for _ in range(steps):
            xr.requires_grad_(True)
            torch.autograd.grad(nn.functional.cross_entropy(model(xr), y), xr)
            xr = xr.detach()
        for p in model.parameters():
            p.requires_grad_(True)

    methods["raw_model"] = raw
    try:
        import torchattacks

        bim = torchattacks.BIM(model, eps=eps, alpha=alpha, steps=steps)
        methods["torchattacks"] = lambda: bim(x, y)
    except ImportError:
        pass
    try:
        from art.attacks.evasion import BasicIterativeMethod
        from art.estimators.classification import PyTorchClassifier

        clf = PyTorchClassifier(
            model,
            nn.CrossEntropyLoss(),
            input_shape=(1, 28, 28),
            nb_classes=10,
            clip_values=(0.0, 1.0),
        )
        art_bim = BasicIterativeMethod(
            clf, eps=eps, eps_step=alpha, max_iter=steps, batch_size=len(x), verbose=False
        )
        x_np, y_np = x.numpy(), y.numpy()
        methods["art"] = lambda: art_bim.generate(x_np, y_np)
    except ImportError:
        pass
    return methods


def main() -> None:
    parser = throughput_parser(__doc__)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--out")
    parser.add_argument(
        "--no-malloc-tuning", action="store_true", help="keep glibc's default malloc thresholds"
    )
    args = parser.parse_args()
    malloc_tuned = False if args.no_malloc_tuning else tune_cpu_allocator()
    x, y = _batch(args.batch)
    report: dict[str, object] = {
        "benchmark": "attacks_throughput", "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "malloc_tuned": malloc_tuned},
        "batch": args.batch, "steps": args.steps, "eps": args.eps, "rounds": args.rounds, "models": {},
    }  # fmt: skip
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name, 10, (1, 28, 28)).eval()
        methods = _methods(model, x, y, args.eps, args.steps)
        times: dict[str, list[float]] = {m: [] for m in methods}
        for fn in methods.values():  # warm-up
            fn()
        for _ in range(args.rounds):
            for method, fn in methods.items():
                start = time.perf_counter()
                fn()
                times[method].append(time.perf_counter() - start)
        rate = {m: args.batch * args.steps / statistics.median(t) for m, t in times.items()}
        ours = rate["advlab"]
        result = {"image_steps_per_second": rate}
        result["ratios"] = {f"advlab/{m}": ours / r for m, r in rate.items() if m != "advlab"}
        report["models"][name] = result  # type: ignore[index]
        print(json.dumps({name: result}), flush=True)
    print(json.dumps(report, indent=2))
    if args.out:
        from advlab.utils.io import atomic_write_json

        atomic_write_json(args.out, report)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
