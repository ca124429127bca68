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


def _check_pair(
    y_true: Any, y_pred: Any, names: tuple[str, str] = ("y_true", "labels_pred")
) -> tuple[np.ndarray, np.ndarray]:
    a, b = _labels(names[0], y_true), _labels(names[1], y_pred)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} {a.shape} and {names[1]} {b.shape} differ in length")
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


def changed_cluster(reference: Any, labels: Any) -> np.ndarray:
    """Which points changed cluster between two clusterings, cluster ids matched first.

    The ids of ``labels`` are matched to those of ``reference`` by the assignment that keeps
    the most points in place (Hungarian algorithm on the contingency table, rectangular when
    the numbers of clusters differ); a point has changed when its matched id differs from its
    reference id. Ids may be any integers (DBSCAN's noise, -1, is a cluster id like the others).

    Parameters
    ----------
    reference : array-like of shape (n_samples,)
        The reference clustering (e.g. on the clean data).
    labels : array-like of shape (n_samples,)
        The other clustering (e.g. of the same points after poisoning).

    Returns
    -------
    ndarray of bool, shape (n_samples,)
        True where the point changed cluster.
    """
    from scipy.optimize import linear_sum_assignment

    ref, lab = _check_pair(reference, labels, ("reference", "labels"))
    ref_ids, ref_idx = np.unique(ref, return_inverse=True)
    lab_ids, lab_idx = np.unique(lab, return_inverse=True)
    counts = np.zeros((len(lab_ids), len(ref_ids)), dtype=np.int64)
    np.add.at(counts, (lab_idx, ref_idx), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    matched = np.full(len(lab_ids), -1)
    matched[rows] = cols
    return np.asarray(matched[lab_idx] != ref_idx)


def spillover(reference: Any, labels: Any, touched: Any = ()) -> int:
    """Spill-over (Chhabra et al. 2020): points the attacker did not touch that changed cluster.

    Parameters
    ----------
    reference : array-like of shape (n_samples,)
        Clustering of the clean data.
    labels : array-like of shape (n_samples,)
        Clustering of the same points after the attack (injected points left out).
    touched : array-like of int, default=()
        Indices of the points the attacker perturbed; they are not counted.

    Returns
    -------
    int
        The number of untouched points whose (matched) cluster changed.
    """
    changed = changed_cluster(reference, labels)
    changed[np.asarray(touched, dtype=np.int64)] = False
    return int(changed.sum())


def co_membership_distance(reference: Any, labels: Any) -> float:
    """Biggio et al.'s (2013) distance between clusterings, d = ||Y Y^T - Y' Y'^T||_F / n.

    Y is the n x k one-hot assignment, so (Y Y^T)_ij = 1 when i and j share a cluster; the
    squared norm counts the ordered pairs whose co-membership differs, computed from the
    contingency table n_ab as sum_a n_a^2 + sum_b n_b^2 - 2 sum_ab n_ab^2 (no n x n matrix).
    0 for identical partitions; cluster ids need not match.

    Parameters
    ----------
    reference : array-like of shape (n_samples,)
        One clustering.
    labels : array-like of shape (n_samples,)
        The other.

    Returns
    -------
    float
        The distance, in [0, 1).
    """
    ref, lab = _check_pair(reference, labels, ("reference", "labels"))
    _, ref_idx = np.unique(ref, return_inverse=True)
    _, lab_idx = np.unique(lab, return_inverse=True)
    table = np.zeros((ref_idx.max() + 1, lab_idx.max() + 1), dtype=np.float64)
    np.add.at(table, (ref_idx, lab_idx), 1.0)
    differ = (table.sum(1) ** 2).sum() + (table.sum(0) ** 2).sum() - 2 * (table**2).sum()
    return float(np.sqrt(max(differ, 0.0)) / len(ref))


def perturbation_norms(delta: Any) -> dict[str, float]:
    """L0, L2 and L-inf norms of a perturbation, taken over all its entries.

    Parameters
    ----------
    delta : array-like
        The perturbation (e.g. poisoned minus clean rows).

    Returns
    -------
    dict of str to float
        ``l0`` (number of non-zero entries), ``l2`` and ``linf``.
    """
    d = np.asarray(delta, dtype=np.float64).ravel()
    if d.size == 0:
        return {"l0": 0.0, "l2": 0.0, "linf": 0.0}
    return {
        "l0": float(np.count_nonzero(d)),
        "l2": float(np.linalg.norm(d)),
        "linf": float(np.abs(d).max()),
    }
