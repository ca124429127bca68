"""Randomized smoothing: advlab's ``RandomizedSmoothing.certify`` against ART's
``PyTorchRandomizedSmoothing.certify`` (Cohen et al.'s CERTIFY in both), on the same network
and images, in one process.

The network is the zoo MLP trained here on the 8x8 digits (scikit-learn's, no download) with
Gaussian noise of std ``--sigma`` (``train_classifier(..., noise_sigma=...)``); the images are
the first ``--n`` test digits. Both libraries smooth it at that sigma with n0 = 100 copies that
pick the class, n = ``--n-samples`` that bound its probability, alpha = 0.001, no clipping of
the noisy copies, and ``--batch`` copies per forward pass. The two draw their noise from
different generators, so their certificates agree only up to Monte Carlo error. Printed as
JSON: each library's certified accuracy at L2 radii 0 (labelled correctly), 0.25 and 0.5, the
share of images where both give the same label, the median and largest absolute difference of
the radii where both certify (first round), and the wall times of ``--rounds`` interleaved
rounds with the median of their per-round ratios.

    bash benchmarks/install_extras.sh
    .venv/bin/python benchmarks/smoothing_vs_art.py --out F.json

Not a test: compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from art import __version__ as art_version
from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing
from torch import nn

from advlab.data import load_dataset
from advlab.defenses import RandomizedSmoothing
from advlab.experiments import Cache
from advlab.models import train_classifier
from advlab.utils.io import atomic_write_json

RADII = (0.0, 0.25, 0.5)


def _certified(labels: np.ndarray, radii: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Certified accuracy (%) at each radius of ``RADII`` (0: labelled correctly)."""
    right = labels == truth
    return {f"{r:g}": float(100 * np.mean(right & ((radii > r) if r else True))) for r in RADII}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=360, help="test digits")
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    model = train_classifier("mlp", train, epochs=30, noise_sigma=args.sigma,
                             cache=Cache()).model.eval()  # fmt: skip
    assert test.images is not None
    x, truth = torch.from_numpy(test.images[: args.n]), test.labels[: args.n]

    smoothing = RandomizedSmoothing(model, args.sigma, n0=100, n=args.n_samples, alpha=0.001,
                                    batch_size=args.batch)  # fmt: skip
    art = PyTorchRandomizedSmoothing(model=model, loss=nn.CrossEntropyLoss(),
                                     input_shape=tuple(x.shape[1:]), nb_classes=10,
                                     device_type="cpu", sample_size=100, scale=args.sigma,
                                     alpha=0.001)  # fmt: skip
    np.random.seed(0)  # noqa: NPY002 (ART draws its noise from numpy's global generator)
    times: dict[str, list[float]] = {"advlab": [], "art": []}
    rounds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        ours = smoothing.certify(x)
        times["advlab"].append(time.perf_counter() - start)
        start = time.perf_counter()
        art_labels, art_radii = art.certify(x.numpy(), n=args.n_samples, batch_size=args.batch)
        times["art"].append(time.perf_counter() - start)
        rounds.append((ours, art_labels, art_radii))
    ours, art_labels, art_radii = rounds[0]  # the first round's certificates are compared

    both = (ours.labels >= 0) & (art_labels >= 0)
    gap = np.abs(ours.radii[both] - art_radii[both])
    report = {
        "benchmark": "smoothing_vs_art", "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads()},
        "art": art_version, "images": len(x), "sigma": args.sigma, "n0": 100,
        "n": args.n_samples, "alpha": 0.001,
        "certified_accuracy": {"advlab": _certified(ours.labels, ours.radii, truth),
                               "art": _certified(art_labels, art_radii, truth)},
        "same_label": float(np.mean(ours.labels == art_labels)),
        "radius_gap_where_both_certify": {"images": int(both.sum()),
                                          "median": float(np.median(gap)) if len(gap) else None,
                                          "max": float(gap.max()) if len(gap) else None},
        "seconds": times,
        "time_ratio_art_over_advlab": float(np.median(np.array(times["art"]) / times["advlab"])),
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
