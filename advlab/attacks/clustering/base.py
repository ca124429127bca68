"""What every attack on a clusterer shares: the black-box oracle, its refit counter, the result.

The attacker only queries the victim: ``fit_predict`` on a (poisoned) dataset returns cluster
ids, as in Cinà et al.'s "clustering as a service" threat model. A clusterer that also has
``fit_predict_many`` (advlab's ``KMeans`` with an array ``init``) gets a whole population of
candidate datasets in one batched call; any other is refitted one dataset at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClusteringAttackResult:
    """A poisoned dataset and how it was made.

    Attributes
    ----------
    data : ndarray of shape (n + m, n_features)
        The n original rows (the touched ones perturbed in place), then the m injected rows.
    clean_labels : ndarray of shape (n,)
        The victim's clustering of the clean data.
    labels : ndarray of shape (n + m,)
        The victim's clustering of ``data``.
    touched : ndarray of int
        Indices of the original rows the attack perturbed.
    delta : ndarray of shape (len(touched), n_features)
        Their perturbation (poisoned minus clean rows).
    is_injected : ndarray of bool, shape (n + m,)
        Which rows the attack added.
    objective : ndarray of shape (n_steps,)
        The attack's objective after each generation or step (best so far for search attacks).
    n_refits : int
        How many times the victim was fitted.
    seconds : float
        Wall time of the attack.
    meta : dict
        The attack's name, parameters and by-products.
    """

    data: np.ndarray
    clean_labels: np.ndarray
    labels: np.ndarray
    touched: np.ndarray
    delta: np.ndarray
    is_injected: np.ndarray
    objective: np.ndarray
    n_refits: int
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_injected(self) -> int:
        return int(self.is_injected.sum())

    @property
    def original_labels(self) -> np.ndarray:
        """The poisoned clustering of the original rows only."""
        return self.labels[~self.is_injected]

    @property
    def refits_per_second(self) -> float:
        return self.n_refits / self.seconds if self.seconds > 0 else float("nan")


def check_data(X: Any) -> np.ndarray:
    """Float64 (n, d) data, finite, n >= 2; raises ValueError naming the problem."""
    data = np.asarray(X, dtype=np.float64)
    if data.ndim != 2 or len(data) < 2:
        raise ValueError(f"X must have shape (n_samples >= 2, n_features), got {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError("X contains NaN or infinite values")
    return data


def check_box(box: Any) -> tuple[float, float] | None:
    """None (unbounded) or (low, high) with low < high."""
    if box is None:
        return None
    lo, hi = (float(v) for v in box)
    if not lo < hi:
        raise ValueError(f"box={box} must be (low, high) with low < high")
    return lo, hi


def check_inside_box(data: np.ndarray, box: tuple[float, float] | None) -> None:
    """``ValueError`` unless every entry of ``data`` lies in ``box`` (up to 1e-6 of its width):
    an attack that clips its points to the box would otherwise move them by more than its
    budget."""
    if box is None:
        return
    slack = 1e-6 * (box[1] - box[0])
    if data.min() < box[0] - slack or data.max() > box[1] + slack:
        raise ValueError(
            f"X ranges over [{data.min():.4g}, {data.max():.4g}], outside box={box}; pass the "
            "data's own range as box, or box=None for unbounded data"
        )


def closest_rows(centers: np.ndarray) -> tuple[int, int]:
    """Indices (i < j) of the two closest rows of ``centers`` (k >= 2 centroids)."""
    d2 = ((centers[:, None] - centers[None]) ** 2).sum(-1) + np.diag(np.full(len(centers), np.inf))
    a, b = np.unravel_index(np.argmin(d2), d2.shape)
    return int(min(a, b)), int(max(a, b))


def closest_pair(data: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """The two clusters (ids of ``labels``, noise -1 excluded) whose centroids are closest."""
    ids = [c for c in np.unique(labels) if c != -1]
    if len(ids) < 2:
        raise ValueError(f"the victim found {len(ids)} cluster(s); an attack needs two")
    a, b = closest_rows(np.stack([data[labels == c].mean(0) for c in ids]))
    return int(ids[a]), int(ids[b])


def nearest_pair(A: np.ndarray, B: np.ndarray) -> tuple[int, int, float]:
    """Indices (i in A, j in B) of the closest pair of rows and their distance."""
    d2 = (A**2).sum(1)[:, None] - 2 * A @ B.T + (B**2).sum(1)[None]
    i, j = np.unravel_index(np.argmin(d2), d2.shape)
    return int(i), int(j), float(np.sqrt(max(d2[i, j], 0.0)))


class ClusteringAttack:
    """Base class: holds the victim and counts its refits.

    Parameters
    ----------
    clusterer : estimator with fit_predict
        The victim, queried as a black box (its parameters, e.g. a fixed random_state, are the
        caller's; an attack on a clusterer whose output is random measures that randomness too).
    """

    name = "clustering-attack"

    def __init__(self, clusterer: Any) -> None:
        if not callable(getattr(clusterer, "fit_predict", None)):
            raise TypeError(
                f"clusterer must have a fit_predict method, got {type(clusterer).__name__}"
            )
        self.clusterer = clusterer
        self.n_refits = 0

    def queries(self, n_clusters: int) -> int:
        """Fits of the victim one ``attack`` makes (its reference fit included), for a victim
        that finds ``n_clusters`` clusters: what ``advlab plan`` counts (each attack's
        ``_queries`` states its count).

        Parameters
        ----------
        n_clusters : int
            Clusters of the clean clustering.

        Returns
        -------
        int
        """
        return self._queries(n_clusters)

    def _queries(self, n_clusters: int) -> int:
        raise NotImplementedError(f"{type(self).__name__} does not count its queries")

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        """One query: the victim's cluster ids of ``X``."""
        self.n_refits += 1
        return np.asarray(self.clusterer.fit_predict(X))

    def fit_predict_many(self, Xs: np.ndarray) -> np.ndarray:
        """One query per dataset of ``Xs`` (P, n, d), batched when the victim allows."""
        self.n_refits += len(Xs)
        batched = getattr(self.clusterer, "fit_predict_many", None)
        if callable(batched):
            return np.asarray(batched(Xs))
        return np.stack([np.asarray(self.clusterer.fit_predict(x)) for x in Xs])

    def _result(self, start: float, **fields: Any) -> ClusteringAttackResult:
        fields.setdefault("meta", {})
        fields["meta"] = {"attack": self.name, **fields["meta"]}
        return ClusteringAttackResult(
            n_refits=self.n_refits, seconds=time.perf_counter() - start, **fields
        )
