"""Fast k-means (Lloyd) in torch, with scikit-learn's estimator interface and semantics.

Why hand-written: scikit-learn's greedy k-means++ makes k sequential memory-bound passes over
the data (about 60 s of a 65 s fit for MNIST-60k, k = 856, on 2 cores). Here the seeding is
k-means|| (Bahmani et al., VLDB 2012): a few oversampling rounds whose distance computations are
matrix multiplies, followed by scikit-learn's greedy k-means++ on the small weighted candidate
set. Lloyd's iterations follow scikit-learn's ``_kmeans_single_lloyd`` step for step (same
convergence rule, same empty-cluster relocation, same final E-step), on CPU or CUDA.

Distances use ``||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2`` (float32 matrix multiply) on the
centred data, as scikit-learn does; centre sums and inertia accumulate in float64.
Memory: the float32 copy of X (n*d*4 bytes), one distance block of at most ``chunk_size*k``
floats (64 MiB by default) and O(k*d) float64 for the centre sums.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils import check_random_state

from advlab.cluster._validation import ArrayLike, as_float_matrix, check_n_clusters

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
    """Nearest centre of each row of ``X``: (labels int64, squared distance float32)."""
    x_sq = _sq_norms(X) if x_sq is None else x_sq
    c_sq = _sq_norms(C)
    chunk = chunk_size or _auto_chunk(len(X), len(C))
    labels = torch.empty(len(X), dtype=torch.int64, device=X.device)
    mind = torch.empty(len(X), dtype=torch.float32, device=X.device)
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
    w = torch.ones(n, device=X.device) if weights is None else weights.float()
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
) -> torch.Tensor:
    """k-means|| seeding (Bahmani et al. 2012, Alg. 2) followed by weighted greedy k-means++.

    Start from one uniform point; for each of ``rounds`` rounds sample every point
    independently with probability min(1, l D(x)^2 / sum D^2), l = ``oversampling * k``.
    Weight each candidate by the number of points closest to it, then reduce the
    (about l * rounds) candidates to k centres with greedy k-means++. Returns row indices.
    """
    n = len(X)
    ell = oversampling * n_clusters
    first = int(rng.randint(n))
    candidates = [torch.tensor([first], device=X.device)]
    closest = _sq_distances(X, X[first : first + 1], x_sq, x_sq[first : first + 1])[:, 0]
    nearest = torch.zeros(n, dtype=torch.int64, device=X.device)
    n_cand = 1
    for _ in range(rounds):
        total = float(closest.double().sum())
        if total <= 0:
            break
        prob = (ell * closest.double() / total).clamp_(max=1.0).cpu().numpy()
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
        return greedy_kmeanspp(X, n_clusters, rng)
    weights = torch.bincount(nearest, minlength=len(cand)).double()
    local = greedy_kmeanspp(X[cand], n_clusters, rng, weights=weights)
    return cand[local]


def kmeans_plusplus(
    X: ArrayLike,
    n_clusters: int,
    random_state: int | np.random.RandomState | None = None,
    init_algorithm: str = "auto",
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding alone, like ``sklearn.cluster.kmeans_plusplus``: (centres, indices).

    ``init_algorithm``: ``"greedy"`` (scikit-learn's algorithm), ``"parallel"`` (k-means||
    then greedy k-means++ on the weighted candidates) or ``"auto"`` (parallel when n > 10 k).
    """
    Xt = as_float_matrix(X, device)
    check_n_clusters(n_clusters, len(Xt))
    rng = check_random_state(random_state)
    Xc = Xt - Xt.double().mean(0).float()
    idx = _seed_indices(Xc, _sq_norms(Xc), n_clusters, rng, init_algorithm)
    return Xt[idx].cpu().numpy(), idx.cpu().numpy()


def _seed_indices(
    X: torch.Tensor, x_sq: torch.Tensor, k: int, rng: np.random.RandomState, init_algorithm: str
) -> torch.Tensor:
    if init_algorithm not in ("auto", "greedy", "parallel"):
        raise ValueError(f"init_algorithm={init_algorithm!r}: use 'auto', 'greedy' or 'parallel'")
    if init_algorithm == "parallel" or (init_algorithm == "auto" and len(X) > 10 * k):
        return kmeans_parallel_init(X, k, rng, x_sq)
    return greedy_kmeanspp(X, k, rng)


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
    exactly Lloyd's; the work shrinks as points settle. Memory: n*k float32 for ``shifted``.
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
        n = len(X)
        self.labels = torch.zeros(n, dtype=torch.int64, device=X.device)
        self.upper = torch.zeros(n, device=X.device)
        self.use_bounds = use_bounds and k > 1
        self.shifted = torch.empty((n, k), device=X.device) if self.use_bounds else None
        self.drift = torch.zeros(k, dtype=torch.float64, device=X.device)
        self.distance_rows = 0

    def full_assign(self, rows: torch.Tensor | None, centers: torch.Tensor) -> None:
        """Exact distances of ``rows`` (all rows when None) to every centre."""
        c_sq = _sq_norms(centers)
        drift = self.drift.float()
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
        out = torch.empty(len(rows), device=self.X.device)
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
        delta = (new.double() - old.double()).pow(2).sum(1).sqrt()
        self.drift += delta
        self.upper += delta.float()[self.labels]
        new_sq = _sq_norms(new)
        half_gap = (
            0.5
            * _sq_distances(new, new, new_sq, new_sq)
            .fill_diagonal_(float("inf"))
            .min(1)
            .values.sqrt()
        )
        drift = self.drift.float()
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


def _cluster_sums(
    X: torch.Tensor, labels: torch.Tensor, k: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster sums of the points (float64, accumulated by float32 blocks) and counts."""
    sums = torch.zeros((k, X.shape[1]), dtype=torch.float64, device=X.device)
    block = torch.empty((k, X.shape[1]), dtype=torch.float32, device=X.device)
    for sl in _chunks(len(X), chunk):
        block.zero_().index_add_(0, labels[sl], X[sl])
        sums += block
    return sums, torch.bincount(labels, minlength=k).double()


def _new_centers(
    X: torch.Tensor,
    bounds: _Bounds,
    centers: torch.Tensor,
    sums: torch.Tensor,
    counts: torch.Tensor,
) -> tuple[torch.Tensor, bool]:
    """M-step: means of the clusters. Empty clusters are relocated as in scikit-learn: the
    points farthest from their centre become the centres of the empty clusters (and leave
    their old cluster's mean). Returns the centres and whether a relocation happened."""
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty) == 0:
        return (sums / counts.unsqueeze(1)).float(), False
    sums, counts = sums.clone(), counts.clone()
    dist = (X - centers[bounds.labels]).pow(2).sum(1)
    far = torch.topk(dist, len(empty)).indices
    for cluster, idx in zip(empty.tolist(), far.tolist(), strict=True):
        old = int(bounds.labels[idx])
        sums[old] -= X[idx].double()
        counts[old] -= 1
        sums[cluster] = X[idx].double()
        counts[cluster] = 1
    return (sums / counts.clamp(min=1).unsqueeze(1)).float(), True


def lloyd(
    X: torch.Tensor,
    centers: torch.Tensor,
    max_iter: int,
    tol: float,
    chunk: int,
    use_bounds: bool = True,
) -> _LloydResult:
    """Lloyd's algorithm with scikit-learn's stopping rules: stop when no label changes
    (strict convergence) or when the squared centre shift sum_j ||c_j' - c_j||^2 <= ``tol``
    (already scaled), then one more E-step so labels match the final centres.

    E-steps use Elkan's bounds (:class:`_Bounds`); centre sums are updated incrementally
    in float64 from the points that changed cluster.
    """
    k = len(centers)
    x_sq = _sq_norms(X)
    # float32 slack on the bounds so that rounding never skips a point that could move
    margin = 1e-4 * float(x_sq.double().mean().sqrt()) + 1e-12
    bounds = _Bounds(X, x_sq, k, chunk, margin, use_bounds)
    bounds.full_assign(None, centers)
    sums, counts = _cluster_sums(X, bounds.labels, k, chunk)
    n_iter, n_changed = 0, -1
    for iteration in range(1, max_iter + 1):
        n_iter = iteration
        new_centers, relocated = _new_centers(X, bounds, centers, sums, counts)
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
            sums, counts = _cluster_sums(X, bounds.labels, k, chunk)
        elif n_changed:
            moved = X[changed].double()
            sums.index_add_(0, old_labels[changed], moved, alpha=-1.0)
            sums.index_add_(0, bounds.labels[changed], moved)
            counts.index_add_(0, old_labels[changed], torch.full_like(moved[:, 0], -1.0))
            counts.index_add_(0, bounds.labels[changed], torch.ones_like(moved[:, 0]))
        if shift <= tol:
            break
    inertia = float((X - centers[bounds.labels]).pow(2).sum(1).double().sum())
    return _LloydResult(centers, bounds.labels, inertia, n_iter, bounds.distance_rows)


# ----------------------------------------------------------------------------- estimator


class KMeans:
    """k-means clustering (Lloyd) with scikit-learn's interface, on CPU or CUDA.

    Parameters:
        n_clusters: number of clusters k (1 <= k <= n_samples).
        init: ``"k-means++"`` (k-means|| oversampling + greedy k-means++, see module doc),
            ``"random"`` (k distinct rows drawn uniformly) or an array (k, ...) of initial
            centres — the form Algorithm 1's continuous learning uses.
        n_init: number of seedings; the run with the lowest inertia is kept.
        max_iter, tol: as scikit-learn; ``tol`` is relative to the mean feature variance.
        random_state: int, RandomState or None.
        device: ``"cpu"``, ``"cuda"`` or a torch.device.
        chunk_size: rows per distance block (default: blocks of at most 64 MiB).
        init_algorithm: ``"auto"`` (k-means|| when n > 10 k, else greedy), ``"greedy"``
            or ``"parallel"``; only used with ``init="k-means++"``.
        bounds: use Elkan's bounds to skip settled points (exact; needs n*k*4 bytes). ``None``
            (default) turns them on when that is at most 1 GiB.

    Memory: the float32 copy of X, one distance block of at most 64 MiB (``chunk_size * k``
    floats), O(k*d) float64 for the centre sums, and n*k float32 when ``bounds`` is on.

    Fitted attributes: ``cluster_centers_`` (k, D) float32, ``labels_`` (n,) int64,
    ``inertia_`` (sum of squared distances to the closest centre), ``n_iter_``,
    ``n_features_in_``, ``init_seconds_``, ``fit_seconds_``, ``distance_rows_`` (rows whose
    distances to all centres were computed during Lloyd: n per iteration without bounds).
    """

    def __init__(
        self,
        n_clusters: int = 8,
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

    # -- validation ------------------------------------------------------------------------
    def _check_params(self, n: int, d: int) -> torch.Tensor | None:
        check_n_clusters(self.n_clusters, n)
        if self.max_iter < 1:
            raise ValueError(f"max_iter={self.max_iter} must be >= 1")
        if not self.tol >= 0:
            raise ValueError(f"tol={self.tol} must be >= 0")
        if self.n_init < 1:
            raise ValueError(f"n_init={self.n_init} must be >= 1")
        if self.init_algorithm not in ("auto", "greedy", "parallel"):
            raise ValueError(
                f"init_algorithm={self.init_algorithm!r}: use 'auto', 'greedy' or 'parallel'"
            )
        if isinstance(self.init, str):
            if self.init not in ("k-means++", "random"):
                raise ValueError(
                    f"init={self.init!r}: use 'k-means++', 'random' or an array of centres"
                )
            return None
        init = as_float_matrix(self.init, self.device, "init")
        if init.shape != (self.n_clusters, d):
            raise ValueError(
                f"init array has shape {tuple(init.shape)} after flattening, expected ({self.n_clusters}, {d})"
            )
        return init

    def _check_fitted_input(self, X: ArrayLike) -> torch.Tensor:
        if not hasattr(self, "cluster_centers_"):
            raise RuntimeError("this KMeans is not fitted yet; call fit first")
        Xt = as_float_matrix(X, self.device)
        if Xt.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {Xt.shape[1]} features, but KMeans was fitted with {self.n_features_in_}"
            )
        return Xt

    # -- fitting ---------------------------------------------------------------------------
    def _seed(
        self, X: torch.Tensor, x_sq: torch.Tensor, rng: np.random.RandomState
    ) -> torch.Tensor:
        n, k = len(X), self.n_clusters
        if self.init == "random":
            return X[torch.as_tensor(rng.choice(n, size=k, replace=False), device=X.device)].clone()
        use_parallel = self.init_algorithm == "parallel" or (
            self.init_algorithm == "auto" and n > 20 * k
        )
        if use_parallel:
            idx = kmeans_parallel_init(X, k, rng, x_sq)
        else:
            idx = greedy_kmeanspp(X, k, rng)
        return X[idx].clone()

    def fit(self, X: ArrayLike, y: object = None) -> KMeans:
        """Cluster ``X`` (N, ...) ; ``y`` is ignored (present for pipeline compatibility)."""
        start = time.perf_counter()
        Xt = as_float_matrix(X, self.device)
        init = self._check_params(*Xt.shape)
        rng = check_random_state(self.random_state)
        mean = Xt.double().mean(0).float()
        Xc = Xt - mean  # centring improves float32 accuracy of the distance expansion
        tol = float(Xt.double().var(0, unbiased=False).mean()) * self.tol
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
            centers = (init - mean) if init is not None else self._seed(Xc, x_sq, rng)
            init_seconds += time.perf_counter() - t0
            result = lloyd(Xc, centers, self.max_iter, tol, chunk, use_bounds)
            if best is None or result.inertia < best.inertia:
                best = result
        assert best is not None
        self.cluster_centers_ = (best.centers + mean).cpu().numpy()
        self.labels_ = best.labels.cpu().numpy()
        self.inertia_ = best.inertia
        self.n_iter_ = best.n_iter
        self.n_features_in_ = Xt.shape[1]
        self.init_seconds_ = init_seconds
        self.distance_rows_ = best.distance_rows
        self.fit_seconds_ = time.perf_counter() - start
        return self

    @classmethod
    def from_centers(cls, centers: ArrayLike, **params: object) -> KMeans:
        """A fitted-like KMeans holding ``centers`` (k, ...) (for ``predict``, attacks, warm starts)."""
        c = as_float_matrix(centers, str(params.get("device", "cpu")), "centers")
        km = cls(n_clusters=len(c), **params)  # type: ignore[arg-type]
        km.cluster_centers_ = c.cpu().numpy()
        km.n_features_in_ = c.shape[1]
        return km

    def fit_predict(self, X: ArrayLike, y: object = None) -> np.ndarray:
        return self.fit(X).labels_

    # -- inference -------------------------------------------------------------------------
    def _centers(self) -> torch.Tensor:
        return torch.as_tensor(self.cluster_centers_, device=self.device)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Index of the nearest centre for each sample."""
        labels, _ = assign(self._check_fitted_input(X), self._centers(), chunk_size=self.chunk_size)
        return labels.cpu().numpy()

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Euclidean distance of each sample to each centre, shape (n, k)."""
        Xt, C = self._check_fitted_input(X), self._centers()
        return torch.cdist(Xt.double(), C.double()).float().cpu().numpy()

    def score(self, X: ArrayLike, y: object = None) -> float:
        """Opposite of the inertia of ``X`` under the fitted centres."""
        _, mind = assign(self._check_fitted_input(X), self._centers(), chunk_size=self.chunk_size)
        return -float(mind.double().sum())
