"""Exact verification (``verify_linf``) with the hidden layers' bounds from interval arithmetic
against linear (CROWN) bounds intersected with them, side by side on the same inputs.

    .venv/bin/python benchmarks/milp_bounds.py [--n 20] [--eps 0.02 0.05] [--time-limit 5]

Two ReLU networks trained here on the scikit-learn 8x8 digits (seeded, 1,400 training images,
full-batch Adam): the zoo's ``mlp`` (one hidden layer of 256: its bounds are exact either way,
so only the linear margin bounds, which settle classes before any program, differ) and
``wong_small`` (two convolutions and a dense layer: three hidden layers). The first ``--n``
test images, the network's own predictions as labels. Prints one JSON line per network, budget
and bounds: wall seconds, the mean number of binaries per program, the statuses, and whether
the two settings agree on every input neither left unknown. Not a test: compare numbers from
one run.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from advlab.defenses import ATTACKED, ROBUST, UNKNOWN, verify_linf
from advlab.models import build_model


def _trained(name: str, x: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    net = build_model(name, n_classes=10, input_shape=(1, 8, 8))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05])
    parser.add_argument("--time-limit", type=float, default=5.0)
    parser.add_argument("--models", nargs="+", default=["mlp", "wong_small"])
    args = parser.parse_args()
    digits = load_digits()
    x = torch.from_numpy((digits.images / 16).astype(np.float32))[:, None]
    y = torch.from_numpy(digits.target)
    for name in args.models:
        net = _trained(name, x[:1400], y[:1400], epochs=100)
        test = x[1400 : 1400 + args.n]
        with torch.no_grad():
            labels = net(test).argmax(1)
        for eps in args.eps:
            statuses = {}
            for bounds in ("interval", "linear"):
                start = time.perf_counter()
                result = verify_linf(net, test, labels, eps, args.time_limit, layer_bounds=bounds)
                seconds = time.perf_counter() - start
                statuses[bounds] = result.status
                programmed = result.unstable[result.unstable > 0]
                row = {"model": name, "eps": eps, "layer_bounds": bounds, "n": args.n,
                       "time_limit": args.time_limit, "seconds": round(seconds, 2),
                       "programs": len(programmed),
                       "mean_binaries": round(float(programmed.mean()), 1) if len(programmed) else 0,
                       "robust": int(np.sum(result.status == ROBUST)),
                       "attacked": int(np.sum(result.status == ATTACKED)),
                       "unknown": int(np.sum(result.status == UNKNOWN))}  # fmt: skip
                print(json.dumps(row), flush=True)
            decided = (statuses["interval"] != UNKNOWN) & (statuses["linear"] != UNKNOWN)
            agree = bool(np.array_equal(statuses["interval"][decided], statuses["linear"][decided]))
            print(json.dumps({"model": name, "eps": eps, "agree_where_decided": agree}), flush=True)


if __name__ == "__main__":
    main()
