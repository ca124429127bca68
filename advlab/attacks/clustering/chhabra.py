"""Chhabra, Roy & Mohapatra (2020), "Suspicion-free adversarial attacks on clustering
algorithms", AAAI: perturb one point so that *other*, unperturbed points change cluster.

The attacker moves a single point x_t of cluster A (the one nearest to the centroid of the
cluster B it attacks, i.e. near the boundary) to x_t + delta, ||delta||_inf <= budget (or
|delta_d| <= budget_d per feature), and
maximises the spill-over

    S(delta) = #{ i != t : cluster_i(X + delta e_t) != cluster_i(X) }        (ids matched)

subject to x_t + delta staying in its own cluster A: the perturbed point is not itself
misclustered, so nothing flags it ("suspicion-free"). k-means moves A's centroid by delta / |A|
towards B, and the points of B nearest the boundary spill over into A.

The paper proves existence for k-means and optimises delta without derivatives; its optimiser
is not reproduced here. advlab's black-box search, documented as the substitute: candidates
are points on the line delta = a * budget * sign(c_B - x_t), a geometric in [1/64, 1], and
corners of smaller L-inf balls (delta = r * budget * random signs, r ~ U(0.1, 1)); then ``n_random`` rounds of hill climbing from
the best feasible delta, re-drawing a random subset of coordinates, ``batch`` candidates per
(batched) query. Candidates are ranked by spill-over, then, since a count is flat almost
everywhere, by how close the victim's new clustering brings B's nearest point to switching:
max over B of ||x - c_B'|| - ||x - c_A'||, with c' the means of the returned clusters (the
attacker sees the labels and its own data, not the victim's metric).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from advlab.attacks.clustering.base import (
    ClusteringAttack,
    ClusteringAttackResult,
    check_box,
    check_data,
    check_inside_box,
    closest_pair,
)
from advlab.metrics import changed_cluster
from advlab.utils.validation import BudgetLike, check_number, check_units


def _point_budget(budget: Any) -> float | np.ndarray:
    """One L-inf budget (> 0) as a float, or one per feature (``check_units``: >= 0, finite,
    not all 0) as a float64 array of shape (n_features,)."""
    checked = check_units("budget", budget)
    if isinstance(checked, float):
        return checked
    if checked.ndim != 1:
        raise ValueError(f"budget must be one number, or one per feature (n_features,); got "
                         f"shape {tuple(checked.shape)}")  # fmt: skip
    return checked.numpy()


class Chhabra(ClusteringAttack):
    """Spill-over attack: one perturbed point misclusters others (Chhabra et al. 2020).

    Parameters
    ----------
    clusterer : estimator with fit_predict
        The victim (queried as a black box).
    budget : float or array-like of shape (n_features,), default=0.5
        L-inf bound of the perturbation of the one point, in the units of X (> 0); or one per
        feature (>= 0, 0 freezing a feature, not all 0): |delta_d| <= budget_d.
    box : (float, float) or None, default=(0.0, 1.0)
        Domain of the data; None leaves it unbounded.
    source, toward : int or None, default=None
        Cluster ids (clean clustering) of the perturbed point's cluster A and of the cluster B
        it attacks; None: the two clusters with the closest centroids (A the lower id).
    target_index : int or None, default=None
        The point to perturb; None: the point of A nearest to B's centroid.
    n_line : int, default=16
        Points on the line along sign(c_B - x_t) tried first.
    n_random : int, default=40
        Rounds of hill climbing.
    batch : int, default=8
        Candidates per round (one batched query), and ball corners tried first.
    """

    name = "chhabra"

    def __init__(
        self,
        clusterer: Any,
        budget: BudgetLike = 0.5,
        box: tuple[float, float] | None = (0.0, 1.0),
        source: int | None = None,
        toward: int | None = None,
        target_index: int | None = None,
        n_line: int = 16,
        n_random: int = 40,
        batch: int = 8,
    ) -> None:
        super().__init__(clusterer)
        self.budget = _point_budget(budget)
        self.box = check_box(box)
        self.source, self.toward, self.target_index = source, toward, target_index
        self.n_line = int(check_number("n_line", n_line, 1, integer=True))
        self.n_random = int(check_number("n_random", n_random, 0, integer=True))
        self.batch = int(check_number("batch", batch, 1, integer=True))

    def choose(self, data: np.ndarray, labels: np.ndarray) -> tuple[int, int, int]:
        """(source cluster A, attacked cluster B, row t to move) for ``data`` clustered as
        ``labels``: as given, else the two clusters with the closest centroids and A's row
        nearest to B's centroid.

        Parameters
        ----------
        data : ndarray of shape (n, d)
            The clean data.
        labels : ndarray of shape (n,)
            Its clean clustering.

        Returns
        -------
        (int, int, int)
        """
        a, b = closest_pair(data, labels)
        source = a if self.source is None else self.source
        toward = (b if source == a else a) if self.toward is None else self.toward
        if source == toward or not (labels == source).any() or not (labels == toward).any():
            raise ValueError(f"source={source} and toward={toward} must be two distinct clusters")
        if self.target_index is not None:
            t = int(self.target_index)
            if not 0 <= t < len(data):
                raise ValueError(f"target_index={t} is not a row of X (n={len(data)})")
            return int(labels[t]), toward, t
        members = np.flatnonzero(labels == source)
        c_b = data[labels == toward].mean(0)
        return source, toward, int(members[np.argmin(((data[members] - c_b) ** 2).sum(1))])

    def _evaluate(self, data: np.ndarray, t: int, toward: int, reference: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Score (spill-over, closeness of B to switching; -inf when x_t itself moved out of its
        cluster) of each candidate delta (P, d), and the labels."""
        batch = np.repeat(data[None], len(deltas), axis=0)
        batch[:, t] = data[t] + deltas
        labels = self.fit_predict_many(batch)
        scores = np.full((len(deltas), 2), -np.inf)
        others = np.flatnonzero(reference == toward)
        for p, lab in enumerate(labels):
            changed = changed_cluster(reference, lab)
            if changed[t]:
                continue
            changed[t] = False
            own = lab[t]
            still = others[~changed[others]]
            c_a = batch[p][lab == own].mean(0)
            rest = lab != own
            c_b = batch[p][rest].mean(0) if rest.any() else c_a
            margin = np.linalg.norm(data[still] - c_b, axis=1) - np.linalg.norm(
                data[still] - c_a, axis=1
            )
            scores[p] = (changed.sum(), margin.max() if len(still) else 0.0)
        return scores, labels

    def _clip(self, x_t: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        deltas = np.clip(deltas, -self.budget, self.budget)
        if self.box is not None:
            deltas = np.clip(x_t + deltas, *self.box) - x_t
        return deltas

    def _queries(self, n_clusters: int) -> int:
        """The reference fit, the line and the ball's corners, then ``batch`` per round of hill
        climbing: 1 + n_line + batch (1 + n_random)."""
        return 1 + self.n_line + self.batch * (1 + self.n_random)

    def attack(self, X: Any, random_state: Any = None) -> ClusteringAttackResult:
        """Perturb one point of ``X`` (n, d) to make others spill over.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The clean data, finite (inside ``box`` when one is given).
        random_state : int, RandomState or None, default=None
            Seed of the random search; None draws fresh randomness.

        Returns
        -------
        ClusteringAttackResult
            ``touched`` is the one perturbed point, ``objective`` the best feasible spill-over
            after the line search and after each random round; ``meta['spillover']`` the final
            count (0 and delta = 0 when no feasible move spills anything).
        """
        start = time.perf_counter()
        data = check_data(X)
        check_inside_box(data, self.box)
        rng = check_random_state(random_state)
        self.n_refits = 0
        reference = self.fit_predict(data)
        source, toward, t = self.choose(data, reference)
        d = data.shape[1]
        if isinstance(self.budget, np.ndarray) and self.budget.shape != (d,):
            raise ValueError(f"budget has shape {self.budget.shape}, X has {d} features: give "
                             "one budget per feature")  # fmt: skip
        line = np.geomspace(1.0 / 64, 1.0, self.n_line)[:, None] * self.budget
        radii = rng.uniform(0.1, 1.0, (self.batch, 1))
        corners = self.budget * radii * rng.choice([-1.0, 1.0], size=(self.batch, d))
        deltas = self._clip(
            data[t],
            np.vstack([line * np.sign(data[reference == toward].mean(0) - data[t]), corners]),
        )
        scores, labels = self._evaluate(data, t, toward, reference, deltas)
        best = (-np.inf, -np.inf)
        best_delta, best_labels = np.zeros(d), reference
        history = []
        for _ in range(self.n_random + 1):
            for p in range(len(deltas)):
                key = (scores[p, 0], scores[p, 1])
                if key > best:
                    best, best_delta, best_labels = key, deltas[p], labels[p]
            history.append(max(best[0], 0.0))
            if len(history) > self.n_random:
                break
            redraw = rng.random_sample((self.batch, d)) < rng.uniform(0.05, 0.5)
            jump = self.budget * rng.choice([-1.0, 1.0], size=(self.batch, d))
            deltas = self._clip(data[t], np.where(redraw, jump, best_delta))
            scores, labels = self._evaluate(data, t, toward, reference, deltas)
        best_spill = int(max(best[0], 0.0))
        if best_spill == 0:  # nothing spilled: report no perturbation
            best_delta, best_labels = np.zeros(d), reference
        poisoned = data.copy()
        poisoned[t] = data[t] + best_delta
        return self._result(
            start,
            data=poisoned,
            clean_labels=reference,
            labels=np.asarray(best_labels),
            touched=np.array([t]),
            delta=best_delta[None],
            is_injected=np.zeros(len(data), dtype=bool),
            objective=np.asarray(history, dtype=float),
            meta={"spillover": best_spill, "source": source, "toward": toward,
                  "budget": np.asarray(self.budget).tolist()},
        )  # fmt: skip
