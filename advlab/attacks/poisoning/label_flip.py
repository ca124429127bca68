"""Hyper-parameter poisoning of a seeded k-means: flip the labels of its seed sample.

The seeded k-means (:class:`advlab.cluster.seeded.SeededKMeans`) starts each cluster at the mean
of one class's seed points and names the cluster after that class. Flipping a ratio of the seed
labels moves those means; past some ratio whole clusters take the wrong name (Poison Cluster:
about 0.7 on Iris and 0.6 on breast cancer). :func:`flip_ratio_sweep` measures that ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from advlab.attacks.poisoning.base import PoisonedData, check_ratio, check_xy
from advlab.cluster.seeded import SeededKMeans, seed_sample
from advlab.metrics.stats import mean_ci


def seed_label_flip(X: Any, y_partial: Any, ratio: float, random_state: Any = None) -> PoisonedData:
    """Flip a ``ratio`` of the seed labels (entries >= 0 of ``y_partial``) to another class,
    drawn uniformly among the other seed classes. Features untouched, nothing injected."""
    data, labels = check_xy(X, y_partial)
    ratio = check_ratio("ratio", ratio)
    rng = check_random_state(random_state)
    seeds = np.flatnonzero(labels >= 0)
    classes = np.unique(labels[seeds])
    if len(classes) < 2:
        raise ValueError("flipping needs seed labels of at least 2 classes")
    chosen = rng.choice(seeds, size=round(ratio * len(seeds)), replace=False)
    flipped = labels.copy()
    for i in chosen:
        flipped[i] = rng.choice(classes[classes != labels[i]])
    meta = {"attack": "seed_label_flip", "ratio": ratio, "flipped": np.sort(chosen)}
    return PoisonedData(data, flipped, np.zeros(len(data), dtype=bool), meta)


def flip_ratio_sweep(
    X: Any,
    y: Any,
    ratios: Any = None,
    n_seeds: int = 10,
    seed_fraction: float = 0.2,
    level: float = 0.95,
) -> dict[str, Any]:
    """Accuracy of the seeded k-means against the true labels for each flip ratio and seed.

    The collapse ratio of one seed is the smallest ratio whose accuracy falls to the midpoint
    between the clean accuracy and chance (1 / n_classes) or below; the result gives its mean
    and ``level`` confidence half-width over seeds."""
    data, labels = check_xy(X, y)
    ratios = (
        np.round(np.arange(0.0, 1.0001, 0.1), 10)
        if ratios is None
        else np.asarray(ratios, dtype=float)
    )
    n_classes = len(np.unique(labels))
    acc = np.zeros((n_seeds, len(ratios)))
    for s in range(n_seeds):
        partial = seed_sample(labels, seed_fraction, random_state=s)
        for j, ratio in enumerate(ratios):
            poisoned = seed_label_flip(data, partial, float(ratio), random_state=1000 * s + j)
            pred = SeededKMeans().fit(data, poisoned.labels).labels_
            acc[s, j] = float(np.mean(pred == labels))
    collapse = []
    for row in acc:
        midpoint = (row[0] + 1.0 / n_classes) / 2
        below = np.flatnonzero(row <= midpoint)
        collapse.append(float(ratios[below[0]]) if len(below) else float("nan"))
    mean, half = (
        mean_ci(np.asarray(collapse)[~np.isnan(collapse)], level)
        if not np.isnan(collapse).all()
        else (np.nan, np.nan)
    )
    acc_mean, acc_half = mean_ci(acc, level)
    return {"ratios": ratios.tolist(), "accuracy": acc.tolist(), "accuracy_mean": acc_mean.tolist(),
            "accuracy_ci": acc_half.tolist(), "collapse_per_seed": collapse,
            "collapse_ratio": float(mean), "collapse_ci": float(half)}  # fmt: skip
