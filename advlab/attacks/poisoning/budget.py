"""The injection attacks at one budget: exactly ``n`` injected points, whatever the attack's
own parameter is called (a count, a share of the data, or derived from the outliers found)."""

from __future__ import annotations

from typing import Any

import numpy as np

from advlab.attacks.poisoning.base import PoisonedData
from advlab.attacks.poisoning.bridge import bridge_points
from advlab.attacks.poisoning.injection import subtle_outliers, uniform_outliers
from advlab.attacks.poisoning.mimicry import find_outliers, mimicry

INJECTION_ATTACKS = ("uniform_outliers", "subtle_outliers", "mimicry", "bridge_points")


def inject(
    name: str,
    X: Any,
    y: Any,
    n: int,
    n_clusters: int | None = None,
    plant: int = 5,
    random_state: Any = None,
) -> PoisonedData:
    """``name`` injecting exactly ``n`` points into (X, y), so that attacks compare at one
    budget.

    ``uniform_outliers`` and ``subtle_outliers`` take ``n`` as their count, ``bridge_points``
    as the share ``n / len(X)``; ``mimicry`` camouflages the outliers DBSCAN finds, and where it
    finds none, ``min(plant, n // 2)`` uniform outliers are planted first and count towards
    ``n``.

    Parameters
    ----------
    name : str
        uniform_outliers, subtle_outliers, mimicry or bridge_points.
    X : array-like of shape (n_samples, n_features)
        The clean data.
    y : array-like of shape (n_samples,)
        Its labels (a clustering's ids where the data has none).
    n : int
        Points to inject, >= 1.
    n_clusters : int or None, default=None
        k of the bridge and mimicry attacks; None: the number of label values.
    plant : int, default=5
        Outliers mimicry plants where DBSCAN finds none.
    random_state : int or None, default=None
        Seed of the attack.

    Returns
    -------
    PoisonedData
        The original points, then the n injected ones.
    """
    if name not in INJECTION_ATTACKS:
        raise ValueError(
            f"attack {name!r} does not inject points: it has no budget; choose one of "
            f"{', '.join(INJECTION_ATTACKS)}"
        )
    k = len(np.unique(y)) if n_clusters is None else n_clusters
    if name == "uniform_outliers":
        return uniform_outliers(X, y, n, random_state=random_state)
    if name == "subtle_outliers":
        return subtle_outliers(X, y, n, random_state=random_state)
    if name == "bridge_points":
        return bridge_points(X, y, n / len(X), n_clusters=k, random_state=random_state)
    planted = 0 if find_outliers(np.asarray(X, dtype=np.float64)).any() else min(plant, n // 2)
    return mimicry(X, y, n_inject=n - planted, n_clusters=k, random_state=random_state,
                   plant_if_none=planted)  # fmt: skip
