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
    """``ks`` (sorted), ``inertias`` (one per k) and the ``knee`` (None if kneed finds none)."""

    ks: list[int]
    inertias: list[float]
    knee: int | None


def find_knee(ks: Sequence[int], inertias: Sequence[float], sensitivity: float = 1.0) -> int | None:
    """Kneedle knee of a convex decreasing curve (``kneed.KneeLocator``)."""
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
    """Fit :class:`KMeans` for each k in ``ks`` and locate the knee of inertia(k)."""
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
