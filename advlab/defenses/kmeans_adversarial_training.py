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
ablation). Labels are never given to k-means: only the attack holds them. With ``preprocess``
(a scikit-learn transformer, fitted on the clean D once) k-means clusters the transformed D and
D' while the attack perturbs the inputs themselves, and the model it is given is the pipeline
of both (``kmeans[-1]`` its k-means).

``fit(X)`` runs the whole algorithm (scikit-learn's contract). ``iter_steps`` yields the
steps one by one and can continue after any finished step from its centres, which is how the
experiment runner checkpoints and resumes a long run (``resume=(step, centres)``, step 0
included).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin, _fit_context, clone
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from advlab.cluster import KMeans
from advlab.cluster._validation import check_n_clusters
from advlab.cluster.kmeans import _check_2d
from advlab.defenses.training_attacks import KMeansWhiteBoxAttack, TrainingAttack


@dataclass
class TrainingStep:
    """One step of Algorithm 1: its index s (0 = the clean fit), eps = s / beta * eps_max, the
    k-means fitted on D' and D' itself (rows of A replaced by A')."""

    step: int
    eps: float
    kmeans: KMeans
    data: np.ndarray
    seconds: float


class KMeansAdversarialTraining(ClusterMixin, TransformerMixin, BaseEstimator):
    """Adversarially trained k-means (Algorithm 1), a scikit-learn clusterer.

    Parameters
    ----------
    n_clusters : int, default=8
        k (856 in the paper, set by the experiment's config).
    eta : float in (0, 1], default=0.5
        Fraction of the training set that is attacked (A).
    beta : int >= 1, default=40
        Number of adversarial steps; step s trains on eps = s / beta * eps_max.
    attack : callable or None, default=None
        A ``TrainingAttack``
        ``attack(x, indices, eps, kmeans) -> x_adv``. None: the label-free white-box attack
        ``KMeansWhiteBoxAttack()`` (PGD pushing each point of A out of its current cluster,
        unbounded inputs, eps in input units). An attack with a method
        ``check_training_set(first_rows, n_samples)`` has it called before any fit, to refuse
        a training set it cannot attack (advlab's two attacks check their labels' length).
    eps_max : float >= 0, default=1.0
        Training eps reached at the last step, in the attack's units.
    continuous : bool, default=True
        Start step s from the centres of step s-1 (the paper).
    init : {"k-means++", "random"}, default="k-means++"
        Initialisation of step 0 (and of every step when ``continuous=False``).
    random_state : int, RandomState or None, default=None
        Seeds A and every k-means fit; None draws fresh randomness.
    device : str, default="cpu"
        Torch device of every k-means fit, passed to ``KMeans``.
    max_iter : int, default=300
        Lloyd iterations per step, passed to ``KMeans``.
    tol : float, default=1e-4
        Relative tolerance on the centre shift, passed to ``KMeans``.
    preprocess : transformer or None, default=None
        Unfitted scikit-learn transformer (or pipeline of them) fitted on the clean X; k-means
        clusters its transform of D and of every D'. None: k-means clusters the inputs.

    Attributes
    ----------
    kmeans_ : the final ``KMeans`` (on the preprocessed inputs with ``preprocess``)
    preprocess_ : the fitted preprocessing (with ``preprocess``)
    cluster_centers_, labels_ (of the final D'), n_features_in_
    adv_indices_ : indices of A
    n_iter_ : Lloyd iterations of the last step
    history_ : list of dicts per step (step, eps, inertia, n_iter, seconds)
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "eta": [Interval(Real, 0, 1, closed="right")],
        "beta": [Interval(Integral, 1, None, closed="left")],
        "attack": [callable, None],
        "eps_max": [Interval(Real, 0, None, closed="left")],
        "continuous": ["boolean"],
        "init": [StrOptions({"k-means++", "random"})],
        "random_state": ["random_state"],
        "device": [str],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "preprocess": [HasMethods(["fit", "transform"]), None],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        eta: float = 0.5,
        beta: int = 40,
        attack: TrainingAttack | None = None,
        eps_max: float = 1.0,
        continuous: bool = True,
        init: str = "k-means++",
        random_state: Any = None,
        device: str = "cpu",
        max_iter: int = 300,
        tol: float = 1e-4,
        preprocess: Any = None,
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
        self.preprocess = preprocess

    def _kmeans(self, init: Any, seed: int) -> KMeans:
        return KMeans(self.n_clusters, init=init, random_state=seed, device=self.device,
                      max_iter=self.max_iter, tol=self.tol)  # fmt: skip

    def split(self, n: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        """A (attacked) and B (clean) index sets: a uniform eta-fraction drawn from ``rng``."""
        n_adv = max(1, round(self.eta * n))
        a = np.sort(rng.choice(n, n_adv, replace=False))
        return a, np.setdiff1d(np.arange(n), a)

    def _base_seed(self) -> int:
        """Seed of step 0's k-means (step s uses it + s), drawn from ``random_state``."""
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def initial_kmeans(self, X: Any) -> KMeans:
        """Step 0 alone: k-means on the clean X (n_samples, ...), seeded as ``iter_steps``
        seeds it, so ``iter_steps(X, resume=(0, centres))`` with its centres continues exactly
        as an uninterrupted run. Trainings that share an integer ``random_state`` share step 0,
        so a caller can fit it once for all of them (the ``omari2024`` experiment does)."""
        data = self._check_data(X)
        if not isinstance(self.random_state, int | np.integer):
            raise ValueError("a shared step 0 needs an integer random_state (the run's seed)")
        features = self._features(self._preprocessing(data), data)
        return self._kmeans(self.init, self._base_seed()).fit(features)

    def _preprocessing(self, data: np.ndarray) -> Any:
        """``preprocess`` fitted on the clean data (n_samples, n_features); None without one."""
        return None if self.preprocess is None else clone(self.preprocess).fit(data)

    @staticmethod
    def _features(preprocessing: Any, data: np.ndarray) -> np.ndarray:
        """What k-means clusters: the rows themselves, or their transform (in their dtype)."""
        if preprocessing is None:
            return data
        return np.asarray(preprocessing.transform(data), dtype=data.dtype)

    def _check_data(self, X: Any) -> np.ndarray:
        """Parameters and X checked; X as (n_samples, n_features)."""
        self._validate_params()
        data = _check_2d(X, estimator=self)
        check_n_clusters(self.n_clusters, len(data))
        return data

    def iter_steps(
        self, X: Any, resume: tuple[int, np.ndarray] | None = None
    ) -> Iterator[TrainingStep]:
        """Algorithm 1 step by step on X (n_samples, ...): yields step 0 (k-means on D) and
        steps 1..beta. ``resume=(s, centres)`` continues after the finished step s (0 <= s <=
        beta) whose k-means had ``centres``: the steps after it are exactly those of an
        uninterrupted run with the same ``random_state`` (an int; None cannot be resumed).
        Sets ``adv_indices_``, ``n_features_in_``."""
        shape = getattr(X, "shape", None)
        sample_shape = tuple(shape[1:]) if shape is not None and len(shape) > 2 else None
        data = self._check_data(X)  # (n, D); the attack sees the original shape
        if resume is not None and not isinstance(self.random_state, int | np.integer):
            raise ValueError("resuming needs an integer random_state (the run's seed)")
        attack = self.attack if self.attack is not None else KMeansWhiteBoxAttack()
        check = getattr(attack, "check_training_set", None)  # optional: before any fit
        if check is not None:
            first_rows = data[:1] if sample_shape is None else data[:1].reshape(1, *sample_shape)
            check(first_rows, len(data))
        # two generators from the same seed (for an int): the k-means seeds and the split A
        base_seed = self._base_seed()
        a, _ = self.split(len(data), check_random_state(self.random_state))
        self.adv_indices_ = a
        preprocessing = self._preprocessing(data)
        if preprocessing is not None:
            self.preprocess_ = preprocessing
        elif hasattr(self, "preprocess_"):  # refitted without one: predict must not use it
            del self.preprocess_
        features = self._features(preprocessing, data)
        if resume is None:
            start = time.perf_counter()
            km = self._kmeans(self.init, base_seed).fit(features)  # initial_kmeans' fit
            yield TrainingStep(0, 0.0, km, data, time.perf_counter() - start)
            first = 1
        else:
            step, centres = resume
            if not 0 <= int(step) <= self.beta:
                raise ValueError(f"resume step must lie in 0..beta={self.beta}, got {step}")
            km = KMeans.from_centers(np.asarray(centres, dtype=data.dtype), device=self.device)
            if km.n_clusters != self.n_clusters or km.n_features_in_ != features.shape[1]:
                raise ValueError(
                    f"resume centres have shape {km.cluster_centers_.shape}, expected "
                    f"({self.n_clusters}, {features.shape[1]})"
                )
            first = int(step) + 1
        for step in range(first, self.beta + 1):
            start = time.perf_counter()
            eps = step / self.beta * self.eps_max
            d_prime = data.copy()
            rows = data[a] if sample_shape is None else data[a].reshape(len(a), *sample_shape)
            model = km if preprocessing is None else Pipeline(
                [("preprocess", preprocessing), ("kmeans", km)]
            )  # fmt: skip
            d_prime[a] = np.asarray(attack(rows, a, eps, model)).reshape(len(a), -1)  # D' = A' ∪ B
            init = km.cluster_centers_ if self.continuous else self.init
            km = self._kmeans(init, base_seed + step).fit(self._features(preprocessing, d_prime))
            yield TrainingStep(step, eps, km, d_prime, time.perf_counter() - start)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: Any, y: Any = None) -> KMeansAdversarialTraining:
        """Run Algorithm 1 on X (n_samples, ...); ``y`` is ignored: k-means adversarial
        training is unsupervised, labels belong to the attack."""
        self.history_: list[dict[str, Any]] = []
        for s in self.iter_steps(X):
            km = s.kmeans
            self.history_.append({"step": s.step, "eps": s.eps, "inertia": km.inertia_,
                                  "n_iter": km.n_iter_, "seconds": s.seconds})  # fmt: skip
        self.kmeans_ = km
        self.cluster_centers_ = km.cluster_centers_
        self.labels_ = km.labels_
        self.n_iter_ = km.n_iter_
        return self

    @property
    def _n_features_out(self) -> int:
        return int(self.cluster_centers_.shape[0])

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def predict(self, X: Any) -> np.ndarray:
        """Index of the nearest centre of the final k-means."""
        check_is_fitted(self, "kmeans_")
        data = _check_2d(X, estimator=self, reset=False)
        return self.kmeans_.predict(self._features(getattr(self, "preprocess_", None), data))

    def transform(self, X: Any) -> np.ndarray:
        """Distances to the final centres, (n_samples, n_clusters)."""
        check_is_fitted(self, "kmeans_")
        data = _check_2d(X, estimator=self, reset=False)
        return self.kmeans_.transform(self._features(getattr(self, "preprocess_", None), data))
