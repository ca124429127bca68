"""Cross-checks of ``verify_kmeans_linf`` beyond the tests' cases, re-run on demand.

    .venv/bin/python scripts/kmeans_milp_crosscheck.py

Prints JSON, per family the number of cases and of disagreements (all must be 0):

- ``no_network``: scikit-learn k-means on random points (D = 2, 5, 12; k = 4, 7, 15; 6 seeds),
  40 inputs each, in the box [0, 1] and unbounded, class-aware and per cluster, at eps 0.02
  and 0.08: the verdict equals "the exact minimal attack (``KMeansMinimalAttack(exact=True)``,
  linear programs) exceeds eps", the linear certificate lies below it and above interval bounds;
  the minimal programs (search radius 0.3) find every input the exact attack reaches, within
  2e-6 of its size;
- ``pipelines``: StandardScaler + PCA(4) (whitened or not) + k-means on scaled random rows,
  unbounded, at eps 0.05 and 0.2: the verdict equals the exact attack's;
- ``relu_networks``: k-means (5 clusters, 3 classes) on a 2 -> 10 -> 10 -> 3 ReLU network with
  preprocessing (4 seeds, 30 inputs each, eps 0.04): every input with an attacking point on a
  161 x 161 grid of its box is attacked, every counterexample changes the class, the minimal
  distance is never above the grid's nearest attacking point, and both modes agree.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from advlab.attacks.evasion import KMeansMinimalAttack
from advlab.defenses import (
    ATTACKED,
    ROBUST,
    UNKNOWN,
    kmeans_is_certified,
    kmeans_is_certified_linear,
    verify_kmeans_linf,
)
from advlab.models import Model


def no_network() -> dict[str, int]:
    cases = bad = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        d, k = [2, 5, 12][seed % 3], [4, 7, 15][seed % 3]
        km = KMeans(k, n_init=1, random_state=seed).fit(rng.random((300, d)))
        mapping = rng.integers(0, 3, k)
        mapping[:3] = [0, 1, 2]
        x = torch.from_numpy(rng.random((40, d)))
        for bounds, box in (((0.0, 1.0), (0.0, 1.0)), ((-np.inf, np.inf), None)):
            for target, mp in (("other-class", mapping), ("any-cluster", None)):
                exact = KMeansMinimalAttack(km, mp, "linf", target, exact=True, bounds=box)
                sizes = exact(x).distances.numpy()
                for eps in (0.02, 0.08):
                    cases += 1
                    status = verify_kmeans_linf(km, x, eps, mapping=mp, bounds=bounds).status
                    linear = kmeans_is_certified_linear(km, x, eps, mp, bounds=bounds).numpy()
                    interval = kmeans_is_certified(km, x, eps, mp, bounds=bounds).numpy()
                    bad += not (np.array_equal(status == ROBUST, sizes > eps)
                                and np.all(sizes[linear] > eps) and np.all(linear[interval]))  # fmt: skip
                cases += 1
                found = verify_kmeans_linf(km, x, 0.3, mapping=mp, bounds=bounds, minimal=True)
                hit = found.status == ATTACKED
                gap = np.abs(found.distances[hit] - sizes[hit])
                bad += bool(np.any(~hit & (sizes <= 0.3)) or np.any(gap > 2e-6))
    return {"cases": cases, "disagreements": bad}


def pipelines() -> dict[str, int]:
    cases = bad = 0
    for seed in range(3):
        rng = np.random.default_rng(10 + seed)
        rows = rng.random((300, 10)) * rng.random(10) * 5
        pipe = make_pipeline(StandardScaler(), PCA(4, whiten=bool(seed % 2), random_state=0),
                             KMeans(8, n_init=1, random_state=0)).fit(rows)  # fmt: skip
        mapping = rng.integers(0, 3, 8)
        mapping[:3] = [0, 1, 2]
        x = torch.from_numpy(rows[:30])
        exact = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", exact=True, bounds=None)
        sizes = exact(x).distances.numpy()
        for eps in (0.05, 0.2):
            cases += 1
            status = verify_kmeans_linf(pipe, x, eps, mapping, bounds=(-np.inf, np.inf)).status
            bad += not np.array_equal(status == ROBUST, sizes > eps)
    return {"cases": cases, "disagreements": bad}


def relu_networks() -> dict[str, int]:
    cases = bad = 0
    eps = 0.04
    step = torch.linspace(-eps, eps, 161)
    offsets = torch.stack(torch.meshgrid(step, step, indexing="ij"), -1).reshape(-1, 2)
    mapping = np.array([0, 1, 2, 0, 1])
    for seed in range(4):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(),
                            nn.Linear(10, 3))  # fmt: skip
        model = Model(net.eval(), preprocessing={"mean": 0.5, "std": 0.2})
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            embedding = model(torch.rand(300, 2, generator=g)).double().numpy()
        km = KMeans(5, n_init=1, random_state=0).fit(embedding)

        def classes(v: torch.Tensor, km: KMeans = km, model: Model = model) -> np.ndarray:
            with torch.no_grad():
                return mapping[km.predict(model(v).double().numpy())]

        x = torch.rand(30, 2, generator=g)
        found = verify_kmeans_linf(km, x, eps, mapping=mapping, features=model)
        least = verify_kmeans_linf(km, x, eps, mapping=mapping, features=model, minimal=True)
        bad += not np.array_equal(found.status, least.status) or bool(
            np.any(found.status == UNKNOWN)
        )
        own = classes(x)
        for i in range(len(x)):
            cases += 1
            box = (x[i] + offsets).clamp(0, 1)
            hits = classes(box) != own[i]
            wrong = hits.any() and found.status[i] != ATTACKED
            if found.status[i] == ATTACKED:
                wrong |= classes(found.x_adv[i : i + 1])[0] == own[i]
                wrong |= classes(least.x_adv[i : i + 1])[0] == own[i]
            if hits.any():
                nearest = float((box[hits] - x[i]).abs().max(1).values.min())
                wrong |= least.distances[i] > nearest + 1e-6
            bad += bool(wrong)
    return {"cases": cases, "disagreements": bad}


def main() -> None:
    print(json.dumps({"no_network": no_network(), "pipelines": pipelines(),
                      "relu_networks": relu_networks()}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
