"""Fast k-means (Lloyd) in torch, with scikit-learn's estimator interface and semantics.

Why hand-written: scikit-learn's greedy k-means++ makes k sequential memory-bound passes over
the data (about 60 s of a 65 s fit for MNIST-60k, k = 856, on 2 cores). Here the seeding is
k-means|| (Bahmani et al., VLDB 2012): a few oversampling rounds whose distance computations are
matrix multiplies, followed by scikit-learn's greedy k-means++ on the small weighted candidate
set. Lloyd's iterations follow scikit-learn's ``_kmeans_single_lloyd`` step for step (same
convergence rule, same empty-cluster relocation, same final E-step), on CPU or CUDA; exact
triangle-inequality bounds (Elkan's or Hamerly's, chosen by ``choose_bounds``) skip the points
that cannot change cluster.

Distances use ``||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2`` (a matrix multiply in the input's
precision: float32 stays float32, float64 stays float64, as in scikit-learn) on the centred data;
centre sums and inertia accumulate in float64. Optional ``sample_weight`` weights the means,
the inertia and the seeding, as scikit-learn's.
Memory: a copy of X (n*d*4 or 8 bytes), one distance block of at most ``chunk_size*k``
floats (64 MiB by default), O(k*d) float64 for the centre sums, and the bounds: n*k values
(Elkan's) or 2n (Hamerly's).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from advlab.cluster._validation import ArrayLike, check_n_clusters
from advlab.utils.validation import check_device

BLOCK_FLOATS = 1 << 24  # 64 MiB of float32 per distance block
CACHE_ROWS = 2048  # rows per block for memory-bound elementwise passes over (n, k) bounds
CACHE_FLOATS = 1 << 17  # 512 KiB of float32 per block of (rows, d) elementwise work
MAX_BOUND_FLOATS = 1 << 28  # 1 GiB of float32 for Elkan's bounds when bounds=None
GATHER_COST = 32  # a gathered row's cost per feature, in multiply-adds (measured, see lloyd)
MIN_TIGHTEN_GAIN = 0.2  # tighten upper bounds while they spare at least 20 % of the rows
RETRY_TIGHTEN = 8  # ... and try again every 8 iterations when they did not
ELKAN_MIN_D, ELKAN_MIN_K = 100, 500  # Elkan's bounds from here on (see choose_bounds)
BOUNDS_MIN_K = 50  # plain Lloyd below (see choose_bounds)
SKLEARN_MAX_KD = 1500  # scikit-learn's compiled Lloyd up to here on CPU (see choose_bounds)


def _sq_norms(X: torch.Tensor) -> torch.Tensor:
    return (X * X).sum(dim=1)


def _sq_distances(
    X: torch.Tensor, C: torch.Tensor, x_sq: torch.Tensor, c_sq: torch.Tensor
) -> torch.Tensor:
    """Squared Euclidean distances ``||x||^2 - 2 X C^T + ||c||^2``, clamped at 0: (n, m)."""
    d2 = torch.addmm(c_sq.unsqueeze(0), X, C.T, beta=1.0, alpha=-2.0)
    d2.add_(x_sq.unsqueeze(1))
    return d2.clamp_(min=0.0)


def _chunks(n: int, chunk_size: int):
    for start in range(0, n, chunk_size):
        yield slice(start, min(start + chunk_size, n))


def _auto_chunk(n: int, m: int) -> int:
    return max(256, min(n, BLOCK_FLOATS // max(m, 1)))


def assign(
    X: torch.Tensor,
    C: torch.Tensor,
    x_sq: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each row of ``X``: (labels int64, squared distance in X's dtype).

    The argmin is taken over ``||c||^2 - 2 x.c`` (scikit-learn's E-step: the row constant
    ``||x||^2`` changes no decision), which is added to the minimum alone."""
    C = C.to(X.dtype)
    x_sq = _sq_norms(X) if x_sq is None else x_sq
    c_sq = _sq_norms(C).unsqueeze(0)
    chunk = chunk_size or _auto_chunk(len(X), len(C))
    labels = torch.empty(len(X), dtype=torch.int64, device=X.device)
    mind = torch.empty(len(X), dtype=X.dtype, device=X.device)
    for sl in _chunks(len(X), chunk):
        best, labels[sl] = torch.addmm(c_sq, X[sl], C.T, beta=1.0, alpha=-2.0).min(dim=1)
        mind[sl] = (best + x_sq[sl]).clamp_(min=0.0)
    return labels, mind


# ----------------------------------------------------------------------------- seeding


def greedy_kmeanspp(
    X: torch.Tensor,
    n_clusters: int,
    rng: np.random.RandomState,
    weights: torch.Tensor | None = None,
    n_local_trials: int | None = None,
) -> torch.Tensor:
    """Greedy k-means++ (Arthur & Vassilvitskii 2007; scikit-learn's ``_kmeans_plusplus``).

    First centre drawn with probability ∝ w_i; each next centre is the best (lowest
    potential sum_i w_i D(x_i)^2) of ``2 + ln k`` candidates drawn with probability
    ∝ w_i D(x_i)^2, D being the distance to the nearest centre chosen so far.
    Returns the indices of the chosen rows.
    """
    n = len(X)
    trials = n_local_trials or 2 + int(math.log(n_clusters))
    w = torch.ones(n, device=X.device, dtype=X.dtype) if weights is None else weights.to(X.dtype)
    x_sq = _sq_norms(X)
    w_np = w.double().cpu().numpy()
    first = int(rng.choice(n, p=w_np / w_np.sum()))
    chosen = [first]
    closest = _sq_distances(X, X[first : first + 1], x_sq, x_sq[first : first + 1])[:, 0]
    potential = float((w * closest).sum(dtype=torch.float64))
    for _ in range(1, n_clusters):
        cumulative = torch.cumsum((w * closest).double(), 0).cpu().numpy()
        draws = rng.uniform(size=trials) * potential
        cand = np.minimum(np.searchsorted(cumulative, draws), n - 1)
        cand_t = torch.as_tensor(cand, device=X.device)
        d2 = _sq_distances(X, X[cand_t], x_sq, x_sq[cand_t])
        torch.minimum(d2, closest.unsqueeze(1), out=d2)
        pots = (w.unsqueeze(1) * d2).sum(0, dtype=torch.float64)
        best = int(torch.argmin(pots))
        chosen.append(int(cand[best]))
        closest = d2[:, best].contiguous()
        potential = float(pots[best])
    return torch.as_tensor(chosen, dtype=torch.int64, device=X.device)


def kmeans_parallel_init(
    X: torch.Tensor,
    n_clusters: int,
    rng: np.random.RandomState,
    x_sq: torch.Tensor,
    rounds: int = 5,
    oversampling: float = 1.0,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """k-means|| seeding (Bahmani et al. 2012, Alg. 2) followed by weighted greedy k-means++.

    Start from one uniform point; for each of ``rounds`` rounds sample every point
    independently with probability min(1, l w D(x)^2 / sum w D^2), l = ``oversampling * k``
    (w the sample weights, 1 by default). Weight each candidate by the total weight of the
    points closest to it, then reduce the
    (about l * rounds) candidates to k centres with greedy k-means++. Returns row indices.
    """
    n = len(X)
    ell = oversampling * n_clusters
    w = None if sample_weight is None else sample_weight.double()
    first = int(rng.randint(n))
    candidates = [torch.tensor([first], device=X.device)]
    closest = _sq_distances(X, X[first : first + 1], x_sq, x_sq[first : first + 1])[:, 0]
    nearest = torch.zeros(n, dtype=torch.int64, device=X.device)
    n_cand = 1
    for _ in range(rounds):
        mass = closest.double() if w is None else closest.double() * w
        total = float(mass.sum())
        if total <= 0:
            break
        prob = (ell * mass / total).clamp_(max=1.0).cpu().numpy()
        new = np.flatnonzero(rng.uniform(size=n) < prob)
        if len(new) == 0:
            continue
        new_t = torch.as_tensor(new, device=X.device)
        C, c_sq = X[new_t], x_sq[new_t]
        for sl in _chunks(n, _auto_chunk(n, len(new))):
            dmin, arg = _sq_distances(X[sl], C, x_sq[sl], c_sq).min(dim=1)
            better = dmin < closest[sl]
            closest[sl] = torch.where(better, dmin, closest[sl])
            nearest[sl] = torch.where(better, arg + n_cand, nearest[sl])
        candidates.append(new_t)
        n_cand += len(new)
    cand = torch.cat(candidates)
    if len(cand) <= n_clusters:  # too few candidates (tiny or degenerate data): exact seeding
        return greedy_kmeanspp(X, n_clusters, rng, weights=sample_weight)
    weights = label_weight_sums(nearest, w, len(cand))
    local = greedy_kmeanspp(X[cand], n_clusters, rng, weights=weights)
    return cand[local]


def kmeans_plusplus(
    X: ArrayLike,
    n_clusters: int,
    random_state: int | np.random.RandomState | None = None,
    init_algorithm: str = "auto",
    device: str | torch.device = "cpu",
    sample_weight: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding alone, like ``sklearn.cluster.kmeans_plusplus``: (centres, indices).

    ``init_algorithm``: ``"greedy"`` (scikit-learn's algorithm), ``"parallel"`` (k-means||
    then greedy k-means++ on the weighted candidates) or ``"auto"`` (the rule of
    ``seed_indices``). The centres have X's dtype (float32 or float64).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The data, float32 or float64, finite.
    n_clusters : int
        Number of centres, in 1..n_samples.
    random_state : int, RandomState or None, default=None
        Seed; None draws fresh randomness.
    init_algorithm : {'auto', 'greedy', 'parallel'}, default='auto'
        Greedy k-means++ (scikit-learn's), k-means|| then greedy on the weighted candidates, or the
        rule of seed_indices.
    device : str or torch.device, default='cpu'
        Where to compute.
    sample_weight : array-like of shape (n_samples,) or None, default=None
        Non-negative weights of the points in the D^2 sampling.

    Returns
    -------
    (ndarray, ndarray)
        The centres (n_clusters, n_features) in X's dtype and their row indices in X.
    """
    Xn = _check_2d(X, "X")
    check_n_clusters(n_clusters, len(Xn))
    Xt = torch.from_numpy(Xn).to(device)
    w = _weights_tensor(sample_weight, Xn, Xt.device)
    rng = check_random_state(random_state)
    Xc = Xt - Xt.double().mean(0).to(Xt.dtype)
    idx = seed_indices(Xc, _sq_norms(Xc), n_clusters, rng, init_algorithm, w)
    return Xn[idx.cpu().numpy()], idx.cpu().numpy()


def seed_indices(
    X: torch.Tensor,
    x_sq: torch.Tensor,
    k: int,
    rng: np.random.RandomState,
    init_algorithm: str = "auto",
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The one seeding dispatch: k-means|| (``kmeans_parallel_init``) for
    ``"parallel"``, or for ``"auto"`` when n > 8 k (the candidate pass then costs a few matrix
    multiplies instead of k sequential passes; measured faster than greedy k-means++ on every
    shape of the benchmark grid from n = 10,000, k = 856 up); greedy k-means++ otherwise.
    Row indices."""
    if init_algorithm not in ("auto", "greedy", "parallel"):
        raise ValueError(f"init_algorithm={init_algorithm!r}: use 'auto', 'greedy' or 'parallel'")
    if init_algorithm == "parallel" or (init_algorithm == "auto" and len(X) > 8 * k):
        return kmeans_parallel_init(X, k, rng, x_sq, sample_weight=sample_weight)
    return greedy_kmeanspp(X, k, rng, weights=sample_weight)


# ----------------------------------------------------------------------------- Lloyd


@dataclass
class _LloydResult:
    centers: torch.Tensor
    labels: torch.Tensor
    inertia: float
    n_iter: int
    distance_rows: int  # rows that needed a full distance computation (work counter)


BOUND_MODES = ("none", "hamerly", "elkan", "sklearn")  # how Lloyd runs (see choose_bounds)


class _Bounds:
    """Lloyd's E-step with triangle-inequality bounds that skip points which cannot move.

    For each point x: ``upper[x]`` >= the distance to its centre a, and a lower bound on the
    distance to every other centre. A point keeps its centre when ``upper <= max(lower,
    s_a)``, ``s_a`` being half the distance from a to its nearest other centre; the upper
    bound is first tightened to the exact distance, and only the remaining rows get a full
    distance row (one matrix multiply for all of them), which refreshes their bounds exactly.
    The labels are exactly Lloyd's; the work shrinks as points settle. Modes:

    * ``"elkan"`` (Elkan, ICML 2003): one lower bound per (point, centre), each lowered by
      its own centre's move. The drift is applied lazily: ``shifted[x, c] = l(x, c) + D_c``
      at the last refresh, D_c the cumulative move of centre c, so the bound is
      ``shifted[x, c] - D_c`` and no n*k update is written per iteration; the n*k minimum
      that gives the per-point bound is still one pass over n*k values per iteration.
    * ``"hamerly"`` (Hamerly, SDM 2010): one lower bound per point (the distance to the
      second-closest centre), lowered by the largest move of another centre. O(n) work per
      iteration besides the rows recomputed; looser than Elkan's when a few centres move far.
    Plain Lloyd (no bounds) is ``_plain_lloyd``.

    Distances to all centres are computed as ``||c||^2 - 2 x.c`` (the row constant
    ``||x||^2`` is added only to the values kept, as scikit-learn's E-step does), except in
    Elkan's mode, which keeps every distance.
    """

    def __init__(
        self, X: torch.Tensor, x_sq: torch.Tensor, k: int, chunk: int, margin: float, mode: str
    ) -> None:
        if mode not in ("elkan", "hamerly") or k < 2:
            raise ValueError(f"bounds need mode 'elkan' or 'hamerly' and k >= 2, got {mode!r}, {k}")
        self.X, self.x_sq, self.chunk, self.margin = X, x_sq, chunk, margin
        n, dtype = len(X), X.dtype
        self.mode = mode
        self.labels = torch.zeros(n, dtype=torch.int64, device=X.device)
        self.upper = torch.zeros(n, device=X.device, dtype=dtype)
        self.shifted = (
            torch.empty((n, k), device=X.device, dtype=dtype) if self.mode == "elkan" else None
        )
        self.lower = (
            torch.zeros(n, device=X.device, dtype=dtype) if self.mode == "hamerly" else None
        )
        self.drift = torch.zeros(k, dtype=torch.float64, device=X.device)
        self.distance_rows = 0
        self.tighten, self.iteration = True, 0

    def full_assign(self, rows: torch.Tensor | None, centers: torch.Tensor) -> None:
        """Exact distances of ``rows`` (all rows when None) to every centre.

        All rows are read in contiguous blocks (no gather); a subset is gathered block by
        block. In Elkan's mode the distance block is computed straight into the bounds'
        storage when all rows are refreshed."""
        c_sq = _sq_norms(centers).unsqueeze(0)
        drift = self.drift.to(self.X.dtype)
        n = len(self.X) if rows is None else len(rows)
        self.distance_rows += n
        for sl in _chunks(n, self.chunk):
            if rows is None:
                x, xs, idx = self.X[sl], self.x_sq[sl], sl
            else:
                idx = rows[sl]
                x, xs = self.X[idx], self.x_sq[idx]
            into = self.shifted[sl] if self.shifted is not None and rows is None else None
            e = torch.addmm(c_sq, x, centers.T, beta=1.0, alpha=-2.0, out=into)
            if self.shifted is None:
                best, labels = e.min(dim=1)
                self.labels[idx] = labels
                self.upper[idx] = (best + xs).clamp_(min=0.0).sqrt_()
                if self.lower is not None:
                    e[torch.arange(len(labels), device=e.device), labels] = float("inf")
                    self.lower[idx] = (e.amin(1) + xs).clamp_(min=0.0).sqrt_()
                continue
            e.add_(xs.unsqueeze(1)).clamp_(min=0.0)
            best, labels = e.min(dim=1)
            self.labels[idx], self.upper[idx] = labels, best.sqrt()
            e.sqrt_().add_(drift)
            e[torch.arange(len(labels), device=e.device), labels] = float("inf")
            if rows is not None:
                self.shifted[idx] = e

    def _own_distance(self, rows: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """Exact distance of each of ``rows`` to its assigned centre; when most rows are asked
        for, all rows are read contiguously (no gather of X) and the asked ones returned."""
        if len(rows) > 0.5 * len(self.X):
            return _own_sq_distance(self.X, centers, self.labels)[rows].sqrt_()
        return _own_sq_distance(self.X, centers, self.labels, rows).sqrt_()

    def _second_bound(self, delta: torch.Tensor) -> torch.Tensor:
        """A lower bound on each point's distance to every centre other than its own, after
        the centres moved by ``delta``."""
        dtype = self.X.dtype
        if self.lower is not None:  # Hamerly: minus the largest move of another centre
            top = torch.topk(delta, min(2, len(delta))).values.to(dtype)
            largest = delta.argmax()
            other = top[-1] if len(top) > 1 else top[0]
            self.lower -= torch.where(self.labels == largest, other, top[0])
            return self.lower
        assert self.shifted is not None
        self.drift += delta
        drift = self.drift.to(dtype)
        second = torch.empty_like(self.upper)
        for sl in _chunks(len(self.X), CACHE_ROWS):
            second[sl] = torch.sub(self.shifted[sl], drift).amin(1)
        return second

    def update(self, old: torch.Tensor, new: torch.Tensor) -> None:
        """Re-assign after the centres moved from ``old`` to ``new``, skipping safe rows."""
        dtype = self.X.dtype
        delta = (new.double() - old.double()).pow(2).sum(1).sqrt()
        self.upper += delta.to(dtype)[self.labels]
        new_sq = _sq_norms(new)
        half_gap = (
            0.5
            * _sq_distances(new, new, new_sq, new_sq)
            .fill_diagonal_(float("inf"))
            .min(1)
            .values.sqrt()
        )
        second = self._second_bound(delta)
        bound = torch.maximum(second, half_gap[self.labels]) - self.margin
        active = torch.nonzero(self.upper > bound).flatten()
        if len(active) == 0:
            return
        self.iteration += 1
        if self.tighten or self.iteration % RETRY_TIGHTEN == 0:
            own = self._own_distance(active, new)
            self.upper[active] = own  # tighten the upper bound to the exact distance
            kept = active[own > bound[active]]
            # tightening reads each active row once; it pays when it spares full rows
            self.tighten = len(kept) <= (1 - MIN_TIGHTEN_GAIN) * len(active)
            active = kept
        if len(active):
            # gathering a row costs about GATHER_COST multiply-adds per feature; when the
            # rows to redo are many and k is small, one contiguous pass over all rows is less
            k = len(new)
            every = len(active) * (GATHER_COST + k) >= len(self.X) * k
            self.full_assign(None if every else active, new)


def _own_sq_distance(
    X: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """||x - c(x)||^2 of every row (or of ``rows``), computed directly (no cancellation) in
    blocks that fit the cache: for the inertia, the upper bounds and empty-cluster
    relocation."""
    n, d = len(X) if rows is None else len(rows), X.shape[1]
    out = torch.empty(n, device=X.device, dtype=X.dtype)
    for sl in _chunks(n, max(64, CACHE_FLOATS // max(d, 1))):
        idx = sl if rows is None else rows[sl]
        out[sl] = (X[idx] - centers[labels[idx]]).pow_(2).sum(1)
    return out


def _weighted(X: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    return X if w is None else X * w.to(X.dtype).unsqueeze(1)


def label_weight_sums(labels: torch.Tensor, w: torch.Tensor | None, k: int) -> torch.Tensor:
    """sum_{i: labels_i = j} w_i for j < k (counts when ``w`` is None), float64.

    On CUDA a weighted ``bincount`` adds with float atomics in whatever order the threads
    arrive and has no deterministic kernel, so there the sums go through ``index_add_`` in
    float64, which PyTorch's deterministic mode (``advlab.utils.perf.reproducible_unit``) makes
    reproducible; on CPU, ``bincount`` (a sequential loop) as before."""
    if w is None or labels.device.type == "cpu":
        return torch.bincount(labels, weights=w, minlength=k).double()
    return _index_add_weight_sums(labels, w, k)


def _index_add_weight_sums(labels: torch.Tensor, w: torch.Tensor, k: int) -> torch.Tensor:
    """``label_weight_sums`` through ``index_add_`` in float64 (its CUDA branch; any device)."""
    return torch.zeros(k, dtype=torch.float64, device=labels.device).index_add_(
        0, labels, w.double()
    )


def _cluster_sums(
    X: torch.Tensor, labels: torch.Tensor, k: int, chunk: int, w: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster sums sum_i w_i x_i (float64, accumulated by blocks in X's dtype) and
    weights sum_i w_i (counts when ``w`` is None)."""
    sums = torch.zeros((k, X.shape[1]), dtype=torch.float64, device=X.device)
    block = torch.empty((k, X.shape[1]), dtype=X.dtype, device=X.device)
    for sl in _chunks(len(X), chunk):
        block.zero_().index_add_(0, labels[sl], _weighted(X[sl], None if w is None else w[sl]))
        sums += block
    return sums, label_weight_sums(labels, w, k)


def _move_points(
    X: torch.Tensor,
    old: torch.Tensor,
    new: torch.Tensor,
    sums: torch.Tensor,
    counts: torch.Tensor,
    w: torch.Tensor | None,
    changed: torch.Tensor | None = None,
) -> None:
    """Update the float64 cluster sums and weights in place for the points whose label went
    from ``old`` to ``new`` (``changed``: their indices, found when not given)."""
    if changed is None:
        changed = torch.nonzero(old != new).flatten()
    if len(changed) == 0:
        return
    wc = None if w is None else w[changed]
    moved = _weighted(X[changed].double(), wc)
    mass = torch.ones_like(moved[:, 0]) if wc is None else wc.double()
    sums.index_add_(0, old[changed], moved, alpha=-1.0)
    sums.index_add_(0, new[changed], moved)
    counts.index_add_(0, old[changed], -mass)
    counts.index_add_(0, new[changed], mass)


def _new_centers(
    X: torch.Tensor,
    labels: torch.Tensor,
    centers: torch.Tensor,
    sums: torch.Tensor,
    counts: torch.Tensor,
    w: torch.Tensor | None,
) -> tuple[torch.Tensor, bool]:
    """M-step: (weighted) means of the clusters. Empty clusters are relocated as in
    scikit-learn: the points farthest from their centre become the centres of the empty
    clusters (and leave their old cluster's mean). Returns the centres and whether a
    relocation happened."""
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty) == 0:
        return (sums / counts.unsqueeze(1)).to(X.dtype), False
    sums, counts = sums.clone(), counts.clone()
    far = torch.topk(_own_sq_distance(X, centers, labels), len(empty)).indices
    for cluster, idx in zip(empty.tolist(), far.tolist(), strict=True):
        old = int(labels[idx])
        weight = 1.0 if w is None else float(w[idx])
        sums[old] -= X[idx].double() * weight
        counts[old] -= weight
        sums[cluster] = X[idx].double() * weight
        counts[cluster] = weight
    safe = torch.where(counts > 0, counts, torch.ones_like(counts))
    return (sums / safe.unsqueeze(1)).to(X.dtype), True


def _plain_lloyd(
    X: torch.Tensor,
    centers: torch.Tensor,
    max_iter: int,
    tol: float,
    chunk: int,
    w: torch.Tensor | None,
    x_sq: torch.Tensor,
) -> _LloydResult:
    """Lloyd without bounds, as few operations per iteration as scikit-learn's
    ``_kmeans_single_lloyd`` loop (E-step, M-step with relocation, strict convergence or
    shift <= tol, final E-step): on small problems the per-operation cost, not the
    arithmetic, is what bounds would add to."""
    n, k = len(X), len(centers)
    labels_old = torch.full((n,), -1, dtype=torch.int64, device=X.device)
    strict, n_iter = False, 0
    labels = labels_old
    sums = counts = torch.empty(0)
    for iteration in range(1, max_iter + 1):
        n_iter = iteration
        labels, _ = assign(X, centers, x_sq, chunk)
        if iteration == 1:
            sums, counts = _cluster_sums(X, labels, k, chunk, w)
        else:  # only the points that changed cluster move the sums
            _move_points(X, labels_old, labels, sums, counts, w)
        new_centers, relocated = _new_centers(X, labels, centers, sums, counts, w)
        if relocated:  # the relocated points changed cluster outside the E-step
            sums, counts = _cluster_sums(X, labels, k, chunk, w)
        shift = float((new_centers.double() - centers.double()).pow(2).sum())
        centers = new_centers
        if torch.equal(labels, labels_old):
            strict = True
            break
        if shift <= tol:
            break
        labels_old = labels
    if not strict:  # labels of the final centres
        labels, _ = assign(X, centers, x_sq, chunk)
    sq = _own_sq_distance(X, centers, labels).double()
    inertia = float(sq.sum() if w is None else (sq * w.double()).sum())
    return _LloydResult(centers, labels, inertia, n_iter, n * (n_iter + (0 if strict else 1)))


def lloyd(
    X: torch.Tensor,
    centers: torch.Tensor,
    max_iter: int,
    tol: float,
    chunk: int,
    bounds_mode: str = "elkan",
    sample_weight: torch.Tensor | None = None,
    x_sq: torch.Tensor | None = None,
) -> _LloydResult:
    """Lloyd's algorithm with scikit-learn's stopping rules: stop when no label changes
    (strict convergence) or when the squared centre shift sum_j ||c_j' - c_j||^2 <= ``tol``
    (already scaled), then one more E-step so labels match the final centres.

    E-steps skip points by ``bounds_mode``'s bounds (``_Bounds``); centre sums are updated incrementally
    in float64 from the points that changed cluster. ``sample_weight`` w gives the weighted
    means c_j = sum_{i in j} w_i x_i / sum_{i in j} w_i and inertia sum_i w_i ||x_i - c(i)||^2.
    """
    k, w = len(centers), sample_weight
    x_sq = _sq_norms(X) if x_sq is None else x_sq
    if bounds_mode == "none" or k == 1:
        return _plain_lloyd(X, centers, max_iter, tol, chunk, w, x_sq)
    # slack on the bounds so that rounding never skips a point that could move
    relative = 1e-4 if X.dtype == torch.float32 else 1e-8
    margin = relative * float(x_sq.double().mean().sqrt()) + 1e-12
    bounds = _Bounds(X, x_sq, k, chunk, margin, bounds_mode)
    bounds.full_assign(None, centers)
    sums, counts = _cluster_sums(X, bounds.labels, k, chunk, w)
    n_iter, n_changed = 0, -1
    for iteration in range(1, max_iter + 1):
        n_iter = iteration
        new_centers, relocated = _new_centers(X, bounds.labels, centers, sums, counts, w)
        shift = float((new_centers.double() - centers.double()).pow(2).sum())
        if n_changed == 0:
            centers = new_centers
            break  # strict convergence: labels equal to the previous E-step's
        old_labels = bounds.labels.clone()
        if relocated:
            bounds.full_assign(None, new_centers)
        else:
            bounds.update(centers, new_centers)
        centers = new_centers
        changed = torch.nonzero(bounds.labels != old_labels).flatten()
        n_changed = len(changed)
        if relocated:
            sums, counts = _cluster_sums(X, bounds.labels, k, chunk, w)
        elif n_changed:
            _move_points(X, old_labels, bounds.labels, sums, counts, w, changed)
        if shift <= tol:
            break
    sq = _own_sq_distance(X, centers, bounds.labels).double()
    inertia = float(sq.sum() if w is None else (sq * w.double()).sum())
    return _LloydResult(centers, bounds.labels, inertia, n_iter, bounds.distance_rows)


def batched_warm_lloyd(
    X: torch.Tensor, centers: torch.Tensor, max_iter: int, tol: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm on P datasets at once, each from its own centres.

    ``X`` is (P, n, d), ``centers`` (P, k, d), ``tol`` (P,) (already scaled as in ``lloyd``).
    Each iteration is one batched matrix product for the distances
    ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2 and one for the centre sums (one-hot^T X), so a
    population of attacked datasets costs a few large products instead of P Python loops. The
    stopping rules are ``lloyd``'s, per dataset (a finished dataset stops changing).

    Returns the final labels (P, n) and, per dataset, whether a cluster emptied on the way
    (the caller refits those one by one, since ``fit`` relocates empty clusters).
    """
    k = centers.shape[1]
    x_sq = X.pow(2).sum(-1, keepdim=True)

    def labels_of(c: torch.Tensor) -> torch.Tensor:
        d2 = torch.baddbmm(x_sq, X, c.transpose(1, 2), alpha=-2.0) + c.pow(2).sum(-1)[:, None]
        return d2.argmin(-1)

    labels = labels_of(centers)
    done = torch.zeros(len(X), dtype=torch.bool, device=X.device)
    emptied = torch.zeros_like(done)
    for _ in range(max_iter):
        one_hot = torch.nn.functional.one_hot(labels, k).to(X.dtype)  # (P, n, k)
        counts = one_hot.sum(1)  # (P, k)
        emptied |= (counts == 0).any(1) & ~done
        new = torch.bmm(one_hot.transpose(1, 2), X) / counts.clamp(min=1)[..., None]
        new = torch.where((counts > 0)[..., None], new, centers)
        shift = (new.double() - centers.double()).pow(2).sum((1, 2))
        centers = torch.where(done[:, None, None], centers, new)
        new_labels = labels_of(centers)
        unchanged = (new_labels == labels).all(1)
        labels = torch.where(done[:, None], labels, new_labels)
        done |= unchanged | (shift <= tol)
        if bool(done.all()):
            break
    return labels, emptied


def choose_bounds(n: int, d: int, k: int, cpu: bool = True) -> str:
    """How Lloyd runs for n points in d dimensions and k clusters: the rule measured by
    ``benchmarks/kmeans_modes.py`` (every mode from the same centres) and checked end to end
    by ``benchmarks/kmeans_vs_sklearn.py --cases grid`` (README).

    * ``"sklearn"``, on CPU when k * d <= 1,500, or n <= 20,000 and k * d <= 5,000 with
      k < 500: scikit-learn's compiled Lloyd loop from advlab's seeding. There a distance
      block is a small matrix product and each iteration is a dozen torch operations whose
      fixed cost (about 10-20 microseconds each, and an unfused argmin) exceeds the
      arithmetic; scikit-learn's fused loop took 1.35-2.1x less time than advlab's plain loop
      (n = 10,000; k = 10-195, d = 2-10) and gives the same result by construction.
    * ``"none"`` (plain Lloyd) when k < 50: a full distance row costs little more than the
      bounds' own pass over the row (d values to tighten the upper bound), so bounds do not
      pay (k = 10, d = 784: 2.3-2.4x slower with either bound).
    * ``"elkan"`` when d >= 100, or k >= 500 with d >= 8, and its n*k bounds fit in 1 GiB:
      a spared row is worth k*d multiply-adds, more than the pass over n*k bounds per
      iteration (Fashion-MNIST, k = 100: 1.5x faster than Hamerly's, 1.9x than
      scikit-learn's loop).
    * ``"hamerly"`` otherwise (d = 2-50 with k = 50-500, d < 8 with k >= 500): O(n) bounds
      per iteration (n = 60,000, d = 2, k = 856: 2.2x faster than scikit-learn's loop).
    """
    small = k * d <= SKLEARN_MAX_KD or (n <= 20000 and k * d <= 5000 and k < ELKAN_MIN_K)
    if cpu and small:
        return "sklearn"
    if k < BOUNDS_MIN_K:
        return "none"
    if n * k <= MAX_BOUND_FLOATS and (d >= ELKAN_MIN_D or (k >= ELKAN_MIN_K and d >= 8)):
        return "elkan"
    return "hamerly"


def _warn_if_fewer_clusters(labels: np.ndarray, n_clusters: int) -> None:
    """scikit-learn's ``ConvergenceWarning`` when fewer than ``n_clusters`` clusters hold a
    point (duplicate points: some centres coincide)."""
    distinct = len(np.unique(labels))
    if distinct < n_clusters:
        warnings.warn(
            f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
            f"({n_clusters}). Possibly due to duplicate points in X.",
            ConvergenceWarning,
            stacklevel=3,
        )


def _sklearn_lloyd(
    X: torch.Tensor, centers: torch.Tensor, params: Any, w: torch.Tensor | None
) -> _LloydResult:
    """scikit-learn's Lloyd on the working data (centred, scaled so that squared norms cannot
    overflow) from ``centers``; scikit-learn's tolerance, tol times the mean feature variance,
    is the same in that space."""
    from sklearn.cluster import KMeans as SKKMeans

    data = X.cpu().numpy()
    with warnings.catch_warnings():  # duplicate points: KMeans.fit warns once, on either path
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = SKKMeans(params.n_clusters, init=centers.cpu().numpy(), n_init=1,
                      max_iter=params.max_iter, tol=params.tol, algorithm="lloyd",
                      copy_x=True).fit(data, sample_weight=None if w is None else w.cpu().numpy())  # fmt: skip
    found = torch.from_numpy(km.cluster_centers_).to(centers.device)
    labels = torch.from_numpy(km.labels_.astype(np.int64)).to(centers.device)
    n_iter = int(km.n_iter_)
    return _LloydResult(found, labels, float(km.inertia_), n_iter, len(data) * (n_iter + 1))


# ----------------------------------------------------------------------------- input


def _check_2d(
    X: object, name: str = "X", estimator: object = None, reset: bool = True
) -> np.ndarray:
    """``X`` (N, ...) as a C-contiguous float64 or float32 (N, D) array, checked by
    scikit-learn's ``validate_data`` (or ``check_array`` without an estimator): images are
    flattened, lists accepted, float64 kept, other numbers converted to float64, sparse,
    complex, empty and non-finite input refused with scikit-learn's errors."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(X, np.ndarray) and X.ndim > 2:
        X = X.reshape(len(X), -1)
    params: dict[str, Any] = dict(dtype=[np.float64, np.float32], order="C", accept_sparse=False)
    if estimator is None:
        out = check_array(X, input_name=name, **params)
    else:
        out = validate_data(estimator, X, reset=reset, **params)
    return out if out.flags.writeable else out.copy()  # torch needs writable memory


def _weights_tensor(
    sample_weight: object, X: np.ndarray, device: torch.device
) -> torch.Tensor | None:
    if sample_weight is None:
        return None
    w = _check_sample_weight(sample_weight, X, dtype=X.dtype)
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("sample_weight must be finite, >= 0 and not all 0")
    return torch.from_numpy(w).to(device)


def _working_scale(*tensors: torch.Tensor) -> float:
    """A power-of-two factor s such that the squared norms of tensor / s neither overflow nor
    underflow the tensors' precision (1 for ordinary data). Dividing by a power of two is exact
    and changes no nearest-centre decision."""
    dtype = tensors[0].dtype
    info = torch.finfo(dtype)
    top = max(float(max(-lo, hi)) for lo, hi in (torch.aminmax(t) for t in tensors if t.numel()))
    d = max(t.shape[-1] for t in tensors)
    if top == 0.0 or (top * top * d < info.max / 64 and top * top > info.tiny * 1e8):
        return 1.0
    return float(2.0 ** math.frexp(top)[1])


# ----------------------------------------------------------------------------- estimator


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """k-means clustering (Lloyd) with scikit-learn's interface, on CPU or CUDA.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters k (1 <= k <= n_samples).
    init : {"k-means++", "random"}, callable or array-like of shape (k, n_features), \
default="k-means++"
        "k-means++": k-means|| oversampling + greedy k-means++ (see the module doc);
        "random": k distinct rows drawn uniformly; a callable ``init(X, n_clusters,
        random_state)`` returning the initial centres, called once per seeding with X as
        given (flattened) and the fit's RandomState (scikit-learn's form); an array: the
        initial centres (the form Algorithm 1's continuous learning uses).
    n_init : int or "auto", default=1
        Number of seedings; the run with the lowest inertia is kept. "auto" is scikit-learn's
        rule: 1 for "k-means++" and an array, 10 for "random" and a callable.
    max_iter : int, default=300
        Maximum number of Lloyd iterations.
    tol : float, default=1e-4
        Relative tolerance: stop when the squared centre shift is at most ``tol`` times the
        mean feature variance (scikit-learn's rule).
    random_state : int, RandomState instance or None, default=None
        Seeds the seeding; None draws fresh randomness (scikit-learn's convention).
    device : str or torch.device, default="cpu"
        Where the computation runs ("cpu", "cuda", ...); results are numpy arrays.
    chunk_size : int or None, default=None
        Rows per distance block (None: blocks of at most 64 MiB).
    init_algorithm : {"auto", "greedy", "parallel"}, default="auto"
        Seeding algorithm for ``init="k-means++"``; "auto" follows ``seed_indices``.
    bounds : {"elkan", "hamerly", "none", "sklearn"}, bool or None, default=None
        How Lloyd runs: with triangle-inequality bounds that skip settled points (exact
        either way), Elkan's (n*k values of memory) or Hamerly's (n values); without ("none");
        or scikit-learn's compiled loop from advlab's seeding ("sklearn", CPU). True means
        Elkan's, False none, None the measured rule of ``choose_bounds``.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (k, n_features), in the input's dtype
    labels_ : ndarray of shape (n_samples,), int64
    inertia_ : float
        Sum of (weighted) squared distances to the closest centre.
    n_iter_ : int
    n_features_in_ : int
    init_seconds_, fit_seconds_ : float
        Wall time of the seeding and of the whole fit.
    distance_rows_ : int
        Rows whose distances to all centres were computed during Lloyd (n per iteration
        without bounds).
    bounds_ : str
        How Lloyd ran: "elkan", "hamerly", "none" or "sklearn".

    Float32 input is computed in float32, float64 in float64, other numbers are converted to
    float64 (scikit-learn's rule); (N, C, H, W) images are flattened to (N, C*H*W).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), callable, "array-like"],
        "n_init": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
        "init_algorithm": [StrOptions({"auto", "greedy", "parallel"})],
        "bounds": ["boolean", StrOptions(set(BOUND_MODES)), None],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: str | Callable[..., ArrayLike] | ArrayLike = "k-means++",
        n_init: int | str = 1,
        max_iter: int = 300,
        tol: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
        device: str | torch.device = "cpu",
        chunk_size: int | None = None,
        init_algorithm: str = "auto",
        bounds: bool | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.chunk_size = chunk_size
        self.init_algorithm = init_algorithm
        self.bounds = bounds

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @property
    def _n_features_out(self) -> int:
        return int(self.cluster_centers_.shape[0])

    # -- fitting ---------------------------------------------------------------------------
    def _initial_centers(self, X: np.ndarray) -> np.ndarray | None:
        """The array ``init`` checked against X; None for a seeding ("k-means++", "random",
        a callable)."""
        if isinstance(self.init, str) or callable(self.init):
            return None
        return self._checked_centers(self.init, X, "init array")

    def _checked_centers(self, centers: object, X: np.ndarray, what: str) -> np.ndarray:
        init = _check_2d(centers, "init").astype(X.dtype, copy=False)
        if init.shape != (self.n_clusters, X.shape[1]):
            raise ValueError(
                f"{what} has shape {init.shape} after flattening, expected "
                f"({self.n_clusters}, {X.shape[1]})"
            )
        return init

    def _n_seedings(self) -> int:
        """``n_init``, with "auto" as scikit-learn reads it (1 for "k-means++" and an array,
        10 for "random" and a callable); 1 for an array whatever ``n_init`` says."""
        if self._initial_is_array():
            return 1
        if self.n_init == "auto":
            return 1 if isinstance(self.init, str) and self.init == "k-means++" else 10
        return int(self.n_init)

    def _initial_is_array(self) -> bool:
        return not isinstance(self.init, str) and not callable(self.init)

    def _seed(
        self, X: torch.Tensor, x_sq: torch.Tensor, rng: np.random.RandomState,
        w: torch.Tensor | None,
    ) -> torch.Tensor:  # fmt: skip
        if self.init == "random":
            idx = rng.choice(len(X), size=self.n_clusters, replace=False)
            return X[torch.as_tensor(idx, device=X.device)].clone()
        return X[seed_indices(X, x_sq, self.n_clusters, rng, self.init_algorithm, w)].clone()

    def _bounds_mode(self, n: int, d: int) -> str:
        """The E-step's bounds: as asked (True means Elkan's), or by ``choose_bounds``."""
        if self.bounds is None:
            cpu = torch.device(self.device).type == "cpu"
            return choose_bounds(n, d, self.n_clusters, cpu)
        if isinstance(self.bounds, str):
            return self.bounds
        return "elkan" if self.bounds else "none"

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None) -> KMeans:
        """Cluster ``X`` (n_samples, ...); ``y`` is ignored. ``sample_weight`` (n_samples,)
        weights each point in the means, the inertia and the seeding."""
        start = time.perf_counter()
        Xn = _check_2d(X, estimator=self)
        check_n_clusters(self.n_clusters, len(Xn))
        check_device(self.device)
        init = self._initial_centers(Xn)
        rng = check_random_state(self.random_state)
        Xt = torch.from_numpy(Xn).to(self.device)
        w = _weights_tensor(sample_weight, Xn, Xt.device)
        mean = (Xt.sum(0, dtype=torch.float64) / len(Xt)).to(Xt.dtype)
        Xc = Xt - mean  # centring improves the accuracy of the distance expansion
        scale = _working_scale(
            Xc, *(() if init is None else (torch.from_numpy(init) - mean.cpu(),))
        )
        if scale != 1.0:  # squared norms would overflow / underflow: work on Xc / scale
            Xc = Xc / scale
        chunk = self.chunk_size or _auto_chunk(len(Xc), self.n_clusters)
        x_sq = _sq_norms(Xc)
        # scikit-learn's tolerance, tol * mean feature variance: the centred rows' mean
        # squared norm over d (in the working scale, as the shifts it is compared with)
        tol = float(x_sq.sum(dtype=torch.float64)) / Xc.numel() * self.tol
        mode = self._bounds_mode(len(Xc), Xc.shape[1])
        best: _LloydResult | None = None
        init_seconds = 0.0
        for _ in range(self._n_seedings()):
            t0 = time.perf_counter()
            if callable(self.init):  # the user's seeding, on X as given
                init = self._checked_centers(
                    self.init(Xn, self.n_clusters, random_state=rng), Xn, "the array init returned"
                )
            if init is not None:
                centers = (torch.from_numpy(init).to(Xt.device) - mean) / scale
            else:
                centers = self._seed(Xc, x_sq, rng, w)
            init_seconds += time.perf_counter() - t0
            if mode == "sklearn":
                result = _sklearn_lloyd(Xc, centers, self, w)
            else:
                result = lloyd(Xc, centers, self.max_iter, tol, chunk, mode, w, x_sq)
            if best is None or result.inertia < best.inertia:
                best = result
        assert best is not None
        self.cluster_centers_ = (best.centers * scale + mean).cpu().numpy()
        self.labels_ = best.labels.cpu().numpy()
        self.inertia_ = best.inertia * scale * scale
        self.n_iter_ = best.n_iter
        self.init_seconds_ = init_seconds
        self.distance_rows_ = best.distance_rows
        self.bounds_ = mode
        self.fit_seconds_ = time.perf_counter() - start
        _warn_if_fewer_clusters(self.labels_, self.n_clusters)
        return self

    @classmethod
    def from_centers(cls, centers: ArrayLike, **params: Any) -> KMeans:
        """A fitted KMeans holding ``centers`` (k, ...) (for ``predict``, attacks, warm starts)."""
        c = _check_2d(centers, "centers")
        km = cls(n_clusters=len(c), **params)
        km.cluster_centers_ = c
        km.n_features_in_ = c.shape[1]
        return km

    def fit_predict(
        self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None
    ) -> np.ndarray:
        return self.fit(X, sample_weight=sample_weight).labels_

    # -- inference -------------------------------------------------------------------------
    def _inputs(self, X: ArrayLike) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Checked X and the centres on the device, in X's dtype, and their working scale."""
        check_is_fitted(self, "cluster_centers_")
        Xt = torch.from_numpy(_check_2d(X, estimator=self, reset=False)).to(
            check_device(self.device)
        )
        C = torch.as_tensor(self.cluster_centers_, device=self.device).to(Xt.dtype)
        return Xt, C, _working_scale(Xt, C)

    def fit_predict_many(self, Xs: ArrayLike) -> np.ndarray:
        """Cluster P datasets of the same shape, each as ``fit_predict`` would: labels (P, n).

        With an array ``init`` (a warm start, as an attack that refits the clusterer many times
        uses) and P > 1 the P fits run together in one batched Lloyd loop (``batched_warm_lloyd``),
        centred and scaled per dataset as ``fit`` does; a dataset on which a cluster empties is
        refitted alone, since ``fit`` relocates empty clusters. Otherwise each dataset is
        fitted in turn. The labels equal ``fit_predict``'s up to floating-point ties.

        Parameters
        ----------
        Xs : array-like of shape (P, n_samples, n_features)
            The datasets.

        Returns
        -------
        ndarray of shape (P, n_samples)
            The labels of each dataset.
        """
        batch = np.asarray(Xs)
        if batch.ndim != 3 or len(batch) == 0:
            raise ValueError(f"Xs must have shape (P, n_samples, n_features), got {batch.shape}")
        if not self._initial_is_array() or len(batch) == 1:
            return np.stack([self.fit_predict(x) for x in batch])  # one dataset: fit's own mode
        flat = _check_2d(batch.reshape(-1, batch.shape[-1]), estimator=self)
        check_n_clusters(self.n_clusters, batch.shape[1])
        check_device(self.device)
        init = self._initial_centers(flat[: batch.shape[1]])
        assert init is not None
        Xt = torch.from_numpy(flat).to(self.device).reshape(batch.shape)
        mean = Xt.mean(1, keepdim=True)  # centring per dataset, as fit does
        Xc = Xt - mean
        centers = torch.from_numpy(init).to(Xt)[None] - mean
        scale = _working_scale(Xc, centers)  # one scale for the batch (it only avoids overflow)
        if scale != 1.0:
            Xc, centers = Xc / scale, centers / scale
        tol = Xc.pow(2).sum((1, 2)).double() / Xc[0].numel() * self.tol
        labels, emptied = batched_warm_lloyd(Xc, centers, self.max_iter, tol)
        out = labels.cpu().numpy()
        for p in torch.nonzero(emptied).flatten().tolist():
            out[p] = self.fit_predict(batch[p])
        return out

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Index of the nearest centre for each sample."""
        Xt, C, scale = self._inputs(X)
        labels, _ = assign(Xt / scale, C / scale, chunk_size=self.chunk_size)
        return labels.cpu().numpy()

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Euclidean distance of each sample to each centre, shape (n, k), in X's dtype."""
        Xt, C, _ = self._inputs(X)
        return torch.cdist(Xt.double(), C.double()).to(Xt.dtype).cpu().numpy()

    def score(
        self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None
    ) -> float:
        """Opposite of the (weighted) inertia of ``X`` under the fitted centres."""
        Xt, C, scale = self._inputs(X)
        _, mind = assign(Xt / scale, C / scale, chunk_size=self.chunk_size)
        w = _weights_tensor(sample_weight, Xt.cpu().numpy(), Xt.device)
        d2 = mind.double() if w is None else mind.double() * w.double()
        return -float(d2.sum()) * scale * scale
