"""Certified radii by interval bounds, bisected one input at a time against a batch of inputs
bisected together, side by side on the same inputs.

    .venv/bin/python benchmarks/certified_radius_batching.py [--n 1000] [--batch 512] [--out F]

Networks of the zoo trained here on the scikit-learn 8x8 digits (seeded, 1,400 training images,
full-batch Adam, 100 epochs): ``mlp`` and ``wong_small`` as classifiers (``certified_radius``,
``method="interval"``), and a k-means (k = 30) on ``mlp``'s hidden layer
(``kmeans_certified_radius_through``). The first ``--n`` of the remaining images (the last
397, repeated to reach n), the networks' own predictions as labels, L-inf (eps_max 0.2) and L2
(eps_max 2). Each setting runs ``batch_size=1`` and ``--batch`` alternately for ``--rounds``
rounds in one process; prints one JSON line per setting: the median seconds of each, their
ratio (one at a time / batched: > 1, batching is faster) and whether the radii are equal. Not a
test: compare numbers from one run.
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

from advlab.cluster import KMeans
from advlab.defenses import certified_radius, kmeans_certified_radius_through
from advlab.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from benchmarks._cli import rounds_parser, write_rows

EPS_MAX = {"linf": 0.2, "l2": 2.0}


def _trained(name: str, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    net = build_model(name, n_classes=10, input_shape=(1, 8, 8))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def _timed(radii, rounds: int, batch: int) -> dict:
    """Median seconds of ``radii(1)`` and ``radii(batch)``, run alternately."""
    seconds: dict[int, list[float]] = {1: [], batch: []}
    results = {}
    for _ in range(rounds):
        for size in (1, batch):
            start = time.perf_counter()
            results[size] = radii(size)
            seconds[size].append(time.perf_counter() - start)
    one, many = (float(np.median(seconds[s])) for s in (1, batch))
    return {"seconds_one_at_a_time": round(one, 3), "seconds_batched": round(many, 3),
            "ratio": round(one / many, 1), "radii_equal": bool(np.array_equal(results[1],
            results[batch])), "median_radius": float(np.median(results[1]))}  # fmt: skip


def main() -> None:
    parser = rounds_parser(__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    digits = load_digits()
    x = torch.from_numpy((digits.images / 16).astype(np.float32))[:, None]
    y = torch.from_numpy(digits.target)
    test = x[1400:].repeat(-(-args.n // len(x[1400:])), 1, 1, 1)[: args.n]
    rows = []
    for name in ("mlp", "wong_small"):
        net = _trained(name, x[:1400], y[:1400])
        with torch.no_grad():
            labels = net(test).argmax(1)
        for norm, eps_max in EPS_MAX.items():
            timing = _timed(lambda b, net=net, labels=labels, norm=norm, eps_max=eps_max:
                            certified_radius(net, test, labels, eps_max, "interval", norm=norm,
                                             batch_size=b), args.rounds, args.batch)  # fmt: skip
            rows.append({"certificate": "classifier", "model": name, "norm": norm,
                         "eps_max": eps_max, "n": args.n, "batch": args.batch, **timing})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    mlp = _trained("mlp", x[:1400], y[:1400])
    hidden = nn.Sequential(mlp.normalize, mlp.body).eval()
    with torch.no_grad():
        km = KMeans(30, random_state=0).fit(hidden(x[:1400]).flatten(1).numpy())
    for norm, eps_max in EPS_MAX.items():
        timing = _timed(lambda b, norm=norm, eps_max=eps_max: kmeans_certified_radius_through(
            km, test, eps_max, None, hidden, method="interval", norm=norm, batch_size=b),
            args.rounds, args.batch)  # fmt: skip
        rows.append({"certificate": "kmeans", "model": "mlp hidden layer", "norm": norm,
                     "eps_max": eps_max, "n": args.n, "batch": args.batch, **timing})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    write_rows(args.out, rows, args.rounds)


if __name__ == "__main__":
    main()
