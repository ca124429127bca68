"""The elbow method for choosing k: the inertia curve over k and its knee.

The knee is found with ``kneed.KneeLocator`` (Satopää et al. 2011, "Kneedle") on the convex,
decreasing curve inertia(k). Omari et al. chose k = 856 for MNIST this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advlab.cluster.kmeans import KMeans
from advlab.utils.progress import progress


@dataclass(frozen=True)
class ElbowResult:
    """``ks`` (sorted), ``inertias`` (one per k) and the ``knee`` (None if kneed finds none).

    Attributes
    ----------
    ks : list of int
        The values of k, sorted.
    inertias : list of float
        Inertia of the k-means fit at each k.
    knee : int or None
        The knee, None when kneed finds none.
    """

    ks: list[int]
    inertias: list[float]
    knee: int | None


def find_knee(ks: Sequence[int], inertias: Sequence[float], sensitivity: float = 1.0) -> int | None:
    """Kneedle knee of a convex decreasing curve (``kneed.KneeLocator``).

    Parameters
    ----------
    ks : sequence of int
        At least 3 values of k, increasing.
    inertias : sequence of float
        Inertia at each k.
    sensitivity : float, default=1.0
        Kneedle's S: larger waits for a sharper knee.

    Returns
    -------
    int or None
        The knee's k, or None.
    """
    from kneed import KneeLocator

    if len(ks) < 3:
        raise ValueError(f"the elbow needs at least 3 values of k, got {len(ks)}")
    locator = KneeLocator(
        list(ks), list(inertias), S=sensitivity, curve="convex", direction="decreasing"
    )
    return None if locator.knee is None else int(locator.knee)


def elbow(
    data: Any,
    ks: Sequence[int],
    random_state: int | None = 0,
    sensitivity: float = 1.0,
    **kmeans_kwargs: Any,
) -> ElbowResult:
    """Fit ``KMeans`` for each k in ``ks`` and locate the knee of inertia(k).

    Parameters
    ----------
    data : array-like of shape (n_samples, n_features)
        The data to cluster.
    ks : sequence of int
        Values of k to fit, each in 1..n_samples.
    random_state : int or None, default=0
        Seed of every fit.
    sensitivity : float, default=1.0
        Kneedle's S (see find_knee).
    **kmeans_kwargs
        Further KMeans parameters (device, max_iter, ...).

    Returns
    -------
    ElbowResult
        Inertia per k and the knee.
    """
    ks_sorted = sorted({int(k) for k in ks})
    if not ks_sorted or ks_sorted[0] < 1:
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    n = len(data)
    if ks_sorted[-1] > n:
        raise ValueError(f"k={ks_sorted[-1]} exceeds the {n} samples")
    inertias = [
        float(KMeans(k, random_state=random_state, **kmeans_kwargs).fit(data).inertia_)
        for k in progress(ks_sorted, desc="elbow")
    ]
    return ElbowResult(ks_sorted, inertias, find_knee(ks_sorted, inertias, sensitivity))


__all__ = ["ElbowResult", "elbow", "find_knee"]
