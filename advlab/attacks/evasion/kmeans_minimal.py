"""Exact robustness of k-means: certified radius and the minimal perturbation.

k-means assigns x to its nearest centre, so its decision regions are Voronoi cells. For x in
the cell of c_i, z is closer to c_j than to c_i iff ``2 z.(c_j - c_i) >= ||c_j||^2 - ||c_i||^2``,
a half-space H_ij bounded by the bisecting hyperplane of c_i and c_j. The distance from x to
that hyperplane in the norm p is (dual norm q: q = 2 for p = 2, q = 1 for p = inf)

    r_ij(x) = (||x - c_j||^2 - ||x - c_i||^2) / (2 ||c_j - c_i||_q)          (eq. R)

and the smallest perturbation that changes the cluster has size r(x) = min_{j != i} r_ij(x)
(the cell is the intersection of the half-spaces). Restricting j to clusters mapped to another
class gives a lower bound on the perturbation that changes the *predicted class*, because the
cell of c_j lies inside H_ij. Both ignore the [0, 1] box, so they are certified lower bounds.
Behind a pipeline's affine steps f(x) = A x + b the same holds in the pipeline's input space
with c_j replaced by u_j = A^T c_j and ||c_j||^2 by gamma_j (``advlab.cluster.cells``, eq. P
and H); everything below is written for a plain k-means.

``KMeansMinimalAttack`` computes the perturbation itself with the box respected: the
closest point of ``box ∩ H_ij`` is ``clip(x + lam * w)`` (clipping to the box) in L2 (KKT conditions of the
projection) and ``clip(x + t * sign(w))`` in L-inf, w = c_j - c_i, with the smallest
feasible ``lam`` / ``t`` found in closed form (``_smallest_step``). Candidates j are tried in increasing order of
r_ij; since the boxed distance is never below r_ij, the search stops with a proof of
optimality once the best boxed distance is <= the next r_ij (``"any-cluster"``). For
``"other-class"`` the landing cluster is checked and the best successful candidate is returned,
together with a bisection along the segment from x to each candidate centre (a point that
always succeeds): an upper bound on the true minimum, which needs the distance to each whole
cell. With ``exact=True`` that distance is computed: for every cluster j of another class
whose lower bound (the distance to box ∩ H_ij) is below the best size found so far, the
program

    min ||z - x||  s.t.  lo <= z_d <= hi,
                         (c_l - c_j).z <= (||c_l||^2 - ||c_j||^2) / 2 - m_l   for every l != j

(the cell of c_j, shrunk by the overshoot margin m_l) is solved, so the minimum over j is the
exact minimal perturbation that changes the predicted class, up to the margin and the solver's
tolerance. In L-inf it is a linear program (eq. LP: min t with |z_d - x_d| <= t); in L2 a
projection onto a polytope, solved through its dual (eq. D):

    max_{lam >= 0} g(lam) = 1/2 ||delta(lam)||^2 + lam.(W delta(lam) - b),
    delta(lam) = clip(-W^T lam, lo - x, hi - x),

concave and differentiable with gradient W delta(lam) - b (W, b: the cell's rows in delta = z -
x); every lam >= 0 gives the lower bound sqrt(2 g(lam)) on the distance, and at the optimum
delta(lam) is the projection.

Per-feature units (``scale``): with s_d >= 0 per feature, a perturbation's size is the weighted
norm ||delta / s||_p, and s_d = 0 freezes feature d (the L-inf ball of radius r is then the
per-feature budget r s_d). Everything above carries over with the dual norm ||s * w||_q in
eq. R, the moves s * sign(w) (L-inf) and s^2 * w (L2) in the closed form, the rows
|delta_d| <= t s_d in eq. LP, and delta = s * delta' in eq. D (the projection in delta').
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linprog, minimize

from advlab.attacks.evasion.base import (
    AttackResult,
    MinimizationAttack,
    check_norm,
    weighted_norm,
)
from advlab.attacks.evasion.kmeans_pgd import kmeans_model
from advlab.cluster._validation import ArrayLike, as_float_matrix
from advlab.cluster.cells import KMeansCells, check_mapping, kmeans_cells
from advlab.utils.validation import (
    Bounds,
    BoundsLike,
    BudgetLike,
    check_bounds,
    check_bounds_shape,
    check_images,
    check_number,
    check_units,
    clamp_between,
    flat_bounds,
    per_feature,
)

TARGETS = ("any-cluster", "other-class")


def _flat_box(bounds: Bounds | None, sample_shape: tuple[int, ...]) -> Bounds | None:
    """Checked ``bounds`` for inputs flattened from ``sample_shape``: None, two floats, or
    per-feature bounds as two float64 tensors of shape (D,)."""
    if bounds is None or not per_feature(bounds):
        return bounds
    lo, hi = flat_bounds(bounds, sample_shape)
    return torch.as_tensor(lo), torch.as_tensor(hi)


def _numpy_box(bounds: Bounds) -> tuple[float | np.ndarray, float | np.ndarray]:
    """A flat box (``_flat_box``) for numpy: per-feature tensors as arrays."""
    lo, hi = bounds
    return tuple(b.numpy() if isinstance(b, torch.Tensor) else b for b in (lo, hi))  # type: ignore[return-value]


def _bisector_distances(
    x: torch.Tensor,
    cells: KMeansCells,
    norm: str,
    mapping: torch.Tensor | None,
    scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(own cluster (n,), r_ij (n, k) from eq. R, inf where j is excluded; with ``scale`` in
    the weighted norm, through the dual norm ||s * (u_j - u_i)||_q, inf where the features
    that may move do not reach H_ij)."""
    d2 = cells.sq_distances(x)
    own = d2.argmin(1)
    u = cells.sites if scale is None else cells.sites * scale
    dual = torch.cdist(u, u, p=2.0 if norm == "l2" else 1.0)
    gap = d2 - d2.gather(1, own[:, None])
    r = torch.where(dual[own] > 0, gap / (2 * dual[own]), torch.where(gap > 0, torch.inf, 0.0))
    excluded = torch.zeros_like(r, dtype=torch.bool)
    excluded.scatter_(1, own[:, None], True)
    if mapping is not None:
        excluded |= mapping[None, :] == mapping[own][:, None]
    return own, r.masked_fill(excluded, float("inf"))


def _smallest_step(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    bounds: Bounds | None,
    norm: str,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Smallest t >= 0 with ``w . clip(x + t u) >= b``, u = w (L2) or sign(w) (L-inf), in
    closed form; inf where the box makes it unreachable. With per-feature ``scale`` s, the
    move of the weighted norm: u = s^2 * w (L2), s * sign(w) (L-inf); a feature with s_d = 0
    does not move.

    Coordinate d moves at speed |u_d| until it hits the box after t_d = room_d / |u_d|
    (room_d = hi - x_d if w_d > 0 else x_d - lo), so the left side is piecewise linear and
    non-decreasing in t:

        f(t) = w.x + sum_{t_d <= t} |w_d| room_d + t sum_{t_d > t} |w_d| |u_d|.

    Sorting the t_d gives f at every breakpoint; t is found on the first segment that reaches b.
    Written by hand: it replaces 120 bisection steps over (n, m, D) tensors (same answer, about
    as fast as one sort).
    """
    speed = w.abs() if norm == "l2" else (w != 0).to(w.dtype)
    if scale is not None:
        speed = speed * (scale.square() if norm == "l2" else scale)
    rate = w.abs() * speed  # df/dt of a coordinate still moving
    need = b - (x * w).sum(-1)
    if bounds is None:
        t = need.clamp(min=0) / rate.sum(-1)
        return torch.where(need <= 0, torch.zeros_like(t), t)
    lo, hi = bounds
    room = torch.where(w > 0, hi - x, x - lo).clamp(min=0)
    t_sat = torch.where(speed > 0, room / speed.clamp(min=1e-300), torch.zeros_like(room))
    order = t_sat.argsort(-1)
    t_sorted = t_sat.gather(-1, order)
    # saturated contribution up to d (a coordinate of speed 0 never moves: 0, even with no box)
    gain = torch.where(speed > 0, w.abs() * room, 0.0).gather(-1, order).cumsum(-1)
    moving = rate.sum(-1, keepdim=True) - rate.gather(-1, order).cumsum(-1)  # rate after d
    # f(t_d) >= b; f is unbounded from the first coordinate of infinite room on (its gain is
    # inf, and inf * 0 would read a NaN where it is the last one still moving)
    reached = (gain + t_sorted * moving >= need[..., None]) | torch.isinf(gain)
    first = reached.to(torch.int8).argmax(-1, keepdim=True)  # first breakpoint that reaches b
    # on the segment before it: f(t) = G_prev + t R_prev
    prev = (first - 1).clamp(min=0)
    g_prev = torch.where(first > 0, gain.gather(-1, prev), torch.zeros_like(prev, dtype=w.dtype))
    r_prev = torch.where(first > 0, moving.gather(-1, prev), rate.sum(-1, keepdim=True))
    t = ((need[..., None] - g_prev) / r_prev.clamp(min=1e-300)).squeeze(-1)
    t = torch.minimum(t, t_sorted.gather(-1, first).squeeze(-1))
    t = torch.where(need <= 0, torch.zeros_like(t), t)
    return torch.where(reached.any(-1) | (need <= 0), t, torch.full_like(t, float("inf")))


def kmeans_certified_radius(
    centers: object,
    x: ArrayLike,
    norm: str = "l2",
    mapping: object | None = None,
    chunk_size: int = 1024,
    bounds: BoundsLike | None = None,
    scale: BudgetLike | None = None,
) -> np.ndarray:
    """Smallest perturbation (norm ``"l2"`` or ``"linf"``) that moves each x out of its Voronoi
    cell (eq. R, min over j). With ``mapping`` (cluster -> class), the min runs over clusters
    of another class: a certified lower bound on the perturbation needed to change the
    predicted class. ``centers``: array (k, D) or a fitted KMeans. Returns float64 (n,).

    With ``bounds``, each r_ij is the distance to the half-space H_ij *inside the box*
    (``_smallest_step``, closed form: in L-inf, coordinates move by t towards c_j until they
    hit the box): never below eq. R, and still a lower bound, since the cell of c_j lies in
    H_ij; on data at the edges of its box (image pixels at 0 or 1) it is the tighter one.

    Parameters
    ----------
    centers : KMeans, Pipeline or array of shape (k, D)
        A fitted KMeans, a fitted Pipeline of affine steps ending in one (radii in its input
        units; ``advlab.cluster.kmeans_cells``), or the centres; k >= 2.
    x : array-like of shape (n, D)
        The points.
    norm : {'l2', 'linf'}, default='l2'
        Norm of the radius.
    mapping : array of shape (k,) or None, default=None
        Cluster -> class; with it the radius is to a cluster of another class.
    chunk_size : int, default=1024
        Points per chunk (memory, not results; smaller with ``bounds``, which holds
        (points, k, D) arrays).
    bounds : (float, float), (array_like, array_like) or None, default=None
        The box of the inputs, two numbers or per-feature bounds of shape (D,); None:
        ignored (eq. R).
    scale : float, array-like of shape (D,) or None, default=None
        Per-feature units s_d >= 0: the radius in the weighted norm ||delta / s||, so that
        every per-feature budget r * s_d with r below the radius leaves the class as it is
        (s_d = 0: feature d is frozen); None: the plain norm.

    Returns
    -------
    ndarray of shape (n,), float64
        The certified radius of each point, in input units (in units of ``scale``).
    """
    check_norm(norm)
    cells = kmeans_cells(centers)
    k = len(cells.centers)
    if k < 2:
        raise ValueError("the certified radius needs at least 2 centres")
    X = as_float_matrix(x, dtype=torch.float64)
    if X.shape[1] != cells.n_features:
        raise ValueError(f"x has {X.shape[1]} features, the k-means takes {cells.n_features}")
    units = check_scale(scale, cells.n_features)
    box = None if bounds is None else check_bounds(bounds)
    if box is not None:  # (outside its box a point's radius would be meaningless)
        check_bounds_shape(box, (cells.n_features,))
        check_images(X, "x", box, torch.float64, "pass the points' box as bounds, or None")
        box = _flat_box(box, (cells.n_features,))
    return (
        _lower_bounds(X, cells, norm, check_mapping(mapping, k), box, chunk_size, units)
        .min(1)
        .values.numpy()
    )


def check_scale(scale: BudgetLike | None, n_features: int) -> torch.Tensor | None:
    """Per-feature units: None stays None; one number or ``n_features`` of them (any shape,
    flattened), >= 0 and finite, not all 0, as a float64 tensor of shape (n_features,).

    Parameters
    ----------
    scale : float, array-like or None
        The units s_d of the weighted norm ||delta / s||.
    n_features : int
        D, the number of input features.

    Returns
    -------
    torch.Tensor of shape (D,) or None
        The units.
    """
    if scale is None:
        return None
    units = torch.as_tensor(check_units("scale", scale), dtype=torch.float64).reshape(-1)
    if units.numel() == 1:
        units = units.expand(n_features).clone()
    if units.numel() != n_features:
        raise ValueError(f"scale has {units.numel()} entries, the k-means takes {n_features} "
                         "features: give one unit per feature")  # fmt: skip
    return units


def _lower_bounds(
    X: torch.Tensor,
    cells: KMeansCells,
    norm: str,
    mapping: torch.Tensor | None,
    bounds: Bounds | None,
    chunk_size: int = 1024,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """(n, k): per point and cluster j, the distance to H_ij (eq. R), or to box ∩ H_ij with
    ``bounds``, a lower bound on the distance to the cell of c_j; inf for the own cluster and,
    with ``mapping``, for the clusters of the own class."""
    k, d = cells.sites.shape
    if bounds is not None:  # (points, k, D) per chunk: about 2**24 numbers
        chunk_size = max(1, min(chunk_size, 2**24 // (k * d)))
    out = []
    for s in range(0, len(X), chunk_size):
        xs = X[s : s + chunk_size]
        own, r = _bisector_distances(xs, cells, norm, mapping, scale)
        if bounds is not None:
            r = torch.maximum(r, _boxed_distances(xs, cells, own, bounds, norm, scale))
        out.append(r)
    return torch.cat(out) if out else torch.empty(0, k, dtype=X.dtype)


def _boxed_distances(
    x: torch.Tensor,
    cells: KMeansCells,
    own: torch.Tensor,
    bounds: Bounds,
    norm: str,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """(n, k): the ``norm`` distance (weighted by ``scale``) from each x to box ∩ H_ij, H_ij =
    {z : 2 z.(u_j - u_i) >= gamma_j - gamma_i} (eq. H; u = c, gamma = ||c||^2 for a plain
    k-means) with i its own cluster (inf where the box misses H_ij)."""
    u, sq = cells.sites, cells.levels
    w = u[None, :, :] - u[own][:, None, :]
    b = (sq[None, :] - sq[own][:, None]) / 2
    xs = x[:, None, :].expand_as(w)
    t = _smallest_step(xs, w, b, bounds, norm, scale)
    if norm == "linf":  # every coordinate moves by t s_d or until the box: the size is t
        return t
    step = torch.where(torch.isfinite(t), t, torch.zeros_like(t))[..., None] * _l2_move(w, scale)
    moved = clamp_between(xs + step, *bounds) - xs
    return torch.where(torch.isfinite(t), weighted_norm(moved, norm, scale), t)


def _linf_move(w: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """The direction the L-inf closed form moves along: sign(w), or s * sign(w) in the
    weighted norm."""
    return w.sign() if scale is None else w.sign() * scale


def _l2_move(w: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """The direction the L2 closed form moves along: w, or s^2 * w in the weighted norm (the
    minimiser of ||delta / s||_2 with w . delta fixed)."""
    return w if scale is None else w * scale.square()


def _numpy_cells(
    cells: KMeansCells, x: np.ndarray, j: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(sites u, levels gamma) as numpy, and the cell constraints a program starts with: those
    of the 8 centres nearest c_j and of the 8 nearest x's image."""
    c = cells.centers.numpy()
    sq = (c * c).sum(1)
    u, gamma = (c, sq) if cells.linear is None else (cells.sites.numpy(), cells.levels.numpy())
    near = np.r_[np.argsort(sq - 2 * c @ c[j])[:9], np.argsort(gamma - 2 * u @ x)[:8]]
    return u, gamma, [int(r) for r in dict.fromkeys(near.tolist()) if r != j]


def _cell_distance_linf(
    x: np.ndarray,
    cells: KMeansCells,
    j: int,
    bounds: Bounds | None,
    overshoot: float,
    scale: np.ndarray | None = None,
) -> tuple[float, np.ndarray | None]:
    """The L-inf distance (weighted by ``scale``: rows |delta_d| <= t s_d) from x to the cell
    of c_j inside the box, shrunk by the overshoot margin m_l = overshoot ||u_l - u_j||_1
    (eq. LP in delta = z - x), and the closest point; (inf, None) where that set is empty.

    Solved by HiGHS (``scipy.optimize.linprog``) with the cell's k - 1 constraints generated
    lazily: the LP starts with the constraints of the 8 centres nearest c_j and the 8 nearest
    x, and the constraints the solution violates are added until it violates none. Each round
    solves a relaxation, so a solution that satisfies every constraint is the optimum of the
    whole LP; on MNIST (k = 200, D = 784) one round almost always suffices (1.01 rounds per
    program on average), with 16 or 17 of the 199 cell constraints.
    """
    d = len(x)
    u, sq, rows = _numpy_cells(cells, x, j)
    w = u - u[j]  # row l: (u_l - u_j).z <= (gamma_l - gamma_j) / 2 - m_l  (eq. H)
    rhs = (sq - sq[j]) / 2 - overshoot * np.abs(w).sum(1) - w @ x  # in delta
    lo, hi = (-np.inf, np.inf) if bounds is None else _numpy_box(bounds)
    box = np.column_stack([np.r_[lo - x, 0.0], np.r_[hi - x, np.inf]])
    units = np.ones(d) if scale is None else scale
    box[:d][units == 0] = 0.0  # a frozen feature: delta_d = 0 exactly, not to the tolerance
    eye, minus_t = sp.identity(d, format="csr"), sp.csr_matrix(-units[:, None])
    ball = sp.vstack([sp.hstack([eye, minus_t]), sp.hstack([-eye, minus_t])])  # |delta_d| <= t
    cost = np.r_[np.zeros(d), 1.0]
    while True:
        cell = sp.csr_matrix(np.column_stack([w[rows], np.zeros(len(rows))]))
        fit = linprog(cost, A_ub=sp.vstack([ball, cell]).tocsr(),
                      b_ub=np.r_[np.zeros(2 * d), rhs[rows]], bounds=box, method="highs",
                      options={"presolve": False})  # fmt: skip
        if fit.status == 2:  # infeasible: the box misses the cell
            return float("inf"), None
        if fit.status != 0:
            raise RuntimeError(f"the linear program of cluster {j} failed: {fit.message}")
        delta = fit.x[:d]
        violated = np.flatnonzero(w @ delta > rhs)
        violated = violated[(violated != j) & ~np.isin(violated, rows)]
        if not len(violated):
            z = x + delta if bounds is None else np.clip(x + delta, lo, hi)
            return float(fit.x[d]), z
        rows += violated.tolist()


def _cell_distance_l2(
    x: np.ndarray,
    cells: KMeansCells,
    j: int,
    bounds: Bounds | None,
    overshoot: float,
    scale: np.ndarray | None = None,
) -> tuple[float, np.ndarray | None]:
    """The L2 distance (weighted by ``scale``) from x to the cell of c_j inside the box, shrunk
    by the overshoot margin, and the closest point; (inf, None) where that set is empty.

    The projection's dual (eq. D) is maximised by L-BFGS-B (``scipy.optimize.minimize``) over
    the cell constraints generated lazily as in ``_cell_distance_linf`` (a dual of about 17
    variables). Written by hand: scipy has no quadratic-program solver, and the dual of a
    projection onto box ∩ polytope needs only a clip. A dual value beyond the largest distance
    inside the box proves the set empty.
    """
    d = len(x)
    u, sq, rows = _numpy_cells(cells, x, j)
    w = u - u[j]
    rhs = (sq - sq[j]) / 2 - overshoot * np.abs(w).sum(1) - w @ x  # rows: w_l . delta <= rhs_l
    low, high = (-np.inf, np.inf) if bounds is None else _numpy_box(bounds)
    lo, hi = np.broadcast_to(low - x, (d,)), np.broadcast_to(high - x, (d,))
    if scale is not None:  # in delta' = delta / s (a frozen feature: delta'_d in [0, 0])
        w = w * scale
        moving = scale > 0
        lo = np.where(moving, lo / np.where(moving, scale, 1.0), 0.0)
        hi = np.where(moving, hi / np.where(moving, scale, 1.0), 0.0)
    reach = float(np.sqrt((np.maximum(np.abs(lo), np.abs(hi)) ** 2).sum()))  # inf without a box
    lam = np.zeros(len(rows))
    while True:
        cell, b = w[rows], rhs[rows]

        def negative_dual(l: np.ndarray, cell: np.ndarray = cell, b: np.ndarray = b) -> tuple:
            delta = np.clip(-cell.T @ l, lo, hi)
            slack = cell @ delta - b
            return -(0.5 * delta @ delta + l @ slack), -slack

        fit = minimize(negative_dual, lam, jac=True, method="L-BFGS-B",
                       bounds=[(0.0, None)] * len(rows),
                       options={"maxiter": 10_000, "ftol": 1e-16, "gtol": 1e-13})  # fmt: skip
        if np.sqrt(max(-2 * fit.fun, 0.0)) > reach:  # the lower bound exceeds every distance
            return float("inf"), None
        lam = fit.x
        delta = np.clip(-cell.T @ lam, lo, hi)
        violated = np.flatnonzero(w @ delta > rhs)
        violated = violated[(violated != j) & ~np.isin(violated, rows)]
        if not len(violated):
            return float(np.linalg.norm(delta)), x + (delta if scale is None else scale * delta)
        rows += violated.tolist()
        lam = np.r_[lam, np.zeros(len(violated))]


class KMeansMinimalAttack(MinimizationAttack):
    """Minimal box-constrained perturbation that changes a k-means decision.

    ``attack(x)`` (``y`` defaults to the k-means decision on x: its cluster, or with
    ``"other-class"`` its mapped class) returns an ``AttackResult`` whose ``pred`` is the
    decision on x_adv and ``distances`` the size of each perturbation (inf where it failed).
    Computed in float64.

    Parameters
    ----------
    kmeans : KMeans, Pipeline or array of shape (k, D)
        A fitted KMeans (advlab's or scikit-learn's), a fitted Pipeline of affine steps ending
        in one (perturbations of its inputs, in their units), or the centres.
    mapping : array of shape (k,) or None, default=None
        Cluster -> class; needed for ``target="other-class"``.
    norm : {"l2", "linf"}, default="l2"
        The norm of the perturbation.
    target : {"any-cluster", "other-class"}, default="any-cluster"
        Leave the own cell, or land in a cluster of another class.
    overshoot : float, default=1e-6
        Margin past the boundary, in units of ||c_j - c_i||_1, so that the assignment of the
        float32 output really changes (about 1e-6 sqrt(D) in L2 distance).
    n_candidates : int, default=8
        Candidate clusters examined at first (more if optimality is not proven).
    bisection_steps : int, default=60
        Steps of each bisection.
    bounds : (float, float), (array_like, array_like) or None, default=(0.0, 1.0)
        The box of the inputs; None: no box (the exact eq. R projection).
    batch_size : int, default=256
        Samples per batch.
    exact : bool, default=False
        With ``target="other-class"``: the exact minimal perturbation (per cluster whose lower
        bound is below the best size so far, a linear program in L-inf, eq. LP, or the
        projection's dual in L2, eq. D), not the closed-form upper bound. "any-cluster" is
        exact without it.
    max_size : float, default=inf
        With ``exact``: sizes up to ``max_size`` are exact; clusters whose lower bound is at
        least ``max_size`` are not solved for, so a larger size is an upper bound and the true
        minimum is at least ``max_size`` (the cost of a run that needs budgets up to it only).
    scale : float, array-like of shape (D,) or None, default=None
        Per-feature units s_d >= 0: sizes (and ``AttackResult.distances``) in the weighted
        norm ||delta / s||, so that a size r is the per-feature budget r * s_d (s_d = 0: the
        feature is never moved); None: the plain norm.
    """

    input_dtype = torch.float64

    min_classes = 1  # one cluster (or class): nothing to attack, every point stays

    def __init__(
        self,
        kmeans: Any,
        mapping: object | None = None,
        norm: str = "l2",
        target: str = "any-cluster",
        overshoot: float = 1e-6,
        n_candidates: int = 8,
        bisection_steps: int = 60,
        bounds: Bounds | None = (0.0, 1.0),
        batch_size: int = 256,
        exact: bool = False,
        max_size: float = float("inf"),
        scale: BudgetLike | None = None,
    ) -> None:
        check_norm(norm)
        if target not in TARGETS:
            raise ValueError(f"target={target!r}: use one of {TARGETS}")
        self.cells = kmeans_cells(kmeans)
        self.mapping = check_mapping(mapping, len(self.cells.centers))
        if target == "other-class" and self.mapping is None:
            raise ValueError("target='other-class' needs the cluster-to-class mapping")
        # float64 decisions: exact at the boundary the attack lands just past
        decision = kmeans_model(self.cells, mapping if target == "other-class" else None,
                                bounds, torch.float64)  # fmt: skip
        super().__init__(decision, None, batch_size)
        self.norm, self.target = norm, target
        self.overshoot = check_number("overshoot", overshoot, 0.0)
        self.n_candidates = int(check_number("n_candidates", n_candidates, 1, integer=True))
        self.steps = int(check_number("bisection_steps", bisection_steps, 1, integer=True))
        self.exact = bool(exact) and target == "other-class"
        self.max_size = check_number("max_size", max_size, 0.0, allow_inf=True)
        self.scale = check_scale(scale, self.cells.n_features)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor | None = None, target: torch.Tensor | None = None
    ) -> AttackResult:
        if not isinstance(x, torch.Tensor):
            raise ValueError("x must be a torch tensor (N, ...)")
        features = x.flatten(1).shape[1] if x.ndim >= 2 else None
        if features != self.cells.n_features:
            raise ValueError(f"x must be (N, ...) with {self.cells.n_features} features per row "
                             f"(the k-means'), got shape {tuple(x.shape)}")  # fmt: skip
        if y is None:
            with torch.no_grad():
                y = self.model(x.detach().cpu().double()).argmax(1).to(x.device)
        return super().__call__(x, y, target)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        X = x.flatten(1).double().cpu()
        box = _flat_box(self.bounds, tuple(x.shape[1:]))
        assert box is not None  # (the model's bounds: (-inf, inf) when the attack has none)
        best, _ = self._batch(X, box)
        return best.reshape(x.shape).to(x.device, x.dtype)

    def _batch(self, X: torch.Tensor, box: Bounds) -> tuple[torch.Tensor, torch.Tensor]:
        """The best perturbed rows of X (n, D) and their sizes, inside the flat ``box``."""
        mask_map = self.mapping if self.target == "other-class" else None
        own, r = _bisector_distances(X, self.cells, self.norm, mask_map, self.scale)
        order = r.argsort(1)
        best = X.clone()
        best_size = torch.full((len(X),), float("inf"), dtype=torch.float64)
        m = self.n_candidates
        k = int(torch.isfinite(r).sum(1).max())  # excluded clusters (inf) sort last: never tried
        active = torch.arange(len(X))  # rows whose optimality is not proven yet
        start = 0
        while start < k and len(active):
            cand = order[active, start : start + m]
            z, size = self._project(X[active], own[active], cand, box)
            ok = self._lands(z, own[active], size)
            size = torch.where(ok, size, torch.full_like(size, float("inf")))
            pick = size.argmin(1)
            pick_size = size.gather(1, pick[:, None])[:, 0]
            better = pick_size < best_size[active]
            best[active[better]] = z[better, pick[better]]
            best_size[active[better]] = pick_size[better]
            start += m
            if start >= k:
                break
            next_lower = r[active].gather(1, order[active, start : start + 1])[:, 0]
            # a candidate further down the order cannot beat a size <= its eq. R lower bound
            active = active[best_size[active] > next_lower]
            m *= 2
        if self.target == "other-class":
            cand = order[:, : self.n_candidates]
            finite = torch.isfinite(r.gather(1, cand))
            self._segment_fallback(X, own, cand, finite, best, best_size, box)
        if self.exact:
            self._exact(X, own, best, best_size, box)
        return best, best_size

    def _exact(
        self,
        X: torch.Tensor,
        own: torch.Tensor,
        best: torch.Tensor,
        best_size: torch.Tensor,
        box: Bounds,
    ) -> None:
        """Lower ``best`` to the exact minimum: eq. LP or D for each cluster of another class, in
        increasing order of its lower bound, until the bound reaches the best size (or
        ``max_size``). Written by hand around scipy's solvers: no library computes k-means'
        minimal adversarial perturbation."""
        assert self.mapping is not None
        lower = _lower_bounds(X, self.cells, self.norm, self.mapping, box, scale=self.scale)
        x_all = X.numpy()
        distance = _cell_distance_linf if self.norm == "linf" else _cell_distance_l2
        units = None if self.scale is None else self.scale.numpy()
        missed = 0
        for i in range(len(X)):
            for j in lower[i].argsort().tolist():
                if not float(lower[i, j]) < min(float(best_size[i]), self.max_size):
                    break  # sorted: no later cluster can be closer
                size, z = distance(x_all[i], self.cells, j, box, self.overshoot, units)
                if z is None or not size < float(best_size[i]):
                    continue
                zt = torch.from_numpy(z)[None, None]
                if not bool(self._lands(zt, own[i : i + 1], torch.zeros(1, 1))[0, 0]):
                    missed += 1  # the solver's tolerance beat the margin: keep the bound
                    continue
                best[i] = zt[0, 0]
                best_size[i] = float(weighted_norm(zt[0, 0] - X[i], self.norm, self.scale))
        if missed:
            warnings.warn(f"{missed} solutions of a cell's program did not change the class (raise "
                          "overshoot); those sizes stay upper bounds", RuntimeWarning, stacklevel=3)  # fmt: skip

    def _segment_fallback(
        self,
        X: torch.Tensor,
        own: torch.Tensor,
        cand: torch.Tensor,
        valid: torch.Tensor,
        best: torch.Tensor,
        best_size: torch.Tensor,
        box: Bounds,
    ) -> None:
        """Bisection on the segment from x to a point of each candidate cell, of another class
        (its centre c_j for a plain k-means), clipped to the box: yields a successful point
        whenever that end lies in the cell (a centre of data inside the box does), used when it
        is smaller."""
        x, cj = X[:, None, :], clamp_between(self.cells.anchors(X, cand), *box)
        if self.scale is not None:  # frozen features keep x's values
            cj = torch.where(self.scale > 0, cj, x)
        lo = torch.zeros(cand.shape, dtype=torch.float64)
        hi = torch.ones_like(lo)
        for _ in range(self.steps):
            mid = 0.5 * (lo + hi)
            z = x + mid[..., None] * (cj - x)
            ok = self._lands(z, own, torch.zeros_like(mid))
            hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
        hi = (hi * (1 + 100 * self.overshoot) + self.overshoot).clamp(
            max=1.0
        )  # step past the boundary
        z = x + hi[..., None] * (cj - x)
        size = weighted_norm(z - x, self.norm, self.scale)
        size = torch.where(
            valid & self._lands(z, own, size), size, torch.full_like(size, float("inf"))
        )
        pick = size.argmin(1)
        pick_size = size.gather(1, pick[:, None])[:, 0]
        better = pick_size < best_size
        best[better] = z[better, pick[better]]
        best_size[better] = pick_size[better]

    def _project(
        self, X: torch.Tensor, own: torch.Tensor, cand: torch.Tensor, box: Bounds
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Closest point of box ∩ H_ij (just past the hyperplane) for each candidate j."""
        u, sq = self.cells.sites, self.cells.levels
        w = u[cand] - u[own][:, None, :]  # (n, m, D)
        b = 0.5 * (sq[cand] - sq[own][:, None])  # z.w >= b  <=>  z in H_ij (eq. H)
        x = X[:, None, :]
        # land past the hyperplane by a margin that float32 rounding of the output cannot undo
        b = b + self.overshoot * w.abs().sum(-1)

        t = _smallest_step(x, w, b, box, self.norm, self.scale)
        move = _l2_move(w, self.scale) if self.norm == "l2" else _linf_move(w, self.scale)
        z = clamp_between(x + (move * t[..., None]).nan_to_num(0.0, posinf=0.0, neginf=0.0), *box)
        reachable = torch.isfinite(t)
        size = weighted_norm((z - x).flatten(2), self.norm, self.scale)
        return z, torch.where(reachable, size, torch.full_like(size, float("inf")))

    def _lands(self, z: torch.Tensor, own: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """Whether each candidate point leaves the own cell (or reaches another class)."""
        n, m, d = z.shape
        landed = self.cells.assign(z.reshape(n * m, d)).reshape(n, m)
        if self.target == "other-class":
            assert self.mapping is not None
            return (self.mapping[landed] != self.mapping[own][:, None]) & torch.isfinite(size)
        return (landed != own[:, None]) & torch.isfinite(size)
