"""Crussell & Kegelmeyer (2015), "Attacking DBSCAN for fun and profit", SDM: merge two
DBSCAN clusters by injecting points between them.

DBSCAN (eps, min_samples, the point itself counted as scikit-learn does) joins two clusters
through a chain of *core* points, each within eps of the next. Injected points spaced h apart
on the segment between the closest core points a in A and b in B (distance D) are core when
each has min_samples points within eps; a point in the middle of the line sees itself and
floor(eps / h) neighbours on each side, so the line is a chain of core points when

    2 floor(eps / h) + 1 >= min_samples,  i.e.  h <= eps / r,  r = max(1, ceil((min_samples - 1) / 2)),

and m = ceil(r D / eps) - 1 evenly spaced points (``merge_count``) merge A and B, while
m - 1 leave the middle of the line short of core points when D > 2 eps (no cluster point
helps there). The paper's own construction is not public in text here; this one is derived
from DBSCAN's definition and tested, and the attack reports both the predicted count and
whether the victim merged.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from advlab.attacks.clustering.base import (
    ClusteringAttack,
    ClusteringAttackResult,
    check_data,
    nearest_pair,
)
from advlab.attacks.clustering.biggio import merged, segment_points
from advlab.utils.validation import check_number


def merge_count(distance: float, eps: float, min_samples: int) -> int:
    """Points on a line that join two DBSCAN clusters whose closest core points are
    ``distance`` apart: ceil(r D / eps) - 1 with r = max(1, ceil((min_samples - 1) / 2)).

    Parameters
    ----------
    distance : float
        D, distance between the closest core points of the two clusters (>= 0).
    eps : float
        DBSCAN's neighbourhood radius (> 0).
    min_samples : int
        DBSCAN's core threshold, the point itself included (>= 1).

    Returns
    -------
    int
        The predicted number of injected points (0 when D <= eps... and r = 1).
    """
    distance = check_number("distance", distance, 0)
    eps = check_number("eps", eps, 0, low_open=True)
    min_samples = int(check_number("min_samples", min_samples, 1, integer=True))
    r = max(1, math.ceil((int(min_samples) - 1) / 2))
    return max(0, math.ceil(r * distance / eps) - 1)


class CrussellMerge(ClusteringAttack):
    """Merge two DBSCAN clusters with a line of injected core points (Crussell & Kegelmeyer).

    Parameters
    ----------
    clusterer : DBSCAN-like estimator
        The victim; must expose ``eps`` and ``min_samples`` (scikit-learn's ``DBSCAN``).
    n_points : int or None, default=None
        Points to inject; None: the predicted ``merge_count``.
    clusters : (int, int) or None, default=None
        The two clusters (clean ids) to merge; None: the two largest.
    """

    name = "crussell"

    def __init__(
        self, clusterer: Any, n_points: int | None = None, clusters: tuple[int, int] | None = None
    ) -> None:
        super().__init__(clusterer)
        for attr in ("eps", "min_samples"):
            if not hasattr(clusterer, attr):
                raise TypeError(f"the victim must be DBSCAN-like, with an {attr!r} attribute")
        if n_points is not None:
            n_points = int(check_number("n_points", n_points, 0, integer=True))
        if clusters is not None and (len(clusters) != 2 or clusters[0] == clusters[1]):
            raise ValueError(f"clusters={clusters} must be two distinct clusters of X")
        self.n_points = n_points
        self.clusters = clusters

    def _queries(self, n_clusters: int) -> int:
        """The reference fit and the fit of the poisoned data: 2."""
        return 2

    def attack(self, X: Any, random_state: Any = None) -> ClusteringAttackResult:
        """Inject the line of points between the two clusters of ``X`` (n, d).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The clean data, finite.
        random_state : None
            Unused (deterministic).

        Returns
        -------
        ClusteringAttackResult
            Injected rows appended; ``meta``: ``predicted`` (``merge_count``), ``merged``,
            ``gap`` D and the clusters.
        """
        start = time.perf_counter()
        data = check_data(X)
        self.n_refits = 0
        reference = self.fit_predict(data)
        ids, sizes = np.unique(reference[reference != -1], return_counts=True)
        if len(ids) < 2:
            raise ValueError(f"DBSCAN found {len(ids)} cluster(s) in X; merging needs two")
        a, b = (
            ids[np.argsort(-sizes, kind="stable")[:2]] if self.clusters is None else self.clusters
        )
        core = np.zeros(len(data), dtype=bool)
        core[getattr(self.clusterer, "core_sample_indices_", np.arange(len(data)))] = True
        A = np.flatnonzero((reference == a) & core)
        B = np.flatnonzero((reference == b) & core)
        if len(A) == 0 or len(B) == 0:
            raise ValueError(f"clusters ({a}, {b}) must be two clusters with core points")
        i, j, gap = nearest_pair(data[A], data[B])
        predicted = merge_count(gap, self.clusterer.eps, self.clusterer.min_samples)
        m = predicted if self.n_points is None else int(self.n_points)
        points = segment_points(data[A[i]], data[B[j]], m)
        poisoned = np.vstack([data, points])
        labels = self.fit_predict(poisoned)
        joined = merged(reference, labels[: len(data)], int(a), int(b))
        return self._result(
            start, data=poisoned, clean_labels=reference, labels=labels,
            touched=np.zeros(0, dtype=np.int64), delta=np.zeros((0, data.shape[1])),
            is_injected=np.r_[np.zeros(len(data), bool), np.ones(m, bool)],
            objective=np.asarray([float(joined)]),
            meta={"predicted": predicted, "n_points": m, "merged": joined, "gap": gap,
                  "clusters": (int(a), int(b))},
        )  # fmt: skip
