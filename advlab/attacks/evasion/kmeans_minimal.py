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

``KMeansMinimalAttack`` computes the perturbation itself with the box respected: the
closest point of ``box ∩ H_ij`` is ``clip(x + lam * w)`` (clipping to the box) in L2 (KKT conditions of the
projection; ``lam >= 0`` found by bisection) and ``clip(x + t * sign(w))`` with the
smallest feasible ``t`` in L-inf, w = c_j - c_i. Candidates j are tried in increasing order of
r_ij; since the boxed distance is never below r_ij, the search stops with a proof of
optimality once the best boxed distance is <= the next r_ij (``"any-cluster"``). For
``"other-class"`` the landing cluster is checked and the best successful candidate is returned,
together with a bisection along the segment from x to each candidate centre (a point that
always succeeds): an upper bound on the true minimum (which would need a projection onto each
whole cell).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from advlab.attacks.evasion.base import AttackResult, MinimizationAttack
from advlab.attacks.evasion.kmeans_pgd import kmeans_model
from advlab.cluster._validation import ArrayLike, as_float_matrix
from advlab.models.wrapper import Bounds
from advlab.utils.validation import check_number

NORMS = ("l2", "linf")
TARGETS = ("any-cluster", "other-class")


def _centres(centers: object) -> torch.Tensor:
    c = torch.as_tensor(
        np.asarray(getattr(centers, "cluster_centers_", centers)), dtype=torch.float64
    )
    if c.ndim != 2 or not bool(torch.isfinite(c).all()):
        raise ValueError("the k-means centres must be a finite (k, D) array")
    return c


def _mapping(mapping: object | None, k: int) -> torch.Tensor | None:
    if mapping is None:
        return None
    m = torch.as_tensor(np.asarray(mapping), dtype=torch.int64)
    if m.shape != (k,):
        raise ValueError(f"mapping must have shape ({k},), got {tuple(m.shape)}")
    return m


def _bisector_distances(
    x: torch.Tensor, c: torch.Tensor, norm: str, mapping: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(own cluster (n,), r_ij (n, k) from eq. R, inf where j is excluded)."""
    d2 = torch.cdist(x, c).pow(2)
    own = d2.argmin(1)
    dual = torch.cdist(c, c, p=2.0 if norm == "l2" else 1.0)
    r = (d2 - d2.gather(1, own[:, None])) / (2 * dual[own])
    excluded = torch.zeros_like(r, dtype=torch.bool)
    excluded.scatter_(1, own[:, None], True)
    if mapping is not None:
        excluded |= mapping[None, :] == mapping[own][:, None]
    return own, r.masked_fill(excluded, float("inf"))


def kmeans_certified_radius(
    centers: object,
    x: ArrayLike,
    norm: str = "l2",
    mapping: object | None = None,
    chunk_size: int = 1024,
) -> np.ndarray:
    """Smallest perturbation (norm ``"l2"`` or ``"linf"``, box ignored) that moves each x out
    of its Voronoi cell (eq. R, min over j). With ``mapping`` (cluster -> class), the min runs
    over clusters of another class: a certified lower bound on the perturbation needed to change
    the predicted class. ``centers``: array (k, D) or a fitted KMeans. Returns float64 (n,).

    Parameters
    ----------
    centers : KMeans or array of shape (k, D)
        A fitted KMeans or its centres, k >= 2.
    x : array-like of shape (n, D)
        The points.
    norm : {'l2', 'linf'}, default='l2'
        Norm of the radius.
    mapping : array of shape (k,) or None, default=None
        Cluster -> class; with it the radius is to a cluster of another class.
    chunk_size : int, default=1024
        Points per chunk (memory, not results).

    Returns
    -------
    ndarray of shape (n,), float64
        The certified radius of each point, in input units.
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: use one of {NORMS}")
    c = _centres(centers)
    if len(c) < 2:
        raise ValueError("the certified radius needs at least 2 centres")
    X = as_float_matrix(x).double()
    if X.shape[1] != c.shape[1]:
        raise ValueError(f"x has {X.shape[1]} features, centres have {c.shape[1]}")
    m = _mapping(mapping, len(c))
    out = [
        _bisector_distances(X[s : s + chunk_size], c, norm, m)[1].min(1).values
        for s in range(0, len(X), chunk_size)
    ]
    return torch.cat(out).numpy()


class KMeansMinimalAttack(MinimizationAttack):
    """Minimal box-constrained perturbation that changes a k-means decision.

    ``attack(x)`` (``y`` defaults to the k-means decision on x: its cluster, or with
    ``"other-class"`` its mapped class) returns an ``AttackResult`` whose ``pred`` is the
    decision on x_adv and ``distances`` the size of each perturbation (inf where it failed).
    Computed in float64.

    Parameters
    ----------
    kmeans : KMeans or array of shape (k, D)
        A fitted KMeans (advlab's or scikit-learn's) or its centres.
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
    bounds : (float, float) or None, default=(0.0, 1.0)
        The box of the inputs; None: no box (the exact eq. R projection).
    batch_size : int, default=256
        Samples per batch.
    """

    input_dtype = torch.float64

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
    ) -> None:
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}: use one of {NORMS}")
        if target not in TARGETS:
            raise ValueError(f"target={target!r}: use one of {TARGETS}")
        self.c = _centres(kmeans)
        self.mapping = _mapping(mapping, len(self.c))
        if target == "other-class" and self.mapping is None:
            raise ValueError("target='other-class' needs the cluster-to-class mapping")
        # float64 decisions: exact at the boundary the attack lands just past
        decision = kmeans_model(self.c.numpy(), mapping if target == "other-class" else None,
                                bounds, torch.float64)  # fmt: skip
        super().__init__(decision, None, batch_size)
        self.norm, self.target = norm, target
        self.overshoot = check_number("overshoot", overshoot, 0.0)
        self.n_candidates = int(check_number("n_candidates", n_candidates, 1, integer=True))
        self.steps = int(check_number("bisection_steps", bisection_steps, 1, integer=True))

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor | None = None, target: torch.Tensor | None = None
    ) -> AttackResult:
        if y is None:
            if not isinstance(x, torch.Tensor):
                raise ValueError("x must be a torch tensor (N, ...)")
            with torch.no_grad():
                y = self.model(x.detach().cpu().double()).argmax(1).to(x.device)
        return super().__call__(x, y, target)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        X = x.flatten(1).double().cpu()
        if X.shape[1] != self.c.shape[1]:
            raise ValueError(f"x has {X.shape[1]} features, centres have {self.c.shape[1]}")
        best, _ = self._batch(X)
        return best.reshape(x.shape).to(x.device, x.dtype)

    def _batch(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask_map = self.mapping if self.target == "other-class" else None
        own, r = _bisector_distances(X, self.c, self.norm, mask_map)
        order = r.argsort(1)
        best = X.clone()
        best_size = torch.full((len(X),), float("inf"), dtype=torch.float64)
        m, k = self.n_candidates, len(self.c)
        start = 0
        while start < k:
            cand = order[:, start : start + m]
            z, size = self._project(X, own, cand)
            ok = self._lands(z, own, size)
            size = torch.where(ok, size, torch.full_like(size, float("inf")))
            pick = size.argmin(1)
            pick_size = size.gather(1, pick[:, None])[:, 0]
            better = pick_size < best_size
            best[better] = z[better, pick[better]]
            best_size[better] = pick_size[better]
            start += m
            next_lower = r.gather(1, order[:, min(start, k - 1) : min(start, k - 1) + 1])[:, 0]
            if start >= k or bool((best_size <= next_lower).all()):
                break  # no remaining candidate can do better: optimal (given the candidates' order)
            m *= 2
        if self.target == "other-class":
            cand = order[:, : self.n_candidates]
            self._segment_fallback(X, own, cand, torch.isfinite(r.gather(1, cand)), best, best_size)
        return best, best_size

    def _segment_fallback(
        self,
        X: torch.Tensor,
        own: torch.Tensor,
        cand: torch.Tensor,
        valid: torch.Tensor,
        best: torch.Tensor,
        best_size: torch.Tensor,
    ) -> None:
        """Bisection on the segment from x to each candidate centre c_j (which lies in its own
        cell, of another class): always yields a successful point, used when it is smaller."""
        x, cj = X[:, None, :], self.c[cand]
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
        delta = z - x
        size = delta.norm(dim=-1) if self.norm == "l2" else delta.abs().amax(-1)
        size = torch.where(
            valid & self._lands(z, own, size), size, torch.full_like(size, float("inf"))
        )
        pick = size.argmin(1)
        pick_size = size.gather(1, pick[:, None])[:, 0]
        better = pick_size < best_size
        best[better] = z[better, pick[better]]
        best_size[better] = pick_size[better]

    def _project(
        self, X: torch.Tensor, own: torch.Tensor, cand: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Closest point of box ∩ H_ij (just past the hyperplane) for each candidate j."""
        ci, cj = self.c[own][:, None, :], self.c[cand]
        w = cj - ci  # (n, m, D)
        b = 0.5 * (cj.pow(2).sum(-1) - ci.pow(2).sum(-1))  # z.w >= b  <=>  z in H_ij
        x = X[:, None, :]
        # land past the hyperplane by a margin that float32 rounding of the output cannot undo
        b = b + self.overshoot * w.abs().sum(-1)

        box_lo, box_hi = self.bounds

        def point(t: torch.Tensor) -> torch.Tensor:
            step = w * t[..., None] if self.norm == "l2" else w.sign() * t[..., None]
            return (x + step).clamp(box_lo, box_hi)

        def feasible(t: torch.Tensor) -> torch.Tensor:
            return (point(t) * w).sum(-1) >= b

        lo = torch.zeros(w.shape[:2], dtype=torch.float64)
        hi = torch.ones_like(lo) if self.norm == "linf" else 1.0 / w.norm(dim=-1).clamp(min=1e-12)
        for _ in range(60):  # grow hi until feasible (or the box saturates)
            grow = ~feasible(hi)
            if not bool(grow.any()):
                break
            hi = torch.where(grow, hi * 2, hi)
        reachable = feasible(hi)
        for _ in range(self.steps):
            mid = 0.5 * (lo + hi)
            ok = feasible(mid)
            hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
        z = point(hi)
        delta = (z - x).flatten(2)
        size = delta.norm(dim=-1) if self.norm == "l2" else delta.abs().amax(-1)
        return z, torch.where(reachable, size, torch.full_like(size, float("inf")))

    def _lands(self, z: torch.Tensor, own: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """Whether each candidate point leaves the own cell (or reaches another class)."""
        n, m, d = z.shape
        landed = torch.cdist(z.reshape(n * m, d), self.c).argmin(1).reshape(n, m)
        if self.target == "other-class":
            assert self.mapping is not None
            return (self.mapping[landed] != self.mapping[own][:, None]) & torch.isfinite(size)
        return (landed != own[:, None]) & torch.isfinite(size)
