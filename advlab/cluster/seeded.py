"""Seeded (semi-supervised) k-means, the victim of the Poison Cluster label-flip attack.

Basu, Banerjee & Mooney (ICML 2002): a labelled seed sample gives the initial centres (the mean
of each class's seed points); Lloyd's iterations then run on all the data and each cluster keeps
the class of the seed mean that started it, so labels "follow the centres".
Labels use scikit-learn's semi-supervised convention: -1 marks an unlabelled point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from advlab.cluster.kmeans import KMeans


class SeededKMeans:
    """Args: ``max_iter``, ``tol``, ``device`` as :class:`KMeans`.

    ``fit(X, y)`` with ``y`` = class label for seed points and -1 elsewhere. Fitted:
    ``classes_``, ``kmeans_``, ``cluster_centers_``, ``labels_`` (predicted classes)."""

    def __init__(self, max_iter: int = 300, tol: float = 1e-4, device: str = "cpu") -> None:
        self.max_iter, self.tol, self.device = max_iter, tol, device

    def fit(self, X: Any, y: Any) -> SeededKMeans:
        data = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
        y = np.asarray(y, dtype=np.int64)
        if y.shape != (len(data),):
            raise ValueError(
                f"y must have shape ({len(data)},) with -1 for unlabelled points, got {y.shape}"
            )
        seeded = y >= 0
        if not seeded.any():
            raise ValueError("no labelled seed point (all labels are -1)")
        self.classes_ = np.unique(y[seeded])
        init = np.stack([data[y == c].mean(0) for c in self.classes_])
        self.kmeans_ = KMeans(len(self.classes_), init=init, max_iter=self.max_iter, tol=self.tol,
                              device=self.device).fit(data)  # fmt: skip
        self.cluster_centers_ = self.kmeans_.cluster_centers_
        self.labels_ = self.classes_[self.kmeans_.labels_]
        return self

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[
            self.kmeans_.predict(np.asarray(X, dtype=np.float32).reshape(len(X), -1))
        ]


def seed_sample(y: Any, fraction: float, random_state: Any = None) -> np.ndarray:
    """Partial labels: a stratified random ``fraction`` of ``y`` kept, the rest set to -1."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y, dtype=np.int64)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction} must lie in (0, 1]")
    idx = np.arange(len(y))
    if fraction < 1:
        idx, _ = train_test_split(idx, train_size=fraction, stratify=y, random_state=random_state)
    partial = np.full(len(y), -1, dtype=np.int64)
    partial[idx] = y[idx]
    return partial
