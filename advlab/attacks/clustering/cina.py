"""Cinà, Torcinovich & Pelillo (2022), "A black-box adversarial attack for poisoning
clustering", Pattern Recognition 122: a genetic search for a bounded perturbation.

Threat model: the attacker queries the victim's ``fit_predict`` only. It perturbs the s points
of a victim cluster C_v nearest to the centroid c_t of a target cluster C_t, each along the
fixed direction u = sign(c_t - c_v) (the paper's "centroids" link):

    x_i' = clip(x_i + eps_i * u, box),   eps_i in [0, delta]^d,  i in the s victim points,

and minimises (the paper's objective, attacker's cost included)

    phi(Y, Y') + lambda * ||eps||_0 * ||eps||_inf / (n d),                       (1)

with Y, Y' the clusterings of the clean and the poisoned data and phi = max(AMI, 0) (or ARI,
or minus Biggio's co-membership distance). The search is the paper's abstract genetic
algorithm: every generation breeds children from the current ones by selection among all
candidates kept so far with probability proportional to exp(-objective), entry-wise crossover
(each entry taken from the selected parent with probability ``crossover_rate``, when a coin of
the same rate says so), additive mutation (each entry, with probability ``mutation_rate``,
gains U(0, delta), clipped to [0, delta]) and zero mutation (probability ``zero_rate``).

Choices where the paper's text leaves the detail open, taken from the authors' public code
and documented: the default rates and G, one child per generation by default (``population``
> 1 breeds several and evaluates them in one batched query, advlab's extension), and the
pool of kept candidates capped at ``pool_size`` best (the authors keep all; selection weights
exp(-objective) over near-equal objectives are almost uniform either way).
"""

from __future__ import annotations

import time
from typing import Any, Literal

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
from advlab.metrics import adjusted_rand, co_membership_distance, mutual_info_adjusted
from advlab.utils.validation import check_number

Objective = Literal["ami", "ari", "distance"]
OBJECTIVES = ("ami", "ari", "distance")


def clustering_objective(kind: str, reference: np.ndarray, labels: np.ndarray) -> float:
    """phi of Eq. (1), to be minimised: max(AMI, 0), max(ARI, 0) or minus Biggio's distance.

    Parameters
    ----------
    kind : {"ami", "ari", "distance"}
        Which agreement.
    reference : ndarray of shape (n_samples,)
        The clean clustering.
    labels : ndarray of shape (n_samples,)
        The poisoned one.

    Returns
    -------
    float
        The value to minimise.
    """
    if kind == "ami":
        return max(mutual_info_adjusted(reference, labels), 0.0)
    if kind == "ari":
        return max(adjusted_rand(reference, labels), 0.0)
    if kind == "distance":
        return -co_membership_distance(reference, labels)
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {kind!r}")


class Cina(ClusteringAttack):
    """Black-box poisoning of a clusterer by a genetic algorithm (Cinà et al. 2022).

    Parameters
    ----------
    clusterer : estimator with fit_predict
        The victim (queried as a black box).
    s : float or int, default=0.1
        Points to perturb: a fraction of the victim cluster when in (0, 1), a count when an
        integer >= 1.
    delta : float, default=0.1
        L-inf bound of each entry's perturbation, in the units of X (> 0).
    box : (float, float) or None, default=(0.0, 1.0)
        Domain of the data (pixels in [0, 1]); None leaves the data unbounded.
    victim, target : int or None, default=None
        Cluster ids (of the clean clustering) to move points from and towards; None picks the
        two clusters with the closest centroids, the higher id as the victim.
    generations : int, default=70
        G, generations of the search.
    population : int, default=1
        Children per generation, evaluated in one (batched) query.
    mutation_rate : float, default=0.001
        Probability that an entry gains U(0, delta).
    crossover_rate : float, default=0.8
        Probability of crossover, and of taking each entry from the selected parent.
    zero_rate : float, default=0.0001
        Probability that an entry is set to 0.
    lam : float, default=1.0
        lambda of Eq. (1), the weight of the attacker's cost.
    objective : {"ami", "ari", "distance"}, default="ami"
        phi of Eq. (1).
    pool_size : int, default=50
        Best candidates kept for selection.
    """

    name = "cina"

    def __init__(
        self,
        clusterer: Any,
        s: float = 0.1,
        delta: float = 0.1,
        box: tuple[float, float] | None = (0.0, 1.0),
        victim: int | None = None,
        target: int | None = None,
        generations: int = 70,
        population: int = 1,
        mutation_rate: float = 0.001,
        crossover_rate: float = 0.8,
        zero_rate: float = 0.0001,
        lam: float = 1.0,
        objective: Objective = "ami",
        pool_size: int = 50,
    ) -> None:
        super().__init__(clusterer)
        self.s = check_number("s", s, 0, low_open=True)
        self.delta = check_number("delta", delta, 0, low_open=True)
        self.box = check_box(box)
        self.victim, self.target = victim, target
        self.generations = int(check_number("generations", generations, 1, integer=True))
        self.population = int(check_number("population", population, 1, integer=True))
        self.mutation_rate = check_number("mutation_rate", mutation_rate, 0, 1)
        self.crossover_rate = check_number("crossover_rate", crossover_rate, 0, 1)
        self.zero_rate = check_number("zero_rate", zero_rate, 0, 1)
        self.lam = check_number("lam", lam, 0)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        self.pool_size = int(check_number("pool_size", pool_size, 1, integer=True))

    def victim_points(self, data: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The s points of the victim cluster nearest to the target centroid, and the direction
        u = sign(c_t - c_v)."""
        a, b = closest_pair(data, labels)
        victim = b if self.victim is None else self.victim
        target = self.target if self.target is not None else (a if victim != a else b)
        members = np.flatnonzero(labels == victim)
        if victim == target or len(members) == 0 or not (labels == target).any():
            raise ValueError(f"victim={victim} and target={target} must be two distinct clusters")
        c_v, c_t = data[members].mean(0), data[labels == target].mean(0)
        count = round(self.s * len(members)) if self.s < 1 else int(self.s)
        if count < 1 or count > len(members):
            raise ValueError(
                f"s={self.s} gives {count} points; the victim cluster has {len(members)}"
            )
        order = np.argsort(((data[members] - c_t) ** 2).sum(1), kind="stable")
        return members[order[:count]], np.sign(c_t - c_v)

    def _apply(
        self, data: np.ndarray, rows: np.ndarray, u: np.ndarray, eps: np.ndarray
    ) -> np.ndarray:
        """Poisoned copies of ``data``, one per candidate eps (P, s, d) -> (P, n, d)."""
        out = np.repeat(data[None], len(eps), axis=0)
        moved = data[rows][None] + eps * u
        out[:, rows] = moved if self.box is None else np.clip(moved, *self.box)
        return out

    def _score(self, reference: np.ndarray, labels: np.ndarray, eps: np.ndarray, n: int) -> float:
        """Eq. (1) for one candidate."""
        cost = np.count_nonzero(eps) * (float(np.abs(eps).max()) if eps.size else 0.0)
        return clustering_objective(self.objective, reference, labels) + self.lam * cost / (
            n * eps.shape[-1]
        )

    def _breed(
        self, parent: np.ndarray, pool: list[tuple[float, np.ndarray]], rng: np.random.RandomState
    ) -> np.ndarray:
        scores = np.array([score for score, _ in pool])
        weights = np.exp(-(scores - scores.min()))  # exp(-score), shifted for stability
        other = pool[rng.choice(len(pool), p=weights / weights.sum())][1]
        child = parent.copy()
        if rng.random_sample() <= self.crossover_rate:
            swap = rng.random_sample(child.shape) <= self.crossover_rate
            child[swap] = other[swap]
        grow = rng.random_sample(child.shape) < self.mutation_rate
        child[grow] = np.minimum(child[grow] + rng.uniform(0, self.delta, grow.sum()), self.delta)
        child[rng.random_sample(child.shape) < self.zero_rate] = 0.0
        return child

    def _queries(self, n_clusters: int) -> int:
        """The reference fit and one per child of every generation: 1 + G x P."""
        return 1 + self.generations * self.population

    def attack(self, X: Any, random_state: Any = None) -> ClusteringAttackResult:
        """Run the search on ``X`` (n, d) and return the best poisoned dataset found.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The clean data, finite (inside ``box`` when one is given).
        random_state : int, RandomState or None, default=None
            Seed of the search; None draws fresh randomness.

        Returns
        -------
        ClusteringAttackResult
            The poisoned data, the touched rows, their perturbation and the best-so-far
            objective (1) after each generation.
        """
        start = time.perf_counter()
        data = check_data(X)
        check_inside_box(data, self.box)
        rng = check_random_state(random_state)
        self.n_refits = 0
        reference = self.fit_predict(data)
        rows, u = self.victim_points(data, reference)
        n = len(data)
        children = rng.uniform(0, self.delta, size=(self.population, len(rows), data.shape[1]))
        pool: list[tuple[float, np.ndarray]] = []
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        history = []
        for _ in range(self.generations):
            poisoned = self._apply(data, rows, u, children)
            labels = self.fit_predict_many(poisoned)
            for eps, lab in zip(children, labels, strict=True):
                score = self._score(reference, lab, eps, n)
                pool.append((score, eps))
                if best is None or score < best[0]:
                    best = (score, eps, lab)
            pool = sorted(pool, key=lambda item: item[0])[: self.pool_size]
            history.append(best[0])  # type: ignore[index]
            children = np.stack([self._breed(c, pool, rng) for c in children])
        assert best is not None
        score, eps, labels = best
        poisoned = self._apply(data, rows, u, eps[None])[0]
        return self._result(
            start,
            data=poisoned,
            clean_labels=reference,
            labels=labels,
            touched=rows,
            delta=poisoned[rows] - data[rows],
            is_injected=np.zeros(n, dtype=bool),
            objective=np.asarray(history),
            meta={"s": len(rows), "delta": self.delta, "objective": self.objective,
                  "final_objective": score, "direction": u},
        )  # fmt: skip
