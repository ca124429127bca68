"""Hyper-parameter poisoning of a seeded k-means: flip the labels of its seed sample.

The seeded k-means (``advlab.cluster.seeded.SeededKMeans``) starts each cluster at the mean
of one class's seed points and names the cluster after that class. Flipping a ratio of the seed
labels moves those means; past some ratio whole clusters take the wrong name (Poison Cluster:
about 0.7 on Iris and 0.6 on breast cancer); the poison-cluster experiment's
``flip_ratio_sweep`` measures that ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from advlab.attacks.poisoning.base import PoisonedData, check_ratio, check_xy


def seed_label_flip(X: Any, y_partial: Any, ratio: float, random_state: Any = None) -> PoisonedData:
    """Flip a ``ratio`` of the seed labels (entries >= 0 of ``y_partial``) to another class,
    drawn uniformly among the other seed classes. Features untouched, nothing injected.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The data.
    y_partial : array-like of shape (n_samples,)
        Seed labels, -1 for unlabelled points.
    ratio : float
        Share of the seed labels flipped, in [0, 1].
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.

    Returns
    -------
    PoisonedData
        The poisoned data and labels, the mask of injected points and the attack's metadata.
    """
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
