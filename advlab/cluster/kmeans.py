"""Fast k-means (Lloyd) in torch, with scikit-learn's estimator interface and semantics.

Why hand-written: scikit-learn's greedy k-means++ makes k sequential memory-bound passes over
the data (about 60 s of a 65 s fit for MNIST-60k, k = 856, on 2 cores). Here the seeding is
k-means|| (Bahmani et al., VLDB 2012): a few oversampling rounds whose distance computations are
matrix multiplies, followed by scikit-learn's greedy k-means++ on the small weighted candidate
set. Lloyd's iterations follow scikit-learn's ``_kmeans_single_lloyd`` step for step (same
convergence rule, same empty-cluster relocation, same final E-step), on CPU or CUDA.

Distances use ``||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2`` (a matrix multiply in the input's
precision: float32 stays float32, float64 stays float64, as in scikit-learn) on the centred data;
centre sums and inertia accumulate in float64. Optional ``sample_weight`` weights the means,
the inertia and the seeding, as scikit-learn's.
Memory: a copy of X (n*d*4 or 8 bytes), one distance block of at most ``chunk_size*k``
floats (64 MiB by default) and O(k*d) float64 for the centre sums.
"""

from __future__ import annotations

import math
import time
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
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from advlab.cluster._validation import ArrayLike, check_n_clusters

BLOCK_FLOATS = 1 << 24  # 64 MiB of float32 per distance block
CACHE_ROWS = 2048  # rows per block for memory-bound elementwise passes
MAX_BOUND_FLOATS = 1 << 28  # 1 GiB of float32 for Elkan's bounds when bounds=None


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
    """Nearest centre of each row of ``X``: (labels int64, squared distance in X's dtype)."""
    C = C.to(X.dtype)
    x_sq = _sq_norms(X) if x_sq is None else x_sq
    c_sq = _sq_norms(C)
    chunk = chunk_size or _auto_chunk(len(X), len(C))
    labels = torch.empty(len(X), dtype=torch.int64, device=X.device)
    mind = torch.empty(len(X), dtype=X.dtype, device=X.device)
    for sl in _chunks(len(X), chunk):
        d2 = _sq_distances(X[sl], C, x_sq[sl], c_sq)
        mind[sl], labels[sl] = d2.min(dim=1)
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
    weights = torch.bincount(nearest, weights=w, minlength=len(cand)).double()
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
    ``"parallel"``, or for ``"auto"`` when n > 20 k (the candidate pass then costs a few matrix
    multiplies instead of k sequential passes); greedy k-means++ otherwise. Row indices."""
    if init_algorithm not in ("auto", "greedy", "parallel"):
        raise ValueError(f"init_algorithm={init_algorithm!r}: use 'auto', 'greedy' or 'parallel'")
    if init_algorithm == "parallel" or (init_algorithm == "auto" and len(X) > 20 * k):
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


class _Bounds:
    """Elkan's triangle-inequality bounds (Elkan, ICML 2003) with lazy drift, by whole rows.

    For each point x: ``upper[x]`` >= distance to its centre a. Elkan keeps lower bounds
    l(x, c) <= d(x, c) for every centre and lowers them by the centre's move delta_c after each
    M-step. Here the drift is applied lazily: ``shifted[x, c] = l(x, c) + D_c`` at the time of
    the last refresh, with D_c the cumulative move of centre c, so the current bound is
    ``shifted[x, c] - D_c`` and no n*k update is written per iteration. A point cannot change
    cluster when ``upper <= max(min_{c != a} l(x, c), s_a)``, ``s_a`` being half the distance
    from a to its nearest other centre; only the other rows get a full distance row (one
    matrix multiply for all of them), which refreshes their bounds exactly. The result is
    exactly Lloyd's; the work shrinks as points settle. Memory: n*k values of X's dtype.
    """

    def __init__(
        self,
        X: torch.Tensor,
        x_sq: torch.Tensor,
        k: int,
        chunk: int,
        margin: float,
        use_bounds: bool,
    ) -> None:
        self.X, self.x_sq, self.chunk, self.margin = X, x_sq, chunk, margin
        n, dtype = len(X), X.dtype
        self.labels = torch.zeros(n, dtype=torch.int64, device=X.device)
        self.upper = torch.zeros(n, device=X.device, dtype=dtype)
        self.use_bounds = use_bounds and k > 1
        self.shifted = (
            torch.empty((n, k), device=X.device, dtype=dtype) if self.use_bounds else None
        )
        self.drift = torch.zeros(k, dtype=torch.float64, device=X.device)
        self.distance_rows = 0

    def full_assign(self, rows: torch.Tensor | None, centers: torch.Tensor) -> None:
        """Exact distances of ``rows`` (all rows when None) to every centre."""
        c_sq = _sq_norms(centers)
        drift = self.drift.to(self.X.dtype)
        index = torch.arange(len(self.X), device=self.X.device) if rows is None else rows
        self.distance_rows += len(index)
        for sl in _chunks(len(index), self.chunk):
            idx = index[sl]
            d2 = _sq_distances(self.X[idx], centers, self.x_sq[idx], c_sq)
            best, labels = d2.min(dim=1)
            self.labels[idx], self.upper[idx] = labels, best.sqrt()
            if self.shifted is not None:
                d2.sqrt_().add_(drift)
                d2[torch.arange(len(idx), device=d2.device), labels] = float("inf")
                self.shifted[idx] = d2

    def _own_distance(self, rows: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """Exact distance of each of ``rows`` to its assigned centre (cache-sized blocks)."""
        out = torch.empty(len(rows), device=self.X.device, dtype=self.X.dtype)
        for sl in _chunks(len(rows), CACHE_ROWS):
            idx = rows[sl]
            diff = self.X[idx] - centers[self.labels[idx]]
            out[sl] = torch.linalg.vector_norm(diff, dim=1)
        return out

    def update(self, old: torch.Tensor, new: torch.Tensor) -> None:
        """Re-assign after the centres moved from ``old`` to ``new``, skipping safe rows."""
        if self.shifted is None:
            self.full_assign(None, new)
            return
        dtype = self.X.dtype
        delta = (new.double() - old.double()).pow(2).sum(1).sqrt()
        self.drift += delta
        self.upper += delta.to(dtype)[self.labels]
        new_sq = _sq_norms(new)
        half_gap = (
            0.5
            * _sq_distances(new, new, new_sq, new_sq)
            .fill_diagonal_(float("inf"))
            .min(1)
            .values.sqrt()
        )
        drift = self.drift.to(dtype)
        second = torch.empty_like(self.upper)
        for sl in _chunks(len(self.X), CACHE_ROWS):
            second[sl] = torch.sub(self.shifted[sl], drift).amin(1)
        bound = torch.maximum(second, half_gap[self.labels]) - self.margin
        active = torch.nonzero(self.upper > bound).flatten()
        if len(active) == 0:
            return
        own = self._own_distance(active, new)
        self.upper[active] = own  # tighten the upper bound to the exact distance
        active = active[own > bound[active]]
        if len(active):
            self.full_assign(active, new)


def _weighted(X: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    return X if w is None else X * w.to(X.dtype).unsqueeze(1)


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
    return sums, torch.bincount(labels, weights=w, minlength=k).double()


def _new_centers(
    X: torch.Tensor,
    bounds: _Bounds,
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
    dist = (X - centers[bounds.labels]).pow(2).sum(1)
    far = torch.topk(dist, len(empty)).indices
    for cluster, idx in zip(empty.tolist(), far.tolist(), strict=True):
        old = int(bounds.labels[idx])
        weight = 1.0 if w is None else float(w[idx])
        sums[old] -= X[idx].double() * weight
        counts[old] -= weight
        sums[cluster] = X[idx].double() * weight
        counts[cluster] = weight
    safe = torch.where(counts > 0, counts, torch.ones_like(counts))
    return (sums / safe.unsqueeze(1)).to(X.dtype), True


def lloyd(
    X: torch.Tensor,
    centers: torch.Tensor,
    max_iter: int,
    tol: float,
    chunk: int,
    use_bounds: bool = True,
    sample_weight: torch.Tensor | None = None,
) -> _LloydResult:
    """Lloyd's algorithm with scikit-learn's stopping rules: stop when no label changes
    (strict convergence) or when the squared centre shift sum_j ||c_j' - c_j||^2 <= ``tol``
    (already scaled), then one more E-step so labels match the final centres.

    E-steps use Elkan's bounds (``_Bounds``); centre sums are updated incrementally
    in float64 from the points that changed cluster. ``sample_weight`` w gives the weighted
    means c_j = sum_{i in j} w_i x_i / sum_{i in j} w_i and inertia sum_i w_i ||x_i - c(i)||^2.
    """
    k, w = len(centers), sample_weight
    x_sq = _sq_norms(X)
    # slack on the bounds so that rounding never skips a point that could move
    relative = 1e-4 if X.dtype == torch.float32 else 1e-8
    margin = relative * float(x_sq.double().mean().sqrt()) + 1e-12
    bounds = _Bounds(X, x_sq, k, chunk, margin, use_bounds)
    bounds.full_assign(None, centers)
    sums, counts = _cluster_sums(X, bounds.labels, k, chunk, w)
    n_iter, n_changed = 0, -1
    for iteration in range(1, max_iter + 1):
        n_iter = iteration
        new_centers, relocated = _new_centers(X, bounds, centers, sums, counts, w)
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
            wc = None if w is None else w[changed]
            moved = _weighted(X[changed].double(), wc)
            mass = torch.ones_like(moved[:, 0]) if wc is None else wc.double()
            sums.index_add_(0, old_labels[changed], moved, alpha=-1.0)
            sums.index_add_(0, bounds.labels[changed], moved)
            counts.index_add_(0, old_labels[changed], -mass)
            counts.index_add_(0, bounds.labels[changed], mass)
        if shift <= tol:
            break
    sq = (X - centers[bounds.labels]).pow(2).sum(1).double()
    inertia = float(sq.sum() if w is None else (sq * w.double()).sum())
    return _LloydResult(centers, bounds.labels, inertia, n_iter, bounds.distance_rows)


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
    top = max(float(t.abs().max()) for t in tensors if t.numel())
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
    init : {"k-means++", "random"} or array-like of shape (k, n_features), default="k-means++"
        "k-means++": k-means|| oversampling + greedy k-means++ (see the module doc);
        "random": k distinct rows drawn uniformly; an array: the initial centres (the form
        Algorithm 1's continuous learning uses).
    n_init : int, default=1
        Number of seedings; the run with the lowest inertia is kept.
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
    bounds : bool or None, default=None
        Use Elkan's bounds to skip settled points (exact; needs n*k values of memory).
        None turns them on when that is at most 1 GiB.

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

    Float32 input is computed in float32, float64 in float64, other numbers are converted to
    float64 (scikit-learn's rule); (N, C, H, W) images are flattened to (N, C*H*W).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), "array-like"],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
        "init_algorithm": [StrOptions({"auto", "greedy", "parallel"})],
        "bounds": ["boolean", None],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: str | ArrayLike = "k-means++",
        n_init: int = 1,
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
        if isinstance(self.init, str):
            return None
        init = _check_2d(self.init, "init").astype(X.dtype, copy=False)
        if init.shape != (self.n_clusters, X.shape[1]):
            raise ValueError(
                f"init array has shape {init.shape} after flattening, expected "
                f"({self.n_clusters}, {X.shape[1]})"
            )
        return init

    def _seed(
        self, X: torch.Tensor, x_sq: torch.Tensor, rng: np.random.RandomState,
        w: torch.Tensor | None,
    ) -> torch.Tensor:  # fmt: skip
        if self.init == "random":
            idx = rng.choice(len(X), size=self.n_clusters, replace=False)
            return X[torch.as_tensor(idx, device=X.device)].clone()
        return X[seed_indices(X, x_sq, self.n_clusters, rng, self.init_algorithm, w)].clone()

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None) -> KMeans:
        """Cluster ``X`` (n_samples, ...); ``y`` is ignored. ``sample_weight`` (n_samples,)
        weights each point in the means, the inertia and the seeding."""
        start = time.perf_counter()
        Xn = _check_2d(X, estimator=self)
        check_n_clusters(self.n_clusters, len(Xn))
        init = self._initial_centers(Xn)
        rng = check_random_state(self.random_state)
        Xt = torch.from_numpy(Xn).to(self.device)
        w = _weights_tensor(sample_weight, Xn, Xt.device)
        mean = Xt.double().mean(0).to(Xt.dtype)
        Xc = Xt - mean  # centring improves the accuracy of the distance expansion
        scale = _working_scale(
            Xc, *(() if init is None else (torch.from_numpy(init) - mean.cpu(),))
        )
        if scale != 1.0:  # squared norms would overflow / underflow: work on Xc / scale
            Xc = Xc / scale
        tol = float(torch.from_numpy(Xn).double().var(0, unbiased=False).mean()) * self.tol
        tol /= scale * scale
        chunk = self.chunk_size or _auto_chunk(len(Xc), self.n_clusters)
        x_sq = _sq_norms(Xc)
        use_bounds = (
            self.bounds
            if self.bounds is not None
            else len(Xc) * self.n_clusters <= MAX_BOUND_FLOATS
        )
        best: _LloydResult | None = None
        init_seconds = 0.0
        for _ in range(1 if init is not None else self.n_init):
            t0 = time.perf_counter()
            if init is not None:
                centers = (torch.from_numpy(init).to(Xt.device) - mean) / scale
            else:
                centers = self._seed(Xc, x_sq, rng, w)
            init_seconds += time.perf_counter() - t0
            result = lloyd(Xc, centers, self.max_iter, tol, chunk, use_bounds, w)
            if best is None or result.inertia < best.inertia:
                best = result
        assert best is not None
        self.cluster_centers_ = (best.centers * scale + mean).cpu().numpy()
        self.labels_ = best.labels.cpu().numpy()
        self.inertia_ = best.inertia * scale * scale
        self.n_iter_ = best.n_iter
        self.init_seconds_ = init_seconds
        self.distance_rows_ = best.distance_rows
        self.fit_seconds_ = time.perf_counter() - start
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
        Xt = torch.from_numpy(_check_2d(X, estimator=self, reset=False)).to(self.device)
        C = torch.as_tensor(self.cluster_centers_, device=self.device).to(Xt.dtype)
        return Xt, C, _working_scale(Xt, C)

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
