"""Biggio, Pillai, Rota Bulò, Ariu, Pelillo & Roli (2013), "Is data clustering in adversarial
settings secure?", AISec: poisoning (bridges) and obfuscation against single-linkage
hierarchical clustering.

**Bridges.** Single linkage merges two groups as soon as a chain of points joins them with
every link shorter than the cut height h. m points spaced evenly on the segment between the
closest pair of points (p in A, q in B, ||p - q|| = D) leave links of D / (m + 1), so the two
clusters merge once m >= floor(D / h) (scikit-learn merges while the linkage distance is
below ``distance_threshold``): ``bridge_count``. Two strategies:

* ``"line"``: the m points on that segment (the construction above);
* ``"best"``: the paper's greedy "Bridge (Best)": one point at a time, each the candidate that
  most increases the distance between the clean and the poisoned clustering,
  d = ||Y Y^T - Y' Y'^T||_F / n on the original points (``co_membership_distance``), the
  candidates being the midpoints of the closest pair of every two current clusters.

**Obfuscation.** A point x the attacker wants hidden in cluster C is moved towards its nearest
member of C, x' = x + a (c - x), with the smallest a in [0, 1] (bisection, ``n_bisect`` queries)
for which the victim puts x' with C's points.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np

from advlab.attacks.clustering.base import (
    ClusteringAttack,
    ClusteringAttackResult,
    check_data,
    closest_pair,
    nearest_pair,
)
from advlab.metrics import co_membership_distance
from advlab.utils.validation import check_number


def bridge_count(distance: float, threshold: float) -> int:
    """Evenly spaced points that merge two single-linkage clusters ``distance`` apart when the
    dendrogram is cut at ``threshold``: the smallest m with distance / (m + 1) < threshold.

    Parameters
    ----------
    distance : float
        Distance D between the closest pair of points of the two clusters (>= 0).
    threshold : float
        Cut height h (> 0).

    Returns
    -------
    int
        floor(D / h) (0 when the clusters are already joined).
    """
    distance = check_number("distance", distance, 0)
    threshold = check_number("threshold", threshold, 0, low_open=True)
    return math.floor(distance / threshold)


def segment_points(p: np.ndarray, q: np.ndarray, m: int) -> np.ndarray:
    """m points evenly spaced strictly between p and q (gaps of ||p - q|| / (m + 1))."""
    a = np.arange(1, m + 1, dtype=np.float64)[:, None] / (m + 1)
    return p[None] + a * (q - p)[None]


class BiggioBridge(ClusteringAttack):
    """Bridge poisoning of (single-linkage) clustering (Biggio et al. 2013).

    Parameters
    ----------
    clusterer : estimator with fit_predict
        The victim (e.g. ``AgglomerativeClustering(linkage="single", ...)``).
    n_points : int, default=10
        Points to inject (>= 0).
    strategy : {"line", "best"}, default="line"
        Evenly spaced points between two clusters, or the greedy Bridge (Best).
    clusters : (int, int) or None, default=None
        For ``"line"``: the two clusters (ids of the clean clustering) to bridge; None: the
        two with the closest centroids.
    """

    name = "biggio"

    def __init__(
        self,
        clusterer: Any,
        n_points: int = 10,
        strategy: Literal["line", "best"] = "line",
        clusters: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(clusterer)
        self.n_points = int(check_number("n_points", n_points, 0, integer=True))
        if strategy not in ("line", "best"):
            raise ValueError(f"strategy must be 'line' or 'best', got {strategy!r}")
        self.strategy = strategy
        self.clusters = clusters

    def _line(self, data: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        a, b = closest_pair(data, reference) if self.clusters is None else self.clusters
        A, B = np.flatnonzero(reference == a), np.flatnonzero(reference == b)
        if len(A) == 0 or len(B) == 0 or a == b:
            raise ValueError(f"clusters={self.clusters} must be two distinct clusters of X")
        i, j, gap = nearest_pair(data[A], data[B])
        points = segment_points(data[A[i]], data[B[j]], self.n_points)
        return points, {"clusters": (int(a), int(b)), "gap": gap, "ends": (int(A[i]), int(B[j]))}

    def _greedy(self, data: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, list[float]]:
        n, current, labels = len(data), data, reference
        history = []
        for _ in range(self.n_points):
            ids = np.unique(labels)
            candidates = []
            for x, a in enumerate(ids):
                for b in ids[x + 1 :]:
                    A, B = current[labels == a], current[labels == b]
                    i, j, _ = nearest_pair(A, B)
                    candidates.append((A[i] + B[j]) / 2)
            if not candidates:
                break
            batch = np.stack([np.vstack([current, c[None]]) for c in candidates])
            trial = self.fit_predict_many(batch)
            scores = [co_membership_distance(reference, lab[:n]) for lab in trial]
            best = int(np.argmax(scores))
            current, labels = batch[best], trial[best]
            history.append(scores[best])
        return current[n:], history

    def _queries(self, n_clusters: int) -> int:
        """The reference fit and the final one; ``"best"`` adds, per injected point, one fit
        per pair of clusters: 2 + n_points k (k - 1) / 2 (k held at ``n_clusters``)."""
        pairs = n_clusters * (n_clusters - 1) // 2 if self.strategy == "best" else 0
        return 2 + self.n_points * pairs

    def attack(self, X: Any, random_state: Any = None) -> ClusteringAttackResult:
        """Inject the bridge points into ``X`` (n, d).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The clean data, finite.
        random_state : None
            Unused (both strategies are deterministic); accepted for a common signature.

        Returns
        -------
        ClusteringAttackResult
            Injected rows appended; ``objective`` is d after each greedy point (``"best"``)
            or the final d (``"line"``); ``meta['gap']`` the bridged distance (``"line"``).
        """
        start = time.perf_counter()
        data = check_data(X)
        self.n_refits = 0
        reference = self.fit_predict(data)
        meta: dict[str, Any] = {"strategy": self.strategy, "n_points": self.n_points}
        if self.strategy == "line":
            points, extra = self._line(data, reference)
            meta.update(extra)
            history: list[float] = []
        else:
            points, history = self._greedy(data, reference)
        poisoned = np.vstack([data, points.reshape(-1, data.shape[1])])
        labels = self.fit_predict(poisoned)
        if self.strategy == "line":
            history = [co_membership_distance(reference, labels[: len(data)])]
        injected = np.r_[np.zeros(len(data), bool), np.ones(len(points), bool)]
        return self._result(
            start, data=poisoned, clean_labels=reference, labels=labels,
            touched=np.zeros(0, dtype=np.int64), delta=np.zeros((0, data.shape[1])),
            is_injected=injected, objective=np.asarray(history), meta=meta,
        )  # fmt: skip


def merged(clean_labels: np.ndarray, labels: np.ndarray, a: int, b: int) -> bool:
    """Whether the points of clean clusters ``a`` and ``b`` now mostly share one cluster.

    Parameters
    ----------
    clean_labels : ndarray of shape (n_samples,)
        The clean clustering.
    labels : ndarray of shape (n_samples,)
        The clustering of the same points after the attack.
    a, b : int
        Two cluster ids of ``clean_labels``.

    Returns
    -------
    bool
        True when the most common new id of a's points is that of b's points.
    """
    la = np.bincount(labels[clean_labels == a] - labels.min()).argmax()
    lb = np.bincount(labels[clean_labels == b] - labels.min()).argmax()
    return bool(la == lb)


class BiggioObfuscation(ClusteringAttack):
    """Hide a point in a chosen cluster by the smallest move towards it (Biggio et al. 2013).

    Parameters
    ----------
    clusterer : estimator with fit_predict
        The victim.
    target_cluster : int
        Id (clean clustering) of the cluster to hide the point in.
    n_bisect : int, default=12
        Bisection steps on the move's length.
    """

    name = "biggio-obfuscation"

    def __init__(self, clusterer: Any, target_cluster: int, n_bisect: int = 12) -> None:
        super().__init__(clusterer)
        self.target_cluster = int(target_cluster)
        self.n_bisect = int(check_number("n_bisect", n_bisect, 1, integer=True))

    def attack(self, X: Any, index: int, random_state: Any = None) -> ClusteringAttackResult:
        """Move row ``index`` of ``X`` into ``target_cluster``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The clean data.
        index : int
            The row to hide.
        random_state : None
            Unused (deterministic).

        Returns
        -------
        ClusteringAttackResult
            ``delta`` the move; ``meta['hidden']`` whether it succeeded, ``meta['a']`` the
            fraction of the way to the nearest member of the target cluster.
        """
        start = time.perf_counter()
        data = check_data(X)
        if not 0 <= index < len(data):
            raise ValueError(f"index={index} is not a row of X (n={len(data)})")
        self.n_refits = 0
        reference = self.fit_predict(data)
        members = np.flatnonzero(
            (reference == self.target_cluster) & (np.arange(len(data)) != index)
        )
        if len(members) == 0:
            raise ValueError(f"target_cluster={self.target_cluster} has no other member")
        c = data[members[np.argmin(((data[members] - data[index]) ** 2).sum(1))]]

        def hidden(a: float) -> tuple[bool, np.ndarray, np.ndarray]:
            moved = data.copy()
            moved[index] = data[index] + a * (c - data[index])
            lab = self.fit_predict(moved)
            return (
                bool(np.bincount(lab[members] - lab.min()).argmax() == lab[index] - lab.min()),
                moved,
                lab,
            )

        lo, hi = 0.0, 1.0
        ok, best, best_labels = hidden(hi)
        history = []
        if ok and not hidden(lo)[0]:
            for _ in range(self.n_bisect):
                mid = (lo + hi) / 2
                good, moved, lab = hidden(mid)
                if good:
                    hi, best, best_labels = mid, moved, lab
                else:
                    lo = mid
                history.append(hi)
        elif ok:
            hi, best, best_labels = 0.0, data.copy(), reference
        return self._result(
            start, data=best, clean_labels=reference, labels=best_labels,
            touched=np.array([index]), delta=(best[index] - data[index])[None],
            is_injected=np.zeros(len(data), bool), objective=np.asarray(history),
            meta={"hidden": ok, "a": hi if ok else float("nan"),
                  "target_cluster": self.target_cluster},
        )  # fmt: skip
