"""Randomized injection attacks of the Poison Cluster document (its notebook's recipes):
Gaussian noise on every feature, uniform outliers, covariance-shaped ("subtle") outliers and
label shuffling."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from advlab.attacks.poisoning.base import PoisonedData, append, check_count, check_ratio, check_xy
from advlab.utils.validation import check_number

MAX_INJECTED_FRACTION = 10.0  # at most 10 injected points per original point


def gaussian_noise(X, y, sigma: float = 0.2, random_state=None) -> PoisonedData:
    """Perturb every feature of every point: x' = x + N(0, sigma^2). Nothing is injected.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clean data, finite.
    y : array-like of shape (n_samples,)
        Its labels.
    sigma : float, default=0.2
        Standard deviation of the noise, >= 0, in the units of X.
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.

    Returns
    -------
    PoisonedData
        The poisoned data and labels, the mask of injected points and the attack's metadata.
    """
    data, labels = check_xy(X, y)
    sigma = check_number("sigma", sigma, 0.0)
    rng = check_random_state(random_state)
    noisy = data + rng.normal(0.0, sigma, size=data.shape)
    return PoisonedData(
        noisy, labels, np.zeros(len(data), dtype=bool), {"attack": "gaussian_noise", "sigma": sigma}
    )


def uniform_outliers(
    X, y, n: int = 5, margin: float = 0.5, label: int = -1, random_state=None
) -> PoisonedData:
    """``n`` points drawn uniformly from the feature box enlarged by ``margin`` times each
    feature's range on both sides, keeping only points outside the original box (so each lies
    beyond the data range in at least one feature).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clean data, finite.
    y : array-like of shape (n_samples,)
        Its labels.
    n : int, default=5
        Points to inject, >= 0 and at most half of n_samples.
    margin : float, default=0.5
        Enlargement of the box on each side, > 0, as a fraction of each feature's range.
    label : int, default=-1
        Label of the injected points (-1: none).
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.

    Returns
    -------
    PoisonedData
        The poisoned data and labels, the mask of injected points and the attack's metadata.
    """
    data, labels = check_xy(X, y)
    n = check_count("n", n, int(MAX_INJECTED_FRACTION * len(data)))
    margin = check_number("margin", margin, 0.0, low_open=True)
    rng = check_random_state(random_state)
    low, high = data.min(0), data.max(0)
    span = np.where(high > low, high - low, 1.0)
    points = np.empty((0, data.shape[1]))
    while len(points) < n:
        draw = rng.uniform(
            low - margin * span, high + margin * span, size=(max(2 * n, 16), data.shape[1])
        )
        outside = ((draw < low) | (draw > high)).any(1)
        points = np.vstack([points, draw[outside]])
    return append(
        data,
        labels,
        points[:n],
        np.full(n, label),
        {"attack": "uniform_outliers", "margin": margin},
    )


def subtle_outliers(
    X, y, n: int = 5, scale: float = 2.0, label: int = -1, random_state=None
) -> PoisonedData:
    """``n`` points z ~ N(mean, cov) of the data, pushed away from the mean:
    x = mean + scale * (z - mean). They follow the data's correlations, so they look plausible.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clean data, finite.
    y : array-like of shape (n_samples,)
        Its labels.
    n : int, default=5
        Points to inject, >= 0 and at most half of n_samples.
    scale : float, default=2.0
        How far from the mean, > 0 (1: draws from the data's own Gaussian).
    label : int, default=-1
        Label of the injected points (-1: none).
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.

    Returns
    -------
    PoisonedData
        The poisoned data and labels, the mask of injected points and the attack's metadata.
    """
    data, labels = check_xy(X, y)
    n = check_count("n", n, int(MAX_INJECTED_FRACTION * len(data)))
    if not scale > 0:
        raise ValueError(f"scale={scale} must be > 0")
    rng = check_random_state(random_state)
    mean, cov = data.mean(0), np.atleast_2d(np.cov(data, rowvar=False))
    z = rng.multivariate_normal(mean, cov, size=n)
    return append(
        data,
        labels,
        mean + scale * (z - mean),
        np.full(n, label),
        {"attack": "subtle_outliers", "scale": scale},
    )


def label_shuffle(X, y, fraction: float = 0.2, random_state=None) -> PoisonedData:
    """Permute the labels of a random ``fraction`` of the points among themselves (features
    untouched). Hurts a seeded / semi-supervised k-means and any evaluation against labels.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clean data, finite.
    y : array-like of shape (n_samples,)
        Its labels.
    fraction : float, default=0.2
        Share of the points whose labels are permuted, in [0, 1].
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.

    Returns
    -------
    PoisonedData
        The poisoned data and labels, the mask of injected points and the attack's metadata.
    """
    data, labels = check_xy(X, y)
    fraction = check_ratio("fraction", fraction)
    rng = check_random_state(random_state)
    chosen = rng.choice(len(data), size=round(fraction * len(data)), replace=False)
    shuffled = labels.copy()
    shuffled[chosen] = labels[rng.permutation(chosen)]
    meta = {"attack": "label_shuffle", "fraction": fraction, "shuffled": chosen}
    return PoisonedData(data, shuffled, np.zeros(len(data), dtype=bool), meta)
