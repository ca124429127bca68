"""Turning cluster ids into class predictions.

A mapping is an int64 array ``m`` of length ``n_clusters``: cluster ``c`` predicts class
``m[c]`` (``-1`` = no class, always counted wrong). It is learned on training data and then
applied to test data, as in Omari et al. (k = 856 clusters, majority vote).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from advlab.utils.validation import check_class_labels


def _contingency(
    labels_pred: np.ndarray, y: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """``counts[c, t]`` = number of points in cluster ``c`` with true class ``classes[t]``, for
    the classes present in ``y`` (sorted), and those classes."""
    labels_pred = np.asarray(labels_pred, dtype=np.int64)
    y = check_class_labels(y, name="class labels", non_negative=True)
    if labels_pred.shape != y.shape or labels_pred.ndim != 1:
        raise ValueError(
            f"labels_pred {labels_pred.shape} and y {y.shape} must be 1-D of equal length"
        )
    if labels_pred.size == 0:
        raise ValueError("cannot learn a mapping from zero points")
    if labels_pred.min() < 0 or labels_pred.max() >= n_clusters:
        raise ValueError(
            f"cluster ids must lie in [0, {n_clusters}), got [{labels_pred.min()}, {labels_pred.max()}]"
        )
    classes, codes = np.unique(y, return_inverse=True)
    counts = np.zeros((n_clusters, len(classes)), dtype=np.int64)
    np.add.at(counts, (labels_pred, codes.reshape(-1)), 1)
    return counts, classes


def majority_vote_mapping(labels_pred: np.ndarray, y: np.ndarray, n_clusters: int) -> np.ndarray:
    """Each cluster takes its most frequent true class (ties: the smallest class id).

    Fallback: a cluster holding no training point takes the most frequent class of the whole
    training set (the best constant guess), so every cluster predicts some class.

    Parameters
    ----------
    labels_pred : ndarray of shape (n_samples,)
        Cluster id of each training point, in 0..n_clusters-1.
    y : ndarray of shape (n_samples,)
        True class of each training point (non-negative integers).
    n_clusters : int
        Number of clusters k.

    Returns
    -------
    ndarray of shape (n_clusters,)
        The class of each cluster.
    """
    counts, classes = _contingency(labels_pred, y, n_clusters)
    mapping = counts.argmax(axis=1)
    empty = counts.sum(axis=1) == 0
    mapping[empty] = counts.sum(axis=0).argmax()
    return classes[mapping].astype(np.int64)


def hungarian_mapping(labels_pred: np.ndarray, y: np.ndarray, n_clusters: int) -> np.ndarray:
    """One-to-one cluster -> class assignment maximising agreement (Kuhn's Hungarian method,
    ``scipy.optimize.linear_sum_assignment``). Meant for k = number of classes; when k exceeds
    the number of classes present in ``y`` the unmatched clusters map to ``-1`` (counted as
    errors).

    Parameters
    ----------
    labels_pred : ndarray of shape (n_samples,)
        Cluster id of each training point, in 0..n_clusters-1.
    y : ndarray of shape (n_samples,)
        True class of each training point (non-negative integers).
    n_clusters : int
        Number of clusters k.

    Returns
    -------
    ndarray of shape (n_clusters,)
        The class of each cluster, -1 for unmatched clusters.
    """
    counts, classes = _contingency(labels_pred, y, n_clusters)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    mapping = np.full(n_clusters, -1, dtype=np.int64)
    mapping[rows] = classes[cols]
    return mapping


def clustering_accuracy(
    y_true: np.ndarray, y_pred_clusters: np.ndarray, mapping: np.ndarray
) -> float:
    """Fraction of points whose mapped cluster equals the true class: mean(m[c_i] == y_i).

    Parameters
    ----------
    y_true : ndarray of shape (n_samples,)
        True classes.
    y_pred_clusters : ndarray of shape (n_samples,)
        Cluster ids.
    mapping : ndarray of shape (n_clusters,)
        Cluster -> class, as from majority_vote_mapping.

    Returns
    -------
    float
        Accuracy, a fraction in [0, 1].
    """
    y_true = np.asarray(y_true)
    y_pred_clusters = np.asarray(y_pred_clusters, dtype=np.int64)
    if y_true.shape != y_pred_clusters.shape:
        raise ValueError(
            f"y_true {y_true.shape} and cluster ids {y_pred_clusters.shape} differ in shape"
        )
    if y_pred_clusters.size and (
        y_pred_clusters.min() < 0 or y_pred_clusters.max() >= len(mapping)
    ):
        raise ValueError("cluster ids out of range of the mapping")
    return float(np.mean(mapping[y_pred_clusters] == y_true))
