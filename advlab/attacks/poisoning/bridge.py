"""Bridge points between the two closest clusters (Poison Cluster's "cluster poisoning"):

    x = alpha * p_i + (1 - alpha) * p_j + N(0, noise^2 I),   alpha ~ U(0.3, 0.7),

p_i and p_j drawn from the two k-means clusters whose centroids are closest. At 0-50 % of the
data they blur the boundary, merging the two clusters or splitting another to make room.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from advlab.attacks.clustering.base import closest_rows
from advlab.attacks.poisoning.base import PoisonedData, append, check_ratio, check_xy
from advlab.cluster import KMeans


def bridge_points(
    X: Any,
    y: Any,
    fraction: float = 0.2,
    n_clusters: int = 3,
    alpha_range: tuple[float, float] = (0.3, 0.7),
    noise: float = 0.2,
    label: int = -1,
    random_state: Any = None,
) -> PoisonedData:
    """Inject ``round(fraction * n)`` bridge points (label ``label``, -1 = none).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clean data, finite.
    y : array-like of shape (n_samples,)
        Its labels.
    fraction : float, default=0.2
        Injected points as a share of n_samples, in [0, 1].
    n_clusters : int, default=3
        k of the k-means whose two closest centroids are bridged, in 2..n_samples.
    alpha_range : (float, float), default=(0.3, 0.7)
        Range of alpha in alpha p_i + (1 - alpha) p_j, within [0, 1].
    noise : float, default=0.2
        Std of the Gaussian noise added to each bridge point, in the units of X.
    label : int, default=-1
        Label of the injected points (-1: none).
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.

    Returns
    -------
    PoisonedData
        The poisoned data and labels, the mask of injected points and the attack's metadata.
    """
    data, labels = check_xy(X, y)
    fraction = check_ratio("fraction", fraction)
    if n_clusters < 2 or n_clusters > len(data):
        raise ValueError(f"n_clusters={n_clusters} must lie in [2, n_samples={len(data)}]")
    lo, hi = alpha_range
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"alpha_range={alpha_range} must satisfy 0 <= low <= high <= 1")
    rng = check_random_state(random_state)
    km = KMeans(n_clusters, random_state=int(rng.randint(2**31 - 1))).fit(data)
    c = km.cluster_centers_.astype(np.float64)
    a, b = closest_rows(c)
    members_a, members_b = np.flatnonzero(km.labels_ == a), np.flatnonzero(km.labels_ == b)
    m = round(fraction * len(data))
    alpha = rng.uniform(lo, hi, size=(m, 1))
    p_i, p_j = data[rng.choice(members_a, m)], data[rng.choice(members_b, m)]
    points = alpha * p_i + (1 - alpha) * p_j + rng.normal(0.0, noise, size=(m, data.shape[1]))
    meta = {"attack": "bridge_points", "clusters": (int(a), int(b)), "fraction": fraction}
    return append(data, labels, points, np.full(m, label), meta)
