"""k-means variants that discard outliers, as defenses against poisoning.

Each is a scikit-learn-style estimator with ``fit``/``predict`` and exposes what it discarded:
``outliers_`` (bool mask over the training points), besides ``cluster_centers_``, ``labels_``
(nearest centre of every point, outliers included) and ``inertia_`` (on the kept points).

- ``KMeansMinusMinus`` (Chawla & Gionis, SDM 2013): every Lloyd iteration sets aside the
  ``n_outliers`` points farthest from their centre before recomputing the means (best of
  ``n_init`` uniform starts).
- ``TrimmedKMeans`` (Cuesta-Albertos et al., Ann. Stat. 1997): the same with a trimmed
  fraction ``trim`` of the points and ``n_init`` restarts, keeping the lowest trimmed cost.
- ``NKMeans`` (Im, Qaem & Moseley, AISTATS 2020, "Fast noise removal for k-means"): noise
  removal first, k-means after (details in the class).
- ``SanitizedKMeans``: drop what an outlier detector flags (IsolationForest, LOF, or any
  object with ``fit_predict`` returning -1 for outliers, as PyOD and scikit-learn do), then k-means.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from advlab.cluster import KMeans
from advlab.cluster._validation import check_n_clusters
from advlab.cluster.kmeans import _check_2d, assign

_COMMON: dict[str, list[Any]] = {
    "n_clusters": [Interval(Integral, 1, None, closed="left")],
    "random_state": ["random_state"],
}
_LLOYD: dict[str, list[Any]] = {
    "n_init": [Interval(Integral, 1, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
}


def _check_kept(n_clusters: int, n_samples: int, n_discarded: int, what: str) -> None:
    """k clusters need k points left after discarding ``n_discarded`` of ``n_samples``."""
    if n_samples - n_discarded < n_clusters:
        raise ValueError(
            f"{what} discards {n_discarded} of n_samples={n_samples} points, leaving "
            f"{n_samples - n_discarded} for n_clusters={n_clusters}; discard fewer points "
            "or ask for fewer clusters"
        )


class _OutlierAwareKMeans(ClusterMixin, BaseEstimator):
    """Shared fitted state: ``cluster_centers_``, ``labels_`` (nearest centre of every point,
    outliers included), ``outliers_`` (bool mask), ``inertia_`` (on the kept points),
    ``n_iter_``; ``predict`` assigns to the nearest centre."""

    cluster_centers_: np.ndarray
    n_clusters: int

    def _validated(self, X: Any) -> torch.Tensor:
        Xn = _check_2d(X, estimator=self)
        check_n_clusters(self.n_clusters, len(Xn))
        return torch.from_numpy(Xn)

    def _finish(
        self, X: torch.Tensor, centres: torch.Tensor, outliers: np.ndarray, n_iter: int
    ) -> None:
        labels, d2 = assign(X, centres.to(X.dtype))
        self.cluster_centers_ = centres.to(X.dtype).cpu().numpy()
        self.labels_ = labels.cpu().numpy()
        self.outliers_ = outliers
        self.inertia_ = float(d2.double().cpu().numpy()[~outliers].sum())
        self.n_iter_ = n_iter

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "cluster_centers_")
        Xt = torch.from_numpy(_check_2d(X, estimator=self, reset=False))
        labels, _ = assign(Xt, torch.as_tensor(self.cluster_centers_).to(Xt.dtype))
        return labels.cpu().numpy()


def _trimmed_lloyd(
    X: torch.Tensor, centres: torch.Tensor, n_out: int, max_iter: int, tol: float
) -> tuple[torch.Tensor, np.ndarray, float, int]:
    """Lloyd's iterations that ignore the ``n_out`` points farthest from their centre:
    the means of each iteration are taken over the kept points (Chawla & Gionis, Alg. 1)."""
    k = len(centres)
    outliers = torch.zeros(len(X), dtype=torch.bool)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        labels, d2 = assign(X, centres)
        outliers = torch.zeros(len(X), dtype=torch.bool)
        if n_out:
            outliers[torch.topk(d2, n_out).indices] = True
        keep = ~outliers
        sums = torch.zeros_like(centres, dtype=torch.float64).index_add_(
            0, labels[keep], X[keep].double()
        )
        counts = torch.bincount(labels[keep], minlength=k).double()
        new = torch.where(
            counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres.double()
        ).to(X.dtype)
        shift = float(((new.double() - centres.double()) ** 2).sum())
        centres = new
        if shift <= tol:
            break
    _, d2 = assign(X, centres)
    cost = float(d2.double()[~outliers].sum())
    return centres, outliers.numpy(), cost, n_iter


def _best_trimmed_fit(
    X: torch.Tensor,
    k: int,
    n_out: int,
    n_init: int,
    max_iter: int,
    tol: float,
    random_state: Any,
) -> tuple[torch.Tensor, np.ndarray, int]:
    """Best (lowest trimmed cost) of ``n_init`` runs from k distinct uniformly drawn points.

    Uniform starts, not k-means++: D^2 sampling favours exactly the far outliers these methods
    must ignore, and a centre sitting on an outlier never lets it be trimmed."""
    rng = check_random_state(random_state)
    best = None
    for _ in range(n_init):
        start = X[torch.as_tensor(rng.choice(len(X), k, replace=False))].clone()
        run = _trimmed_lloyd(X, start, n_out, max_iter, tol)
        if best is None or run[2] < best[2]:
            best = run
    assert best is not None
    return best[0], best[1], best[3]


class KMeansMinusMinus(_OutlierAwareKMeans):
    """k-means-- : k clusters and ``n_outliers`` outliers, jointly (Chawla & Gionis 2013).

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters k.
    n_outliers : int, default=0
        Points set aside as outliers at every iteration, >= 0.
    n_init : int, default=10
        Uniform random starts; the best (lowest trimmed inertia) is kept.
    max_iter : int, default=300
        Most iterations per start.
    tol : float, default=1e-4
        Stop when the squared centre shift falls below tol (absolute, in squared units of X).
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **_COMMON, **_LLOYD, "n_outliers": [Interval(Integral, 0, None, closed="left")],
    }  # fmt: skip

    def __init__(self, n_clusters: int = 8, *, n_outliers: int = 0, n_init: int = 10,
                 max_iter: int = 300, tol: float = 1e-4, random_state: Any = None) -> None:  # fmt: skip
        self.n_clusters, self.n_outliers, self.n_init = n_clusters, n_outliers, n_init
        self.max_iter, self.tol, self.random_state = max_iter, tol, random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> KMeansMinusMinus:
        Xt = self._validated(X)
        _check_kept(self.n_clusters, len(Xt), self.n_outliers, f"n_outliers={self.n_outliers}")
        centres, outliers, n_iter = _best_trimmed_fit(Xt, self.n_clusters, self.n_outliers,
            self.n_init, self.max_iter, self.tol, self.random_state)  # fmt: skip
        self._finish(Xt, centres, outliers, n_iter)
        return self


class TrimmedKMeans(_OutlierAwareKMeans):
    """Trimmed k-means: discard a fraction ``trim`` in [0, 1) of the points (rounded);
    best of ``n_init`` uniform starts.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters k.
    trim : float, default=0.05
        Share of the points discarded (rounded), in [0, 1).
    n_init : int, default=10
        Uniform random starts; the best (lowest trimmed inertia) is kept.
    max_iter : int, default=300
        Most iterations per start.
    tol : float, default=1e-4
        Stop when the squared centre shift falls below tol (absolute, in squared units of X).
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **_COMMON, **_LLOYD, "trim": [Interval(Real, 0, 1, closed="left")],
    }  # fmt: skip

    def __init__(self, n_clusters: int = 8, *, trim: float = 0.05, n_init: int = 10, max_iter: int = 300,
                 tol: float = 1e-4, random_state: Any = None) -> None:  # fmt: skip
        self.n_clusters, self.trim, self.n_init = n_clusters, trim, n_init
        self.max_iter, self.tol, self.random_state = max_iter, tol, random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> TrimmedKMeans:
        Xt = self._validated(X)
        n_out = round(self.trim * len(Xt))
        _check_kept(self.n_clusters, len(Xt), n_out, f"trim={self.trim}")
        centres, outliers, n_iter = _best_trimmed_fit(Xt, self.n_clusters, n_out, self.n_init, self.max_iter,
                                                      self.tol, self.random_state)  # fmt: skip
        self._finish(Xt, centres, outliers, n_iter)
        return self


class NKMeans(_OutlierAwareKMeans):
    """NK-means (Im et al. 2020) for k clusters and z = ``n_outliers`` noise points.

    For guesses of Opt (the cost of k-means with z outliers) in increasing powers of two,
    r = 2 sqrt(Opt / z); a point is *heavy* when its ball B(x, r) holds at least 2z points;
    every point whose ball holds no heavy point is removed. The smallest guess that removes at
    most 2z points is kept (the paper's O(z) removal guarantee); k-means runs on the rest, then
    the z points farthest from the centres are also dropped and k-means is refitted from those
    centres (the paper's experimental protocol). Ball counts are exact (O(n^2 d), chunked).

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters k.
    n_outliers : int, default=1
        The number z of noise points, >= 1.
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.
    max_guesses : int, default=64
        Most guesses of Opt (powers of two) tried.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **_COMMON,
        "n_outliers": [Interval(Integral, 1, None, closed="left")],
        "max_guesses": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_clusters: int = 8, *, n_outliers: int = 1, random_state: Any = None,
                 max_guesses: int = 64) -> None:  # fmt: skip
        self.n_clusters, self.n_outliers = n_clusters, n_outliers
        self.random_state, self.max_guesses = random_state, max_guesses

    def _removed(self, X: np.ndarray, d2_fn: Any, r: float) -> np.ndarray:
        counts = d2_fn(r)
        heavy = counts >= 2 * self.n_outliers
        nn = NearestNeighbors(radius=r).fit(X[heavy]) if heavy.any() else None
        if nn is None:
            return np.ones(len(X), dtype=bool)
        near = nn.radius_neighbors(X, return_distance=False)
        return np.array([len(v) == 0 for v in near])

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> NKMeans:
        z = self.n_outliers
        Xt = self._validated(X)
        data = Xt.double().numpy()
        if 2 * z > len(data):
            raise ValueError(
                f"n_outliers={z}: NK-means needs 2 * n_outliers <= n_samples={len(data)}"
            )
        _check_kept(self.n_clusters, len(data), 3 * z, f"NK-means with n_outliers={z} (up to 3z)")
        if len(data) < 2:
            raise ValueError(f"NK-means needs n_samples >= 2, got n_samples={len(data)}")
        tree = NearestNeighbors().fit(data)

        def ball_counts(r: float) -> np.ndarray:
            return np.array(
                [len(v) for v in tree.radius_neighbors(data, radius=r, return_distance=False)]
            )

        nn_dist = tree.kneighbors(data, n_neighbors=2)[0][:, 1]
        r = max(float(np.median(nn_dist)) / 4, 1e-12)
        removed = np.ones(len(data), dtype=bool)
        for _ in range(self.max_guesses):
            removed = self._removed(data, ball_counts, r)
            if removed.sum() <= 2 * z:
                break
            r *= np.sqrt(2.0)  # Opt doubles: r = 2 sqrt(Opt / z) grows by sqrt(2)
        if removed.sum() > 2 * z:
            raise ValueError(
                f"NK-means found no radius that removes at most 2 * {z} points in {self.max_guesses} guesses"
            )
        self.radius_ = r
        kept = ~removed
        km = KMeans(self.n_clusters, random_state=self.random_state).fit(data[kept])
        _, d2 = assign(Xt.double(), torch.as_tensor(km.cluster_centers_))
        far = np.zeros(len(data), dtype=bool)
        order = np.argsort(-d2.numpy(), kind="stable")
        far[[i for i in order if kept[i]][:z]] = True
        outliers = removed | far
        km = KMeans(self.n_clusters, init=km.cluster_centers_).fit(data[~outliers])
        self._finish(Xt, torch.as_tensor(km.cluster_centers_), outliers, km.n_iter_)
        return self


class SanitizedKMeans(_OutlierAwareKMeans):
    """Drop the points ``detector`` flags, then k-means.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters k.
    detector : {'isolation_forest', 'lof'} or object, default='isolation_forest'
        The outlier detector: a name, or an object whose fit_predict(X) returns -1 for outliers
        (PyOD, scikit-learn).
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.
    kmeans_params : dict or None, default=None
        Keyword arguments of advlab.cluster.KMeans.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **_COMMON,
        "detector": [StrOptions({"isolation_forest", "lof"}), HasMethods(["fit_predict"])],
        "kmeans_params": [dict, None],
    }

    def __init__(self, n_clusters: int = 8, *, detector: Any = "isolation_forest", random_state: Any = None,
                 kmeans_params: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.n_clusters, self.detector, self.random_state = n_clusters, detector, random_state
        self.kmeans_params = kmeans_params

    def _detector(self, n: int) -> Any:
        if self.detector == "isolation_forest":
            return IsolationForest(random_state=self.random_state)
        if self.detector == "lof":
            return LocalOutlierFactor(n_neighbors=min(20, n - 1))
        return self.detector

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> SanitizedKMeans:
        Xt = self._validated(X)
        data = Xt.double().numpy()
        if len(data) < 2:
            raise ValueError(f"an outlier detector needs n_samples >= 2, got n_samples={len(data)}")
        outliers = np.asarray(self._detector(len(data)).fit_predict(data)) == -1
        _check_kept(self.n_clusters, len(data), int(outliers.sum()),
                    f"the detector {self.detector!r} (it flagged {int(outliers.sum())} points)")  # fmt: skip
        params = dict(self.kmeans_params or {})
        km = KMeans(self.n_clusters, random_state=self.random_state, **params).fit(data[~outliers])
        self._finish(Xt, torch.as_tensor(km.cluster_centers_), outliers, km.n_iter_)
        return self
