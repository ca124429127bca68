"""Algorithm 1 of Omari, Kim & Montague: adversarial training of k-means.

    1: centroids = k-means++(D, k)
    2: A = uniform sample of eta * |D| points of D;   3: B = D - A
    4: k-means.TRAIN(D)
    5: for s in 1..beta:
    6:     eps = s / beta                      (times ``eps_max``, in the attack's eps units)
    7:     A' = attack(A, f, eps)              (I-FGSM through the surrogate f)
    8:     D' = A' ∪ B
    9:     k-means.TRAIN(D')                   (from the centroids of step s-1: continuous learning)

With ``continuous=False`` each step starts from a fresh k-means++ instead (the paper's Fig. 2c-d
ablation). Labels are never given to k-means: only the attack holds them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from advlab.cluster import KMeans
from advlab.cluster._validation import check_n_clusters
from advlab.defenses.training_attacks import TrainingAttack

StepCallback = Callable[[int, float, KMeans, np.ndarray], dict[str, Any] | None]


class KMeansAdversarialTraining:
    """Adversarially trained k-means (Algorithm 1).

    Args:
        n_clusters: k (856 in the paper).
        eta: fraction of the training set that is attacked (A), in (0, 1].
        beta: number of adversarial steps; step s trains on eps = s / beta * eps_max.
        attack: a :class:`~advlab.defenses.training_attacks.TrainingAttack`.
        eps_max: training eps reached at the last step (1 in the paper).
        continuous: start step s from the centres of step s-1 (True in the paper).
        init: initialisation of step 0 (and of every step when ``continuous=False``).
        random_state: seeds A and every k-means fit.
        device, max_iter, tol: passed to :class:`~advlab.cluster.KMeans`.

    Fitted: ``kmeans_`` (the final model), ``cluster_centers_``, ``adv_indices_`` (A),
    ``history_`` (one dict per step: step, eps, inertia, n_iter, seconds, + callback's dict).
    """

    def __init__(
        self,
        n_clusters: int = 856,
        eta: float = 0.5,
        beta: int = 40,
        attack: TrainingAttack | None = None,
        eps_max: float = 1.0,
        continuous: bool = True,
        init: str = "k-means++",
        random_state: int | None = None,
        device: str = "cpu",
        max_iter: int = 300,
        tol: float = 1e-4,
    ) -> None:
        self.n_clusters = n_clusters
        self.eta = eta
        self.beta = beta
        self.attack = attack
        self.eps_max = eps_max
        self.continuous = continuous
        self.init = init
        self.random_state = random_state
        self.device = device
        self.max_iter = max_iter
        self.tol = tol

    def _check(self, X: np.ndarray) -> None:
        if X.ndim < 2 or len(X) == 0:
            raise ValueError(f"X must have shape (n_samples, ...), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        check_n_clusters(self.n_clusters, len(X))
        if not 0 < self.eta <= 1:
            raise ValueError(f"eta={self.eta} must lie in (0, 1]")
        if not isinstance(self.beta, int) or self.beta < 1:
            raise ValueError(f"beta={self.beta} must be an integer >= 1")
        if not self.eps_max >= 0:
            raise ValueError(f"eps_max={self.eps_max} must be >= 0")
        if self.attack is None or not callable(self.attack):
            raise ValueError("an attack is required (e.g. SurrogateAttack(surrogate, labels))")

    def _kmeans(self, init: Any, seed: int) -> KMeans:
        return KMeans(self.n_clusters, init=init, random_state=seed, device=self.device,
                      max_iter=self.max_iter, tol=self.tol)  # fmt: skip

    def split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A (attacked) and B (clean) index sets: a uniform eta-fraction, drawn from random_state."""
        rng = check_random_state(self.random_state)
        n_adv = max(1, round(self.eta * n))
        a = np.sort(rng.choice(n, n_adv, replace=False))
        return a, np.setdiff1d(np.arange(n), a)

    def fit(
        self,
        X: np.ndarray,
        y: None = None,
        callback: StepCallback | None = None,
        start_step: int = 0,
        start_centers: np.ndarray | None = None,
    ) -> KMeansAdversarialTraining:
        """Run Algorithm 1 on X (N, ...). ``callback(step, eps, kmeans, D')`` may return a dict
        of evaluations stored in ``history_``. ``start_step``/``start_centers`` resume after
        step ``start_step`` whose centres are given (the experiment runner's checkpoints)."""
        if y is not None:
            raise ValueError(
                "k-means adversarial training is unsupervised: labels belong to the attack"
            )
        X = np.asarray(X, dtype=np.float32)
        self._check(X)
        assert self.attack is not None
        base_seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        a, _ = self.split(len(X))
        self.adv_indices_ = a
        self.history_: list[dict[str, Any]] = []
        if start_step == 0:
            km = self._train_step(0, 0.0, self.init, base_seed, X, callback)
        else:
            if start_centers is None or not 0 < start_step <= self.beta:
                raise ValueError(
                    "resuming needs 0 < start_step <= beta and the centres of that step"
                )
            km = KMeans.from_centers(start_centers, device=self.device)
        for step in range(start_step + 1, self.beta + 1):
            eps = step / self.beta * self.eps_max
            d_prime = X.copy()
            d_prime[a] = self.attack(X[a], a, eps, km)  # D' = A' ∪ B, rows kept in place
            init = km.cluster_centers_ if self.continuous else self.init
            km = self._train_step(step, eps, init, base_seed + step, d_prime, callback)
        self.kmeans_ = km
        self.cluster_centers_ = km.cluster_centers_
        return self

    def _train_step(
        self,
        step: int,
        eps: float,
        init: Any,
        seed: int,
        data: np.ndarray,
        callback: StepCallback | None,
    ) -> KMeans:
        start = time.perf_counter()
        km = self._kmeans(init, seed).fit(data)
        entry: dict[str, Any] = {"step": step, "eps": eps, "inertia": km.inertia_, "n_iter": km.n_iter_,
                                 "seconds": time.perf_counter() - start}  # fmt: skip
        if callback is not None:
            entry.update(callback(step, eps, km, data) or {})
        self.history_.append(entry)
        return km

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.kmeans_.predict(X)
