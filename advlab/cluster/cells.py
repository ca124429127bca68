"""The Voronoi cells of a fitted k-means, seen from the inputs of its scikit-learn pipeline.

A k-means behind affine preprocessing f(x) = A x + b (a ``Pipeline`` whose steps before the
clusterer are scalers, PCA, ...) assigns x to

    argmin_j ||f(x) - c_j||^2 = argmin_j (gamma_j - 2 u_j . x),
    u_j = A^T c_j,   gamma_j = ||c_j||^2 - 2 c_j . b                          (eq. P)

(``||f(x)||^2`` is the same for every j). So its cells in input space are still convex
polytopes: z is at least as close to c_j as to c_i iff

    (u_j - u_i) . z >= (gamma_j - gamma_i) / 2                                (eq. H)

and the distance from x to that half-space in the norm p (dual norm q) is

    (||f(x) - c_j||^2 - ||f(x) - c_i||^2) / (2 ||u_j - u_i||_q).             (eq. R)

A plain k-means is the case A = I, b = 0 (u = c, gamma = ||c||^2). With (u, gamma) in place of
(c, ||c||^2), the certified radius, the minimal attack and white-box PGD measure perturbations
of the pipeline's *inputs*, in their units, not of the features k-means clusters.

``kmeans_cells`` reads A and b off the pipeline: each step's transform of 0 and of the unit
vectors, checked on random points (a step that is not affine, such as ``Normalizer``, a
quantile or log transform, or ``MinMaxScaler(clip=True)``, is named). Written by hand: no
library exposes the affine map of a fitted pipeline.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

PROBE_CHUNK = 1024  # unit vectors transformed per call while reading a step's matrix


def kmeans_centres(kmeans: Any) -> np.ndarray:
    """The (k, D) centres of a fitted k-means (any estimator with ``cluster_centers_``) or of
    a (k, D) array; an unfitted estimator raises scikit-learn's ``NotFittedError``, and a
    fitted clusterer without centres a ``ValueError`` saying what to use instead."""
    if hasattr(kmeans, "fit"):
        check_is_fitted(kmeans)
        if not hasattr(kmeans, "cluster_centers_"):
            raise ValueError(
                f"{type(kmeans).__name__} has no cluster_centers_: the white-box k-means attacks "
                "need centroids; advlab.attacks.clustering attacks any clusterer through its "
                "fit_predict"
            )
    try:
        centers = np.asarray(getattr(kmeans, "cluster_centers_", kmeans), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"expected a fitted k-means or a (k, D) array of centres, got {type(kmeans).__name__}"
        ) from err
    if centers.ndim != 2 or not np.isfinite(centers).all():
        raise ValueError("the k-means centres must be a finite (k, D) array")
    return centers


def check_mapping(mapping: Any | None, k: int) -> torch.Tensor | None:
    """A cluster -> class ``mapping`` of k clusters as an int64 tensor (None stays None).

    Parameters
    ----------
    mapping : array-like of shape (k,) or None
        The class of each cluster.
    k : int
        The number of clusters.

    Returns
    -------
    torch.Tensor of shape (k,) or None
        The mapping.
    """
    if mapping is None:
        return None
    m = torch.as_tensor(np.asarray(mapping), dtype=torch.int64)
    if m.shape != (k,):
        raise ValueError(f"mapping must have shape ({k},), got {tuple(m.shape)}")
    return m


@dataclass(frozen=True, eq=False)
class KMeansCells:
    """The cells of a k-means with centres ``centers`` (k, D') behind the affine map
    f(x) = ``linear`` x + ``offset`` (``linear`` (D', D) and ``offset`` (D',); both None: the
    identity), in float64.

    Attributes
    ----------
    centers : Tensor of shape (k, D')
        The centres, in the space k-means clusters.
    linear : Tensor of shape (D', D) or None, default=None
        A of f(x) = A x + b; None: the identity.
    offset : Tensor of shape (D',) or None, default=None
        b of f(x) = A x + b; None: 0.
    """

    centers: torch.Tensor
    linear: torch.Tensor | None = None
    offset: torch.Tensor | None = None

    @property
    def n_features(self) -> int:
        """D, the number of input features."""
        return int(self.centers.shape[1] if self.linear is None else self.linear.shape[1])

    @cached_property
    def sites(self) -> torch.Tensor:
        """(k, D): u_j = A^T c_j of eq. P; the centres themselves for a plain k-means."""
        return self.centers if self.linear is None else self.centers @ self.linear

    @cached_property
    def levels(self) -> torch.Tensor:
        """(k,): gamma_j = ||c_j||^2 - 2 c_j . b of eq. P."""
        sq = self.centers.pow(2).sum(1)
        return sq if self.offset is None else sq - 2 * self.centers @ self.offset

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) = A x + b for x (n, D) float64."""
        if self.linear is None:
            return x
        out = x @ self.linear.T
        return out if self.offset is None else out + self.offset

    def sq_distances(self, x: torch.Tensor) -> torch.Tensor:
        """(n, k): ||f(x) - c_j||^2, computed where k-means computes it (after f)."""
        return torch.cdist(self.features(x), self.centers).pow(2)

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """(n,): the cluster of each x (n, D)."""
        return torch.cdist(self.features(x), self.centers).argmin(1)

    def predict(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """(n,): the cluster of each input of X (n, ...) (flattened), as a scikit-learn
        estimator's ``predict`` returns it."""
        x = torch.as_tensor(X).detach().cpu().to(torch.float64)
        return self.assign(x.reshape(len(x), -1)).numpy()

    def anchors(self, x: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """(n, m, D): for each x (n, D) and candidate cluster ``cand`` (n, m), a point of the
        cluster's cell: its centre for a plain k-means, else the closest point to x that f maps
        onto the centre, x + A^+ (c_j - f(x)) = ``preimages``_j + (I - A^+ A) x (in the cell
        when c_j - b lies in A's range, as a mean of mapped points does)."""
        if self.linear is None:
            return self.centers[cand]
        ignored = x - (x @ self.linear.T) @ self._pseudo_inverse.T  # the part of x f drops
        return self.preimages[cand] + ignored[:, None, :]

    @cached_property
    def preimages(self) -> torch.Tensor:
        """(k, D): a point of each cell, the centre for a plain k-means, else the
        smallest-norm x with f(x) = c_j (when c_j - b lies in A's range)."""
        if self.linear is None:
            return self.centers
        gap = self.centers if self.offset is None else self.centers - self.offset
        return gap @ self._pseudo_inverse.T

    @cached_property
    def _pseudo_inverse(self) -> torch.Tensor:
        assert self.linear is not None
        return torch.linalg.pinv(self.linear)


def kmeans_cells(estimator: Any) -> KMeansCells:
    """The ``KMeansCells`` of a fitted k-means (advlab's, scikit-learn's, anything with
    ``cluster_centers_``), a (k, D) array of centres, or a fitted scikit-learn ``Pipeline``
    ending in one whose other steps are affine (scalers, PCA, TruncatedSVD, ...). An estimator
    whose ``predict`` is not a function of the nearest centre (``BisectingKMeans``, which
    descends its tree of bisections) is refused: its cells are not what it predicts. An
    estimator with a fitted ``preprocess_`` and ``kmeans_`` (``KMeansAdversarialTraining`` with a
    ``preprocess``) is read as the pipeline of the two.

    Parameters
    ----------
    estimator : estimator, Pipeline, KMeansCells or array of shape (k, D)
        The fitted k-means, the pipeline around it, its cells (returned as they are), or the
        centres.

    Returns
    -------
    KMeansCells
        Its centres and the affine map from the inputs to the space it clusters (float64).
    """
    if isinstance(estimator, KMeansCells):
        return estimator
    if hasattr(estimator, "preprocess_") and hasattr(estimator, "kmeans_"):
        # k-means behind its own fitted preprocessing (KMeansAdversarialTraining's preprocess)
        steps = [("preprocess", estimator.preprocess_), ("kmeans", estimator.kmeans_)]
        estimator = Pipeline(steps)
    if not hasattr(estimator, "steps"):
        cells = KMeansCells(torch.from_numpy(kmeans_centres(estimator)))
        if hasattr(estimator, "predict"):
            what = f"{type(estimator).__name__}.predict"
            _check_nearest_centre(estimator, what, cells, _fitted_dtype(estimator))
        return cells
    check_is_fitted(estimator)
    *prefix, (last_name, last) = estimator.steps
    if not hasattr(last, "cluster_centers_"):
        raise ValueError(
            f"the pipeline's last step {last_name!r} ({type(last).__name__}) has no "
            "cluster_centers_: the white-box k-means attacks need a k-means at the end; "
            "advlab.attacks.clustering attacks any clusterer through its fit_predict"
        )
    centers = kmeans_centres(last)
    n_in = getattr(estimator, "n_features_in_", getattr(last, "n_features_in_", None))
    if n_in is None:
        raise ValueError("the pipeline does not record its number of input features")
    linear, offset = _steps_map(prefix, int(n_in))
    if linear.shape[0] != centers.shape[1]:
        raise ValueError(
            f"the pipeline's steps before {last_name!r} output {linear.shape[0]} features, its "
            f"centres have {centers.shape[1]}"
        )
    cells = KMeansCells(
        torch.from_numpy(centers), torch.from_numpy(linear), torch.from_numpy(offset)
    )
    what = f"the pipeline's predict (last step {last_name!r}, {type(last).__name__})"
    _check_nearest_centre(estimator, what, cells, _fitted_dtype(last))
    return cells


def _fitted_dtype(kmeans: Any) -> np.dtype:
    """The dtype a k-means was fitted in (its centres'): scikit-learn's predict fails on
    float64 inputs to a float32 fit (``Buffer dtype mismatch``), also behind a pipeline."""
    dtype = np.asarray(kmeans.cluster_centers_).dtype
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _check_nearest_centre(estimator: Any, name: str, cells: KMeansCells, dtype: np.dtype) -> None:
    """Refuse an estimator whose ``predict`` is not a function of the nearest centre (its
    regions not unions of the Voronoi cells: ``BisectingKMeans`` descends its tree of
    bisections): its cells would certify, and its attacks aim at, what it does not do. Labels
    may be renamed (``SeededKMeans`` predicts the class of the cluster). Checked on 512 points
    around and between the cells' ``preimages`` (in the dtype it was fitted in), except where
    the two nearest centres are within rounding of each other."""
    anchors = cells.preimages.numpy()
    k, d = anchors.shape
    if k < 2:
        return
    rng = np.random.default_rng(0)
    i, j = rng.integers(k, size=(2, 256))
    w = rng.uniform(size=(256, 1))
    probes = np.concatenate([anchors[i] + rng.standard_normal((256, d)) * anchors.std(0),
                             w * anchors[i] + (1 - w) * anchors[j]]).astype(dtype)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = np.asarray(estimator.predict(probes))
    feats = cells.features(torch.from_numpy(probes.astype(np.float64)))
    sq = torch.cdist(feats, cells.centers).pow(2).numpy()
    nearest = np.sort(sq, 1)
    scale = feats.pow(2).sum(1).numpy() + float(cells.centers.pow(2).sum(1).max())
    clear = nearest[:, 1] - nearest[:, 0] > 1e-4 * scale
    cell, label = sq.argmin(1)[clear], predicted[clear]
    pairs = np.unique(np.stack([cell, np.unique(label, return_inverse=True)[1]]), axis=1)
    mixed = np.unique(pairs[0], return_counts=True)[1] > 1  # a cell with two labels
    if mixed.any():
        raise ValueError(
            f"{name} does not assign points by their nearest centre ({int(mixed.sum())} of "
            f"{k} cells hold points it labels differently): the white-box k-means attacks and "
            "certificates hold for nearest-centre assignment only; advlab.attacks.clustering "
            "attacks any clusterer through its fit_predict"
        )


def affine_map(transformer: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with ``transformer.transform(x) = A x + b`` for x of ``n_features`` features: a
    fitted scikit-learn transformer or pipeline of them, read off its transform of 0 and of the
    unit vectors and checked on random points; a step that is not affine is named.

    Parameters
    ----------
    transformer : transformer or Pipeline
        Fitted.
    n_features : int
        Its number of input features, D.

    Returns
    -------
    (ndarray of shape (D', D), ndarray of shape (D',))
        A and b, float64.
    """
    steps = getattr(transformer, "steps", None)
    if steps is None:
        steps = [(type(transformer).__name__.lower(), transformer)]
    return _steps_map(steps, n_features)


def _steps_map(steps: list[tuple[str, Any]], n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """The composed (A, b) of a pipeline's steps (nested pipelines step by step, so that a step
    that is not affine is named as ``outer__inner``)."""
    linear, offset = np.eye(n_in), np.zeros(n_in)
    for name, step in steps:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        inner = getattr(step, "steps", None)
        if inner is not None:
            nested = [(f"{name}__{sub}", sub_step) for sub, sub_step in inner]
            step_linear, step_offset = _steps_map(nested, linear.shape[0])
        else:
            step_linear, step_offset = _affine_map(name, step, linear.shape[0])
        linear, offset = step_linear @ linear, step_linear @ offset + step_offset
    return linear, offset


def _affine_map(name: str, step: Any, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) of a fitted step with t(x) = A x + b: b = t(0), column d of A = t(e_d) - b,
    checked on random points at two scales (a step that is affine only near its training data,
    such as a clipping scaler, differs far from it)."""
    offset = _transform(name, step, np.zeros((1, n_in)))[0]
    columns = [
        _transform(name, step, _unit_rows(s, min(s + PROBE_CHUNK, n_in), n_in)) - offset
        for s in range(0, n_in, PROBE_CHUNK)
    ]
    linear = np.concatenate(columns).T
    rng = np.random.default_rng(0)
    probe = np.concatenate([rng.standard_normal((8, n_in)), 1e3 * rng.standard_normal((8, n_in))])
    out = _transform(name, step, probe)
    expected = probe @ linear.T + offset
    scale = np.abs(probe) @ np.abs(linear).T + np.abs(offset)  # size of the terms summed
    tolerance = 64 * n_in * np.finfo(out.dtype).eps * (scale + 1.0)
    if out.shape != expected.shape or not (np.abs(out - expected) <= tolerance).all():
        raise ValueError(
            f"pipeline step {name!r} ({type(step).__name__}) is not affine (its transform of "
            "random points is not A x + b): the white-box k-means attacks take pipelines of "
            "affine steps (scalers, PCA, ...). Attack the last step on pipe[:-1].transform(X) "
            "instead (budgets then in that space), or use advlab.attacks.clustering"
        )
    return linear, offset


def _unit_rows(start: int, stop: int, n: int) -> np.ndarray:
    """Rows start..stop-1 of the n x n identity, without building it."""
    rows = np.zeros((stop - start, n))
    rows[np.arange(stop - start), np.arange(start, stop)] = 1.0
    return rows


def _transform(name: str, step: Any, x: np.ndarray) -> np.ndarray:
    """``step.transform(x)`` as a dense float array, its warnings silenced."""
    if not hasattr(step, "transform"):
        raise ValueError(f"pipeline step {name!r} ({type(step).__name__}) has no transform")
    with warnings.catch_warnings():  # (a step fitted on a DataFrame, or a probe outside a
        warnings.simplefilter("ignore")  # log's domain, warns; the probes' checks decide)
        try:
            out = step.transform(x)
        except Exception as err:  # the user's step: any failure is named with it
            raise ValueError(
                f"pipeline step {name!r} ({type(step).__name__}) could not transform a "
                f"({x.shape[1]},)-feature array: {err}"
            ) from err
    out = out.toarray() if sp.issparse(out) else np.asarray(out)
    return out if np.issubdtype(out.dtype, np.floating) else out.astype(np.float64)
