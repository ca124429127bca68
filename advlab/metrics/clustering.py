"""Clustering metrics: thin wrappers over scikit-learn with input checks and one-call scoring.

External (need true labels): ARI, NMI, AMI. Internal (geometry only): silhouette (sampled for
large N), Calinski-Harabasz (higher is better), Davies-Bouldin (lower is better).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

DEFAULT_SILHOUETTE_SAMPLE = 10_000


def _labels(name: str, labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _labels("y_true", y_true), _labels("labels_pred", y_pred)
    if a.shape != b.shape:
        raise ValueError(f"y_true {a.shape} and labels_pred {b.shape} differ in length")
    return a, b


def _check_data(X: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    lab = _labels("labels_pred", labels)
    if len(data) != len(lab):
        raise ValueError(f"X has {len(data)} rows but labels_pred has {len(lab)}")
    if not np.isfinite(data).all():
        raise ValueError("X contains NaN or infinite values")
    n_labels = len(np.unique(lab))
    if not 2 <= n_labels <= len(data) - 1:
        raise ValueError(
            f"internal metrics need 2 <= n_clusters <= n_samples - 1, got {n_labels} clusters"
        )
    return data, lab


def adjusted_rand(y_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985): 1 = identical partitions, ~0 = chance.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Reference labels (classes, or another clustering).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    float
        The score; 1 for identical partitions.
    """
    return float(skm.adjusted_rand_score(*_check_pair(y_true, labels_pred)))


def mutual_info_normalized(y_true: Any, labels_pred: Any) -> float:
    """Normalised mutual information, arithmetic normalisation (scikit-learn's default).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Reference labels (classes, or another clustering).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    float
        The score; 1 for identical partitions.
    """
    return float(skm.normalized_mutual_info_score(*_check_pair(y_true, labels_pred)))


def mutual_info_adjusted(y_true: Any, labels_pred: Any) -> float:
    """Mutual information adjusted for chance (Vinh et al. 2010).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Reference labels (classes, or another clustering).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    float
        The score; 1 for identical partitions.
    """
    return float(skm.adjusted_mutual_info_score(*_check_pair(y_true, labels_pred)))


def silhouette(
    X: Any,
    labels_pred: Any,
    sample_size: int | None = DEFAULT_SILHOUETTE_SAMPLE,
    random_state: int = 0,
) -> float:
    """Mean silhouette (Rousseeuw 1987) on at most ``sample_size`` points drawn with
    ``random_state`` (the full O(N^2) computation when N is smaller or ``sample_size=None``).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clustered data, finite.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.
    sample_size : int or None, default=10000
        Points drawn for the estimate; None or more than n_samples: all points (O(n^2)).
    random_state : int, default=0
        Seed of the sample.

    Returns
    -------
    float
        Mean silhouette in [-1, 1]; higher is better.
    """
    data, lab = _check_data(X, labels_pred)
    size = None if sample_size is None or sample_size >= len(data) else sample_size
    return float(skm.silhouette_score(data, lab, sample_size=size, random_state=random_state))


def calinski_harabasz(X: Any, labels_pred: Any) -> float:
    """Calinski-Harabasz variance ratio (between / within dispersion); higher is better.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clustered data, finite.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    float
        The variance ratio, >= 0; higher is better.
    """
    return float(skm.calinski_harabasz_score(*_check_data(X, labels_pred)))


def davies_bouldin(X: Any, labels_pred: Any) -> float:
    """Davies-Bouldin index (mean worst-case cluster similarity); lower is better.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clustered data, finite.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    float
        The index, >= 0; lower is better.
    """
    return float(skm.davies_bouldin_score(*_check_data(X, labels_pred)))


def clustering_scores(
    X: Any,
    labels_pred: Any,
    y_true: Any | None = None,
    silhouette_sample: int | None = DEFAULT_SILHOUETTE_SAMPLE,
    random_state: int = 0,
) -> dict[str, float]:
    """Every metric above in one call (external ones only when ``y_true`` is given).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The clustered data, finite.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.
    y_true : array-like of shape (n_samples,) or None, default=None
        Reference labels; None skips the external metrics (ARI, NMI, AMI).
    silhouette_sample : int or None, default=10000
        Sample size of the silhouette (see silhouette).
    random_state : int, default=0
        Seed of the silhouette sample.

    Returns
    -------
    dict of str to float
        Score name -> value.
    """
    scores = {
        "silhouette": silhouette(X, labels_pred, silhouette_sample, random_state),
        "calinski_harabasz": calinski_harabasz(X, labels_pred),
        "davies_bouldin": davies_bouldin(X, labels_pred),
    }
    if y_true is not None:
        scores.update(
            ari=adjusted_rand(y_true, labels_pred),
            nmi=mutual_info_normalized(y_true, labels_pred),
            ami=mutual_info_adjusted(y_true, labels_pred),
        )
    return scores
