"""Mimicry ("cuckoo") poisoning and its contextual reversal (Poison Cluster document).

The victim pipeline removes outliers before clustering. ``find_outliers`` is that step:
DBSCAN with minPts = 2d (capped at n/10) and eps at the knee of the sorted k-distance curve
(the reference notebooks' recipe), or IsolationForest / LOF. ``mimicry`` clusters the purged outliers and
injects, around each of those centres, points drawn from N(centre, s^2 I) with s the mean
within-cluster standard deviation of the normal data: the outliers gain neighbours, become
dense, and the same removal step keeps them (they "hatch" in the nest).
``contextual_reversal`` keeps injecting until the removal step purges originally normal
points instead, and reports how many injected points that took.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.utils import check_random_state

from advlab.attacks.poisoning.base import PoisonedData, append, check_count, check_xy
from advlab.attacks.poisoning.injection import uniform_outliers
from advlab.cluster import KMeans

DETECTORS = ("dbscan", "isolation_forest", "lof")


def dbscan_eps(X: np.ndarray, min_samples: int) -> float:
    """eps at the knee of the sorted distances to the ``min_samples``-th neighbour."""
    from kneed import KneeLocator

    nn = NearestNeighbors(n_neighbors=min(min_samples, len(X))).fit(X)
    kdist = np.sort(nn.kneighbors(X)[0][:, -1])
    with np.errstate(divide="ignore", invalid="ignore"):  # a flat curve: no knee, the median
        knee = KneeLocator(range(len(kdist)), kdist, curve="convex", direction="increasing").knee
    return float(kdist[int(knee)] if knee is not None else np.median(kdist)) or 1e-12


def find_outliers(
    X: Any, method: str = "dbscan", random_state: int | None = 0, **params: Any
) -> np.ndarray:
    """Boolean mask of the points the outlier-removal step would purge.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The data.
    method : {'dbscan', 'isolation_forest', 'lof'}, default='dbscan'
        The detector; DBSCAN with minPts = 2d (at most n/10) and eps at the knee of the k-distance
        curve unless given.
    random_state : int or None, default=0
        Seed of the isolation forest.
    **params
        Parameters of the detector (DBSCAN's eps and min_samples, IsolationForest's or
        LocalOutlierFactor's).

    Returns
    -------
    ndarray of bool, shape (n_samples,)
        True for the points the removal step would purge.
    """
    data = np.asarray(X, dtype=np.float64)
    if not isinstance(method, str) or method not in DETECTORS:
        shown = repr(method) if isinstance(method, str) else f"of type {type(method).__name__}"
        raise ValueError(f"unknown detector {shown}; choose one of {DETECTORS}")
    settings: dict[str, Any] = dict(params)
    if method == "dbscan":
        # minPts = 2d (the reference recipe), capped at n/10 so that high-dimensional data with
        # few points (MNIST subsets: 2d = 1568) still has core points
        min_samples = settings.setdefault(
            "min_samples", max(2, min(2 * data.shape[1], len(data) // 10))
        )
        settings["eps"] = settings.get("eps") or dbscan_eps(data, min_samples)
    elif method == "isolation_forest":
        settings.setdefault("random_state", random_state)
    make = {"dbscan": DBSCAN, "isolation_forest": IsolationForest, "lof": LocalOutlierFactor}
    try:
        detector = make[method](**settings)
    except TypeError as err:  # a keyword the detector does not know
        raise ValueError(f"detector parameters {sorted(params)} for {method!r}: {err}") from err
    return detector.fit_predict(data) == -1


def _within_std(data: np.ndarray, n_clusters: int, seed: int) -> float:
    km = KMeans(n_clusters, random_state=seed).fit(data)
    return float(np.sqrt(((data - km.cluster_centers_[km.labels_]) ** 2).mean()))


def _majority(labels: np.ndarray) -> int:
    """Most frequent non-negative label (-1 when there is none: planted, unlabelled points)."""
    known = labels[labels >= 0]
    return int(np.bincount(known).argmax()) if len(known) else -1


def _camouflage(
    data: np.ndarray,
    labels: np.ndarray,
    detector: str,
    params: dict[str, Any],
    n_clusters: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Outlier mask, outlier-cluster centres, their majority labels and the injection spread."""
    outliers = find_outliers(data, detector, seed, **params)
    if not outliers.any():
        raise ValueError("the detector finds no outliers: mimicry has nothing to conceal")
    if outliers.all():
        raise ValueError(
            "the detector flags every point as an outlier: there is no normal data to mimic"
        )
    out_pts, out_lab = data[outliers], labels[outliers]
    k_out = min(len(out_pts), max(1, round(np.sqrt(len(out_pts)))))
    km_out = KMeans(k_out, random_state=seed).fit(out_pts)
    majority = np.array([_majority(out_lab[km_out.labels_ == c]) for c in range(k_out)])
    return (
        outliers,
        km_out.cluster_centers_.astype(np.float64),
        majority,
        _within_std(data[~outliers], n_clusters, seed),
    )


def _mimic(
    data: np.ndarray,
    centres: np.ndarray,
    majority: np.ndarray,
    spread: float,
    n: int,
    rng: np.random.RandomState,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points spread evenly over the centres, drawn from N(centre, spread^2 I), clipped to
    the data box enlarged by its size."""
    k_out = len(centres)
    counts = np.full(k_out, n // k_out) + (np.arange(k_out) < n % k_out)
    points = np.vstack(
        [rng.normal(centres[c], spread, size=(cnt, data.shape[1])) for c, cnt in enumerate(counts)]
    )
    low, high = data.min(0), data.max(0)
    return np.clip(points, low - (high - low), high + (high - low)), np.repeat(majority, counts)


def mimicry(
    X: Any,
    y: Any,
    n_inject: int | None = None,
    n_clusters: int = 3,
    detector: str = "dbscan",
    detector_params: dict[str, Any] | None = None,
    random_state: int | None = None,
    plant_if_none: int = 0,
) -> PoisonedData:
    """Inject ``n_inject`` points (default: the detector's minPts, 2d, per outlier cluster, at
    most half as many as there are data points)
    mimicking the data around its outliers; the outliers are grouped by k-means into
    round(sqrt(#outliers)) clusters and ``n_clusters`` sets the k used to measure the normal
    data's within-cluster spread. Injected points take the label of their outlier cluster's
    majority. ``meta`` holds the clean data's outlier mask and the outlier centres.

    When the detector finds no outlier and ``plant_if_none`` > 0, that many uniform outliers are
    planted first (the document's remedy: "manual injection of outliers"); they are flagged as
    injected too (``meta['planted']``).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clean data, finite.
    y : array-like of shape (n_samples,)
        Its labels.
    n_inject : int or None, default=None
        Points to inject; None: the detector's minPts (2d) per outlier cluster, at most n_samples /
        2.
    n_clusters : int, default=3
        k used to measure the normal data's within-cluster spread.
    detector : {'dbscan', 'isolation_forest', 'lof'}, default='dbscan'
        The outlier-removal step whose outliers are camouflaged.
    detector_params : dict or None, default=None
        Parameters of the detector (see find_outliers).
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.
    plant_if_none : int, default=0
        Uniform outliers planted first when the detector finds none (0: plant none).

    Returns
    -------
    PoisonedData
        The poisoned data and labels, the mask of injected points and the attack's metadata.
    """
    data, labels = check_xy(X, y)
    rng = check_random_state(random_state)
    seed = int(rng.randint(2**31 - 1))
    params = detector_params or {}
    n_original, planted = len(data), 0
    if plant_if_none > 0 and not find_outliers(data, detector, seed, **params).any():
        base = uniform_outliers(data, labels, plant_if_none, random_state=seed)
        data, labels, planted = base.data, base.labels, plant_if_none
    outliers, centres, majority, spread = _camouflage(
        data, labels, detector, params, n_clusters, seed
    )
    default = min(max(2 * data.shape[1], 1) * len(centres), max(len(centres), n_original // 2))
    n = check_count("n_inject", n_inject if n_inject is not None else default, 10 * len(data))
    points, point_labels = _mimic(data, centres, majority, spread, n, rng)
    meta = {"attack": "mimicry", "detector": detector, "outliers": outliers[:n_original], "outlier_centers": centres,
            "spread": spread, "planted": planted}  # fmt: skip
    result = append(data, labels, points, point_labels, meta)
    flags = result.is_injected.copy()
    flags[n_original:] = True  # planted outliers are injected points too
    return PoisonedData(result.data, result.labels, flags, meta)


def contextual_reversal(
    X: Any,
    y: Any,
    step: int | None = None,
    max_rounds: int = 50,
    detector: str = "dbscan",
    detector_params: dict[str, Any] | None = None,
    random_state: int | None = None,
) -> PoisonedData:
    """Repeat mimicry injections around the clean data's outlier centres (``step`` points per
    round) until the removal step, run on the poisoned data, purges at least one originally
    *normal* point (a point it kept on clean
    data). ``meta['reversed']`` says whether that happened within ``max_rounds``;
    ``meta['n_injected_at_reversal']`` how many injected points it took;
    ``meta['purged_normal']`` which original points were purged.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clean data, finite.
    y : array-like of shape (n_samples,)
        Its labels.
    step : int or None, default=None
        Points injected per round; None: 2d per outlier centre.
    max_rounds : int, default=50
        Rounds before giving up.
    detector : {'dbscan', 'isolation_forest', 'lof'}, default='dbscan'
        The outlier-removal step whose outliers are camouflaged.
    detector_params : dict or None, default=None
        Parameters of the detector (see find_outliers).
    random_state : int or None, default=None
        Seed; None draws fresh randomness.

    Returns
    -------
    PoisonedData
        The poisoned data and labels, the mask of injected points and the attack's metadata.
    """
    data, labels = check_xy(X, y)
    rng = check_random_state(random_state)
    params = detector_params or {}
    clean_outliers, centres, majority, spread = _camouflage(data, labels, detector, params, 3, 0)
    step = check_count(
        "step",
        step if step is not None else max(2 * data.shape[1], 1) * len(centres),
        10 * len(data),
    )
    normal = ~clean_outliers
    injected = np.empty((0, data.shape[1]))
    injected_labels = np.empty(0, dtype=np.int64)
    purged_normal = np.zeros(len(data), dtype=bool)
    for round_ in range(1, max_rounds + 1):
        points, point_labels = _mimic(data, centres, majority, spread, step, rng)
        injected, injected_labels = (
            np.vstack([injected, points]),
            np.r_[injected_labels, point_labels],
        )
        purged = find_outliers(np.vstack([data, injected]), detector, 0, **params)[: len(data)]
        purged_normal = purged & normal
        if purged_normal.any():
            meta = {"attack": "contextual_reversal", "reversed": True, "rounds": round_,
                    "n_injected_at_reversal": len(injected), "purged_normal": purged_normal}  # fmt: skip
            return append(data, labels, injected, injected_labels, meta)
    meta = {"attack": "contextual_reversal", "reversed": False, "rounds": max_rounds,
            "n_injected_at_reversal": None, "purged_normal": purged_normal}  # fmt: skip
    return append(data, labels, injected, injected_labels, meta)
