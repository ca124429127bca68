"""Summary statistics over repetitions."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats


def mean_ci(values: Any, level: float = 0.99, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of the Student-t confidence interval at ``level`` along ``axis``
    (half-width 0 for a single repetition): mean ± t_{(1+level)/2, n-1} * s / sqrt(n).

    Parameters
    ----------
    values : array-like
        Measurements, one per repetition along axis.
    level : float, default=0.99
        Confidence level in (0, 1).
    axis : int, default=0
        Axis of the repetitions.

    Returns
    -------
    (ndarray, ndarray)
        Mean and half-width along axis.
    """
    if not 0 < level < 1:
        raise ValueError(f"level={level} must lie in (0, 1)")
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[axis] == 0:
        raise ValueError(
            f"mean_ci needs at least one value along axis {axis}, got shape {arr.shape}"
        )
    n = arr.shape[axis]
    mean = arr.mean(axis=axis)
    if n < 2:
        return mean, np.zeros_like(mean)
    sem = arr.std(axis=axis, ddof=1) / np.sqrt(n)
    return mean, stats.t.ppf((1 + level) / 2, n - 1) * sem
