"""Certified accuracy of interval bounds and of linear (CROWN) bounds through smooth
activations (eq. R of ``advlab.defenses.linear_relaxations``), beside PGD's upper bound, on the
same inputs.

    .venv/bin/python benchmarks/smooth_linear_bounds.py [--rounds 3] [--out F]

Networks 64 -> 64 -> 64 -> 10 of one activation each (and ReLU for comparison), trained here on
the scikit-learn 8x8 digits (seeded, the first 1,400 images, full-batch Adam, 200 epochs); the
other 397 images with their labels, pixels in [0, 1]. At each L-inf eps: the share certified by
``is_certified`` (interval bounds) and by ``is_certified_linear`` (linear bounds), and the share
PGD (40 steps, 2 random starts) leaves correct, which bounds robust accuracy from above; the
median seconds of each certificate over ``--rounds`` rounds in one process. Prints one JSON
line per network and eps. Not a test: compare numbers from one run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from advlab.attacks.evasion import PGD
from advlab.defenses import is_certified, is_certified_linear

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from benchmarks._cli import rounds_parser, write_rows

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU,
               "silu": nn.SiLU, "softplus": nn.Softplus, "elu": nn.ELU}  # fmt: skip
EPS = (0.01, 0.02, 0.05)


def _trained(activation: type[nn.Module], x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), activation(), nn.Linear(64, 64),
                        activation(), nn.Linear(64, 10))  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def _median_seconds(certify, args: tuple, rounds: int) -> tuple[torch.Tensor, float]:
    seconds, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = certify(*args)
        seconds.append(time.perf_counter() - start)
    assert result is not None
    return result, float(np.median(seconds))


def main() -> None:
    args = rounds_parser(__doc__).parse_args()
    digits = load_digits()
    images = torch.from_numpy(digits.images / 16).float()[:, None]
    labels = torch.from_numpy(digits.target)
    x_train, y_train, x, y = images[:1400], labels[:1400], images[1400:], labels[1400:]
    rows = []
    for name, activation in ACTIVATIONS.items():
        net = _trained(activation, x_train, y_train)
        with torch.no_grad():
            correct = net(x).argmax(1) == y
        for eps in EPS:
            interval, t_interval = _median_seconds(is_certified, (net, x, y, eps), args.rounds)
            linear, t_linear = _median_seconds(is_certified_linear, (net, x, y, eps), args.rounds)
            broken = torch.zeros(len(x), dtype=torch.bool)
            for seed in range(2):
                pgd = PGD(net, eps=eps, max_iter=40, random_state=seed)
                broken |= pgd(x, y).success
            row = {
                "activation": name, "eps": eps, "n": len(x),
                "clean_accuracy": round(100 * float(correct.float().mean()), 1),
                "interval_certified": round(100 * float(interval.float().mean()), 1),
                "linear_certified": round(100 * float(linear.float().mean()), 1),
                "pgd_robust": round(100 * float((correct & ~broken).float().mean()), 1),
                "certified_but_broken": int((linear & broken).sum() + (interval & broken).sum()),
                "seconds_interval": round(t_interval, 3), "seconds_linear": round(t_linear, 3),
            }  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    write_rows(args.out, rows, args.rounds)


if __name__ == "__main__":
    main()
