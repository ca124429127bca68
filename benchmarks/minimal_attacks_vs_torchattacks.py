"""DeepFool and C&W-L2: advlab against torchattacks at the same settings, on the same images.

A ReLU MLP trained here on the 8x8 digits (scikit-learn's, no download) and, when MNIST is
found (``ADVLAB_DATA``), a small_cnn trained here for one epoch. On the correctly classified
test images each attack runs once per library, timed in the same process. Printed as JSON per
attack: the success rate of each library, the median L2 distance over the images both broke
and their ratio (advlab / torchattacks, per image, median and largest deviation), and the wall
times with their ratio.

Settings: DeepFool 50 steps, overshoot 0.02 (torchattacks' defaults); C&W one constant
c = 1 (torchattacks' ``CW`` has no search over c), kappa 0, ``--cw-steps`` Adam steps at
lr 0.01, advlab's early abort off (torchattacks' CW stops when its loss stalls, too).

    bash benchmarks/install_extras.sh
    ADVLAB_DATA=... .venv/bin/python benchmarks/minimal_attacks_vs_torchattacks.py --out F.json

Not a test: compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
import torchattacks
from torch import nn

from advlab.attacks.evasion import CarliniWagnerL2, DeepFool
from advlab.data import load_dataset
from advlab.models import build_model


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3 if batch < len(x) else 1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def _cases(n: int) -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """name -> (trained model, correctly classified test images, their labels)."""
    cases = {}
    torch.manual_seed(0)
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    mlp = build_model("mlp", 10, (1, 8, 8))
    _train(mlp, torch.from_numpy(train.images), torch.from_numpy(train.labels), 200, 10**9)
    cases["digits_mlp"] = (mlp, torch.from_numpy(test.images), torch.from_numpy(test.labels))
    try:
        train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    except (FileNotFoundError, OSError):
        pass
    else:
        torch.manual_seed(0)
        cnn = build_model("small_cnn", 10, (1, 28, 28))
        _train(cnn, torch.from_numpy(train.images), torch.from_numpy(train.labels), 1, 128)
        cases["mnist_small_cnn"] = (cnn, torch.from_numpy(test.images),
                                    torch.from_numpy(test.labels))  # fmt: skip
    out = {}
    for name, (model, x, y) in cases.items():
        with torch.no_grad():
            right = model(x[:n]).argmax(1) == y[:n]
        out[name] = (model, x[:n][right], y[:n][right])
    return out


def _timed(run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    adv = run()
    return adv, time.perf_counter() - start


def _compare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ours: Callable, theirs: Callable) -> dict:  # fmt: skip
    """Both attacks on (x, y): successes, distances on the images both broke, times."""
    (a, t_a), (b, t_b) = _timed(lambda: ours(x, y).x_adv), _timed(lambda: theirs(x, y))
    with torch.no_grad():
        ok_a, ok_b = model(a).argmax(1) != y, model(b).argmax(1) != y
    d_a, d_b = (a - x).flatten(1).norm(dim=1), (b - x).flatten(1).norm(dim=1)
    both = ok_a & ok_b
    ratio = (d_a[both] / d_b[both]).numpy()
    return {
        "images": len(x),
        "success_rate": {"advlab": float(ok_a.float().mean()), "torchattacks": float(ok_b.float().mean())},
        "broken_by_both": int(both.sum()),
        "median_l2_on_both": {"advlab": float(d_a[both].median()), "torchattacks": float(d_b[both].median())},
        "l2_ratio_advlab_over_torchattacks": {
            "median": float(np.median(ratio)), "min": float(ratio.min()), "max": float(ratio.max()),
        },
        "seconds": {"advlab": t_a, "torchattacks": t_b},
        "time_ratio_torchattacks_over_advlab": t_b / t_a,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="test images per model")
    parser.add_argument("--cw-steps", type=int, default=100)
    parser.add_argument("--out")
    args = parser.parse_args()
    report: dict = {
        "benchmark": "minimal_attacks_vs_torchattacks", "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads()},
        "torchattacks": torchattacks.__version__, "cw_steps": args.cw_steps, "models": {},
    }  # fmt: skip
    for name, (model, x, y) in _cases(args.n).items():
        steps = args.cw_steps
        result = {
            "deepfool": _compare(model, x, y, DeepFool(model, max_iter=50, overshoot=0.02),
                                 torchattacks.DeepFool(model, steps=50, overshoot=0.02)),
            "cw_l2": _compare(model, x, y,
                              CarliniWagnerL2(model, binary_search_steps=1, steps=steps, lr=0.01,
                                              initial_const=1.0, abort_early=False),
                              torchattacks.CW(model, c=1.0, kappa=0, steps=steps, lr=0.01)),
        }  # fmt: skip
        report["models"][name] = result
        print(json.dumps({name: result}), flush=True)
    print(json.dumps(report, indent=2))
    if args.out:
        from advlab.utils.io import atomic_write_json

        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
