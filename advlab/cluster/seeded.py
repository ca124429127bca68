"""Seeded (semi-supervised) k-means, the victim of the Poison Cluster label-flip attack.

Basu, Banerjee & Mooney (ICML 2002): a labelled seed sample gives the initial centres (the mean
of each class's seed points); Lloyd's iterations then run on all the data and each cluster keeps
the class of the seed mean that started it, so labels "follow the centres".
Labels use scikit-learn's semi-supervised convention: -1 marks an unlabelled point.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from advlab.cluster.kmeans import KMeans, _check_2d

UNLABELLED = -1


class SeededKMeans(ClassifierMixin, BaseEstimator):
    """Seeded k-means (Basu et al. 2002) as a scikit-learn classifier.

    ``fit(X, y)`` with ``y`` = class label for seed points and -1 for unlabelled points
    (integer labels only; labels of any other type mark every point as a seed). One cluster per
    seeded class starts at the mean of its seed points; Lloyd then runs on all of X.

    Parameters
    ----------
    max_iter : int, default=300
        Most Lloyd iterations, as ``KMeans``.
    tol : float, default=1e-4
        Relative tolerance on the centre shift, as ``KMeans``.
    device : str, default="cpu"
        Torch device of the computation ("cpu", "cuda", ...).

    Attributes
    ----------
    classes_ : ndarray, the seeded classes
    kmeans_ : the fitted ``KMeans``
    cluster_centers_ : ndarray (n_classes, n_features), in X's dtype
    labels_ : ndarray (n_samples,), the predicted class of every training point
    n_iter_ : int, Lloyd iterations
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "device": [str],
    }

    def __init__(self, *, max_iter: int = 300, tol: float = 1e-4, device: str = "cpu") -> None:
        self.max_iter, self.tol, self.device = max_iter, tol, device

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> SeededKMeans:
        data = _check_2d(X, estimator=self)
        _, y = validate_data(self, X=data, y=y, reset=False, skip_check_array=False,
                             dtype=None, ensure_all_finite=True)  # fmt: skip
        check_classification_targets(y)
        seeded = (y != UNLABELLED) if np.issubdtype(y.dtype, np.integer) else np.ones(len(y), bool)
        if not seeded.any():
            raise ValueError("no labelled seed point (all labels are -1)")
        self.classes_ = np.unique(y[seeded])
        init = np.stack([data[y == c].mean(0) for c in self.classes_])
        self.kmeans_ = KMeans(len(self.classes_), init=init, max_iter=self.max_iter, tol=self.tol,
                              device=self.device).fit(data)  # fmt: skip
        self.cluster_centers_ = self.kmeans_.cluster_centers_
        self.labels_ = self.classes_[self.kmeans_.labels_]
        self.n_iter_ = self.kmeans_.n_iter_
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "kmeans_")
        return self.classes_[self.kmeans_.predict(_check_2d(X, estimator=self, reset=False))]


def seed_sample(y: Any, fraction: float, random_state: Any = None) -> np.ndarray:
    """Partial labels: a stratified random ``fraction`` of ``y`` kept, the rest set to -1.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Integer class labels.
    fraction : float
        Share of labels kept, in (0, 1], stratified by class.
    random_state : int, RandomState or None, default=None
        Seed of the draw.

    Returns
    -------
    ndarray of shape (n_samples,)
        y where kept, -1 elsewhere.
    """
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
