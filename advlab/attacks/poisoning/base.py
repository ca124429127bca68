"""The record every poisoning attack returns, and the input checks they share.

Original points are never altered unless the attack is a perturbation (``gaussian_noise``);
injected points are appended after them and flagged, so metrics can be computed on the original
points only (``data[~is_injected]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from advlab.utils.validation import check_class_labels, check_number


@dataclass(frozen=True)
class PoisonedData:
    """Poisoned data: the n original points first, then the m injected ones.

    Attributes
    ----------
    data : ndarray of shape (n + m, D)
        Original (possibly perturbed) and injected points.
    labels : ndarray of shape (n + m,)
        Their labels (-1: none).
    is_injected : ndarray of bool, shape (n + m,)
        Which points the attack added.
    meta : dict
        The attack's name, parameters and by-products.
    """

    data: np.ndarray
    labels: np.ndarray
    is_injected: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_injected(self) -> int:
        return int(self.is_injected.sum())

    @property
    def original(self) -> np.ndarray:
        return self.data[~self.is_injected]


def check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Float64 (n, D) data and int64 (n,) labels; raises ValueError naming the problem."""
    data = np.asarray(X, dtype=np.float64)
    if data.ndim != 2 or len(data) == 0:
        raise ValueError(
            f"X must have shape (n_samples, n_features) with n_samples > 0, got {data.shape}"
        )
    if not np.isfinite(data).all():
        raise ValueError("X contains NaN or infinite values")
    return data, check_class_labels(y, len(data))


def check_ratio(name: str, value: float) -> float:
    v = check_number(name, value)  # a finite number
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name}={value} must lie in [0, 1]")
    return v


def check_count(name: str, value: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name}={value} must be a non-negative integer")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}={value} exceeds the allowed maximum {maximum}")
    return int(value)


def append(
    data: np.ndarray,
    labels: np.ndarray,
    points: np.ndarray,
    point_labels: np.ndarray,
    meta: dict[str, Any],
) -> PoisonedData:
    """Original rows first, injected rows after, flagged."""
    flags = np.r_[np.zeros(len(data), dtype=bool), np.ones(len(points), dtype=bool)]
    return PoisonedData(
        np.vstack([data, points.reshape(len(points), data.shape[1])]),
        np.r_[labels, point_labels.astype(np.int64)],
        flags,
        meta,
    )
