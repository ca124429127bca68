"""Figures quoted in the README about verifying a network with skip connections (eq. P of
``advlab/defenses/milp_verification.py``), re-measured on demand.

    .venv/bin/python scripts/residual_verification_figures.py

A small ResNet (a 3x3 convolution with 8 channels and a ReLU, two basic blocks of
convolutions, batch norm and an identity shortcut, global average pooling, a linear head) is
trained here on the first 1,437 8x8 digits (pixels / 16; 150 full-batch Adam steps at 1e-2,
seeded) and verified on the first 60 of the other 360. Prints JSON:

- ``clean_accuracy`` on those 60, and ``chain``: the neurons of each activation layer of its
  chain and how many of them carry skipped values;
- per L-inf eps: the shares certified by interval bounds (``is_certified``) and by linear bounds
  (``is_certified_linear``); the exact verdicts of ``verify_linf`` (programs of 10 s at most):
  the shares proved robust, attacked and unknown, and its seconds; the share PGD (50 steps,
  random start) leaves correct; and the soundness counts, which must be 0: inputs certified that the
  programs do not prove robust, and inputs proved robust that PGD breaks.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from advlab.attacks.evasion import PGD
from advlab.defenses import (
    ATTACKED,
    ROBUST,
    UNKNOWN,
    is_certified,
    is_certified_linear,
    linear_bound_chain,
    verify_linf,
)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input, then a ReLU (ResNet's basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


def _resnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), BasicBlock(8), BasicBlock(8),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip


def _trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    digits = load_digits()
    images = torch.from_numpy(digits.images / 16).float()[:, None]
    labels = torch.from_numpy(digits.target)
    torch.manual_seed(0)
    net = _resnet()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        optimiser.zero_grad()
        F.cross_entropy(net(images[:1437]), labels[:1437]).backward()
        optimiser.step()
    return net.eval(), images[1437 : 1437 + 60], labels[1437 : 1437 + 60]


def main() -> None:
    net, x, y = _trained()
    with torch.no_grad():
        correct = net(x).argmax(1) == y
    chain, _ = linear_bound_chain(net, x[:2])
    rows = []
    for eps in (0.01, 0.02):
        interval = is_certified(net, x, y, eps)
        linear = is_certified_linear(net, x, y, eps)
        broken = PGD(net, eps=eps, max_iter=50, random_start=True, random_state=0)(x, y).success
        start = time.perf_counter()
        exact = verify_linf(net, x, y, eps, time_limit=10)
        seconds = time.perf_counter() - start
        robust = torch.from_numpy(exact.status == ROBUST)
        rows.append({
            "eps": eps,
            "interval_certified": float(interval.double().mean()),
            "linear_certified": float(linear.double().mean()),
            "milp_robust": float(robust.double().mean()),
            "milp_attacked": float(np.mean(exact.status == ATTACKED)),
            "milp_unknown": float(np.mean(exact.status == UNKNOWN)),
            "pgd_robust": float((correct & ~broken).double().mean()),
            "certified_not_robust": int(((interval | linear) & ~robust).sum()),
            "robust_and_broken": int((robust & broken).sum()),
            "milp_seconds": round(seconds, 1),
        })  # fmt: skip
    layers = [len(c) for _, c in chain[:-1]]
    print(json.dumps({
        "clean_accuracy": float(correct.double().mean()),
        "chain": {"neurons_per_layer": layers,
                  "carrying": [n - 8 * 64 for n in layers]},  # (each layer's own: 8 x 8 x 8)
        "linf": rows,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
