"""``evaluate-kmeans``: k-means under evasion attack on *your own* data, with *your own*
surrogate network, as a run and a report (Omari et al.'s protocol, any data set).

::

    experiment: evaluate-kmeans
    train: {path: train.npz}              # x (N, ...) inside the surrogate's bounds, y (N,)
    test: {path: test.npz, n: 2000}
    n_clusters: 100                       # clusters mapped to classes by majority vote
    surrogate:                            # optional: without it, only k-means' own bounds
      factory: mypackage.nets:build       # or a zoo name with train_epochs (trained on train)
      weights: net.safetensors
      preprocessing: {mean: [0.5], std: [0.25]}
    eps: [0.05, 0.1, 0.2]                 # L-inf (norm: l2 for L2), in the inputs' units
    preprocess:                           # optional: what k-means clusters (any affine steps)
      factory: mypackage.pipes:scale_and_reduce   # e.g. returns make_pipeline(StandardScaler(), PCA(50))
    features:                             # optional: k-means clusters your network's embedding
      factory: mypackage.nets:encoder
      weights: encoder.safetensors

k-means (``advlab.cluster.KMeans``, seed ``seed``) clusters the flattened training inputs (with
``preprocess``: their transform by ``factory(**kwargs)``, fitted on them, every
``random_state`` in it set to ``seed``), its clusters are mapped to classes by majority vote of
the training labels, and every test input is classified as its cluster's class. The
preprocessing must be affine (scalers, PCA, ...; ``advlab.cluster.kmeans_cells``): the white-box
PGD, the minimal perturbations and the certified radii then go through it, so every budget and
radius stays in the inputs' own units. Per L-inf budget eps and test input i (all rates over the
n test inputs, with their n, so the report draws Wilson 95 % intervals):

- ``transfer.linf.eps<e>.accuracy``: k-means' accuracy on I-FGSM examples crafted on the
  surrogate (``max_iter`` steps of eps / 4, Omari et al.'s transfer attack);
- ``whitebox.linf.eps<e>.accuracy``: on the white-box PGD of k-means itself (``KMeansPGD`` on
  the margin of its differentiable nearest-centre classifier, ``whitebox_iter`` steps), an
  upper bound on its robust accuracy;
- ``minimal.linf.eps<e>.accuracy``: the inputs correctly classified that the smallest
  box-constrained perturbation ``KMeansMinimalAttack`` finds (closed form per candidate
  cluster of another class, an upper bound on the true minimum) does not reach within eps;
- ``exact.linf.eps<e>.accuracy`` (``exact: true``, the default): the same with the exact
  minimum (``KMeansMinimalAttack(exact=True)``, a linear program per candidate cell of
  another class, up to the largest eps): k-means' robust accuracy itself;
- ``certified.linf.eps<e>.accuracy``: the inputs correctly classified whose class-aware L-inf
  radius exceeds eps, a lower bound (``kmeans_certified_radius`` with the box: the distance,
  inside ``bounds``, to the nearest bisecting half-space towards a cluster of another class,
  closed form);
- ``worst_case.linf.eps<e>.accuracy``: correct and broken by none of the attacks.

With ``adversarial_training: {eta, beta, eps_max}`` (a surrogate needed), Algorithm 1 of Omari
et al. (``KMeansAdversarialTraining``: a share eta of the training inputs replaced by their
I-FGSM examples through the surrogate at eps = s / beta * eps_max, k-means refitted from the
previous centres at every step s, checkpointed per step) trains a second k-means, mapped by
majority vote on its last training set, and every id above is measured for it too, prefixed
``trained.``. Training and the transfer attack then use the same surrogate, so a gain under
transfer may be specific to it: ``heldout_surrogate`` (another network, a zoo one trained with
seed + 1) adds ``heldout.linf.eps<e>.accuracy``, the transfer attack from a network Algorithm 1
never saw, the control that tells the two apart.

With ``features`` (deep clustering: the user's network f, with its weights, in front of
k-means and of any ``preprocess``), k-means clusters f's flattened outputs of the training
inputs and classifies a test input by the cluster of f(x). The transfer attack is judged
through f; the white-box PGD attacks through f (``KMeansPGD(..., features=f)``); the
certified figures are those of linear (CROWN) bounds through f
(``kmeans_is_certified_linear``) when f is made of layers they take (affine layers and ReLU,
piecewise-linear or smooth activations: ``advlab.defenses.linear_bound_chain``), else of
interval bounds (``kmeans_is_certified``), named in ``results.json``'s ``certificate``;
``exact`` needs an f of affine layers and ReLUs or piecewise-linear activations
(``advlab.defenses.check_verifiable``) and finds each correct input's exact minimal perturbation, up to the largest eps, by
mixed-integer programs (``verify_kmeans_linf(minimal=True)``, ``time_limit`` seconds each; an
input whose program hits it counts as not robust, and ``exact_unknown`` counts them). The
median certified radius is that of the same bounds, found by bisection
(``kmeans_certified_radius_through``, to 1e-3 of its cap, searched up to ``RADIUS_CAP`` = 4
times the largest eps: an input certified there counts at the cap). The closed-form
``minimal`` attack has no counterpart through a network and is left out; so is Algorithm 1
(it refits k-means on perturbed inputs, not on a network's features).

With ``eps_units: feature_std`` (tabular features in their own units), each eps is a multiple
of every input feature's standard deviation over the training inputs: the per-feature L-inf
budget eps * std_d (0 for a constant feature, which no attack moves). The transfer I-FGSM, the
white-box PGD, Algorithm 1's I-FGSM (at each step's eps, with ``eps_max`` in the same units)
and the certificates through ``features`` take that box; the minimal
perturbations and the certified radius are measured in the weighted norm max_d |delta_d| / std_d
(``scale``), so "size > eps" is still "beyond the budget".

With ``norm: l2`` every budget, size and radius is an L2 one, and every id reads ``l2`` where
it reads ``linf`` above: the transfer attack (and Algorithm 1's) is I-FGSM's L2 analogue, PGD
without random start (``max_iter`` steps of eps / 4 along the normalised gradient), the
white-box PGD is L2, the minimal perturbations are the closest points in L2 (closed form, and
with ``exact`` the projection onto each candidate cell, eq. D of
``advlab.attacks.evasion.kmeans_minimal``) and the certified radius is the L2 distance to the
nearest bisecting hyperplane (eq. R). With ``feature_std`` the ball is the ellipsoid
||delta / std||_2 <= eps (PGD's ``units``, the minimal attack's and the radius' ``scale``).
With ``smoothing: {sigma, radii}`` (``n0``, ``n``, ``alpha`` optional), randomized smoothing
of each k-means (``advlab.defenses.RandomizedSmoothing`` on its nearest-centre classifier,
through ``features`` if any, its noise in each feature's std with ``feature_std``): the
smoothed classifier's ``smoothing.clean_accuracy``, ``smoothing.abstained``,
``smoothing.l2.eps<r>.certified_accuracy`` at each L2 radius r and
``smoothing.l2.median_certified_radius`` (``trained.``-prefixed for Algorithm 1's k-means). It
is another classifier than k-means; with ``norm: l2`` its figures sit beside k-means' exact
L2 robust accuracy, which says what smoothing gives up.

Through ``features`` the certified figures and radii are those of linear bounds over the L2
ball (``kmeans_is_certified_linear(..., norm="l2")``) for a network linear bounds take, else
of interval bounds over it (``kmeans_is_certified(..., norm="l2")``, eq. E of
``advlab.defenses.interval_bounds``), and ``exact`` must be false: the exact programs are
L-inf ones (an L2 ball makes them quadratic).

The true robust accuracy lies between the certified and the worst-case figure, and with
``exact`` it is the exact figure; the transfer attack says how much of it a black-box attacker
without k-means reaches. ``certified_but_attacked`` counts inputs certified yet broken by an
attack, and ``exact_but_attacked`` inputs the exact minimum puts beyond eps yet broken by
another attack; both must be 0. Units are (eps, chunk of test
inputs) jobs carrying the fitted k-means; each worker loads the data files and the surrogate
itself (a zoo surrogate from the artefact cache), so any executor runs them.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from sklearn.pipeline import Pipeline

from advlab.attacks.evasion import (
    IFGSM,
    PGD,
    Attack,
    KMeansMinimalAttack,
    KMeansPGD,
    kmeans_certified_radius,
)
from advlab.attacks.evasion.base import model_device
from advlab.attacks.evasion.kmeans_pgd import kmeans_model
from advlab.cluster import KMeans, KMeansCells, affine_map, kmeans_cells, majority_vote_mapping
from advlab.data import Dataset
from advlab.defenses import (
    KMeansAdversarialTraining,
    SurrogateAttack,
    check_verifiable,
    kmeans_certified_radius_through,
    kmeans_is_certified,
    kmeans_is_certified_linear,
    linear_bound_chain,
    verify_kmeans_linf,
)
from advlab.experiments.builtin._user import (
    PER_FEATURE_WORDS,
    BoundsSpec,
    Strict,
    bounds_record,
    build_seeded,
    config_errors,
    display_range,
    file_stamp,
    open_bounds,
    refuse_changed_files,
    resolve_bounds,
)
from advlab.experiments.builtin.evaluate import (
    NORM_WORDS,
    DataSpec,
    ModelSpec,
    SmoothingSpec,
    check_classifier,
    distance_unit,
    eps_key,
    feature_units,
    fingerprint,
    fresh_module,
    load_inputs,
    load_weights,
    per_feature_budget,
    rate_comparison,
    smoothing_comparisons,
    smoothing_of,
    smoothing_table,
    train_zoo_model,
    training_entry,
    untrained_model,
)
from advlab.experiments.config import ConfigError, ExperimentConfig
from advlab.experiments.planning import inputs_per_second, spread_sample
from advlab.experiments.registry import register
from advlab.experiments.runner import RunContext
from advlab.models import Model
from advlab.report.plots import plot_attack_curves
from advlab.report.tables import Table
from advlab.utils.io import sha256_bytes
from advlab.utils.validation import Bounds, check_images, flat_bounds, per_feature


class TrainSpec(DataSpec):
    """The inputs k-means is fitted on (and a zoo surrogate trained on): ``name`` (a built-in
    set, its ``split``) or ``path`` (an ``.npz`` of ``x`` and ``y``); see ``DataSpec``."""

    split: Literal["train", "test"] = "train"


class AdversarialTrainingSpec(Strict):
    """Algorithm 1's settings (``KMeansAdversarialTraining``).

    Attributes
    ----------
    eta : float
        Share of the training inputs attacked, in (0, 1].
    beta : int
        Steps; step s trains on eps = s / beta * eps_max.
    eps_max : float
        Training budget of the last step (in the run's ``norm``), > 0, in the inputs' units.
    continuous : bool
        Start each step from the previous step's centres (the paper).
    """

    eta: float = Field(0.5, gt=0, le=1)
    beta: int = Field(8, ge=1)
    eps_max: float = Field(gt=0)
    continuous: bool = True


class PreprocessSpec(Strict):
    """The affine preprocessing k-means clusters behind: ``factory(**kwargs)``, an unfitted
    scikit-learn transformer (or pipeline of them).

    Attributes
    ----------
    factory : str
        ``package.module:name`` of a class or function.
    kwargs : dict
        Its keyword arguments.
    """

    factory: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class EvaluateKMeansConfig(ExperimentConfig):
    """Config of ``evaluate-kmeans`` (see the module docstring).

    Attributes
    ----------
    seed : int
        Seed of k-means (and of a zoo surrogate's training).
    train, test : DataSpec
        The inputs k-means is fitted on, and the attacked ones.
    n_clusters : int
        k, >= 2, at most the number of training inputs.
    surrogate : ModelSpec or None
        The network the transfer attack is crafted on (a zoo name with ``train_epochs`` is
        trained on ``train``); None: no transfer attack.
    eps : tuple of float
        Budgets in ``norm``, > 0, in the inputs' units (``eps_units``).
    norm : {"linf", "l2"}
        The norm of every budget, perturbation size and radius.
    eps_units : {"input", "feature_std"}
        "input": every feature gets the budget eps, in the inputs' units; "feature_std": each
        feature d gets eps * std_d, its standard deviation over the training inputs.
    bounds : (float, float), (list, list) or "feature_range"
        The inputs' range, which both attacks stay inside (a network's own bounds must be the
        same value): two numbers, null leaving a side open; a side given as a list holds one
        number per feature (of the flattened input; null entries open); "feature_range" is
        each feature's minimum and maximum over the training and test inputs (a feature
        constant there is fixed).
    heldout_surrogate : ModelSpec or None
        A second network for a transfer attack Algorithm 1 never trained against (a zoo name
        with ``train_epochs`` is trained with seed + 1); None: none.
    adversarial_training : AdversarialTrainingSpec or None
        Train and measure Algorithm 1's k-means too (needs a surrogate); None: plain only.
    smoothing : SmoothingSpec or None
        Randomized smoothing of each k-means and its certified L2 accuracy; None: none.
    preprocess : PreprocessSpec or None
        Affine steps (scalers, PCA, ...) fitted on the training inputs before k-means (and
        before Algorithm 1's k-means, which refits on the preprocessed D'); budgets stay in the
        inputs' units. None: k-means clusters the inputs themselves.
    features : ModelSpec or None
        The user's network (factory and weights) whose flattened outputs k-means clusters
        (after ``preprocess``, if any); every attack and bound goes through it, budgets stay in
        the inputs' units. None: k-means clusters the inputs.
    time_limit : float
        Seconds per mixed-integer program of the exact minimal perturbation through
        ``features``.
    max_iter, whitebox_iter : int
        Steps of the transfer (and training) I-FGSM (step eps / 4) and of the white-box PGD.
    exact : bool
        Also compute the exact minimal L-inf perturbation (a linear program per candidate
        cell, up to the largest eps), so that the robust accuracy is exact, not bracketed.
    chunk_size, batch_size : int
        Test inputs per unit of work, and per forward/backward pass.
    device : str
        Where k-means and the surrogate run.
    """

    train: TrainSpec
    test: DataSpec
    n_clusters: int = Field(ge=2)
    surrogate: ModelSpec | None = None
    heldout_surrogate: ModelSpec | None = None
    eps: tuple[float, ...]
    norm: Literal["linf", "l2"] = "linf"
    eps_units: Literal["input", "feature_std"] = "input"
    bounds: BoundsSpec = (0.0, 1.0)
    adversarial_training: AdversarialTrainingSpec | None = None
    smoothing: SmoothingSpec | None = None
    preprocess: PreprocessSpec | None = None
    features: ModelSpec | None = None
    time_limit: float = Field(30.0, gt=0)
    max_iter: int = Field(10, ge=1)
    whitebox_iter: int = Field(20, ge=1)
    exact: bool = True
    chunk_size: int = Field(500, ge=1)
    batch_size: int = Field(256, ge=1)
    device: str = "cpu"

    @field_validator("bounds", mode="before")
    @classmethod
    def _open_bounds(cls, value: Any) -> Any:
        return open_bounds(value)

    @field_validator("eps")
    @classmethod
    def _budgets(cls, eps: tuple[float, ...]) -> tuple[float, ...]:
        if not eps or any(not (math.isfinite(e) and e > 0) for e in eps):
            raise ValueError(f"eps must hold finite budgets > 0, got {list(eps)}")
        return tuple(sorted(set(eps)))

    @model_validator(mode="after")
    def _training_needs_a_surrogate(self) -> EvaluateKMeansConfig:
        if self.adversarial_training is not None and self.surrogate is None:
            raise ValueError("adversarial_training attacks through the surrogate: give one")
        if self.features is not None and self.adversarial_training is not None:
            raise ValueError("adversarial_training refits k-means on perturbed inputs, not on "
                             "a network's features: leave one of them out")  # fmt: skip
        if self.features is not None and self.norm == "l2" and self.exact:
            raise ValueError("norm: l2 through features takes exact: false (the exact programs "
                             "through a network are L-inf ones; an L2 ball makes them "
                             "quadratic)")  # fmt: skip
        if self.features is not None and self.features.weights is None:
            raise ValueError("features takes your network with its weights (train_epochs "
                             "trains a classifier)")  # fmt: skip
        return self


# ---- data, k-means and surrogate ----


def _network(
    config: EvaluateKMeansConfig, which: str, train: Dataset, test: Dataset, ctx: RunContext | None
) -> Model | None:
    """The network ``which`` (surrogate, heldout_surrogate, features) of ``config`` in eval
    mode: a zoo model trained on ``train`` (cached in ``ctx``'s cache; the held-out one with
    seed + 1), or the factory's network with its weights."""
    spec: ModelSpec | None = getattr(config, which)
    if spec is None:
        return None
    if spec.bounds != config.bounds:
        raise ValueError(
            f"{which}.bounds {_shown(spec.bounds)} differ from bounds {_shown(config.bounds)}: "
            "the attacks must stay in the inputs' range"
        )
    assert train.images is not None
    module: torch.nn.Module
    if spec.train_epochs is not None:
        assert ctx is not None
        seed = config.seed + (which == "heldout_surrogate")
        module = train_zoo_model(spec, train, test, seed, config.device, ctx.cache).model
    else:
        assert spec.weights is not None
        module = fresh_module(spec, tuple(train.images.shape[1:]), train.n_classes)
        load_weights(module, spec.weights)
    box = _resolved_box(config, train, test)
    return Model(module.eval(), box, spec.preprocessing).to(config.device)


def _shown(bounds: BoundsSpec) -> str:
    """A config's bounds for a message: "feature_range", [lo, hi], or per-feature lists named
    by their length."""
    if isinstance(bounds, str):
        return repr(bounds)
    return "[" + ", ".join(f"{len(side)} numbers" if isinstance(side, tuple) else f"{side:g}"
                           for side in bounds) + "]"  # fmt: skip


def _resolved_box(config: EvaluateKMeansConfig, train: Dataset, test: Dataset) -> Bounds:
    """The box ``config.bounds`` names for these inputs (``resolve_bounds``)."""
    assert train.images is not None and test.images is not None
    return resolve_bounds(config.bounds, [train.images, test.images])


def _check_inputs(config: EvaluateKMeansConfig, train: Dataset, test: Dataset) -> None:
    """Shapes, ranges and classes that would fail later, named before any work."""
    assert train.images is not None and test.images is not None
    if train.images.shape[1:] != test.images.shape[1:]:
        raise ValueError(
            f"train inputs have shape {train.images.shape[1:]}, test inputs "
            f"{test.images.shape[1:]}: they must match"
        )
    if config.n_clusters > len(train):
        raise ValueError(f"n_clusters = {config.n_clusters} > the {len(train)} training inputs")
    box = _resolved_box(config, train, test)
    for name, ds in (("train", train), ("test", test)):
        assert ds.images is not None
        if per_feature(box):
            inputs = torch.from_numpy(ds.images)  # (checked in their own dtype: no copy)
            check_images(inputs, f"{name} inputs", box, inputs.dtype,
                         "set bounds to the inputs' range, or bounds: feature_range")  # fmt: skip
            continue
        lo, hi = box
        if float(ds.images.min()) < lo or float(ds.images.max()) > hi:
            raise ValueError(
                f"{name} inputs range over [{ds.images.min():.4g}, {ds.images.max():.4g}], "
                f"outside bounds [{lo:g}, {hi:g}]"
            )
    unseen = sorted(set(np.unique(test.labels)) - set(np.unique(train.labels)))
    if unseen:
        raise ValueError(f"test labels {unseen} never occur in the training labels")


def _feature_network(
    config: EvaluateKMeansConfig, train: Dataset, test: Dataset
) -> tuple[Model | None, str]:
    """The user's ``features`` network with its weights, in eval mode, checked to take the
    inputs and, with ``exact``, to be made of affine layers and ReLUs (``ValueError`` naming
    the problem), and the certificate k-means gets through it: "linear" (CROWN,
    ``kmeans_is_certified_linear``) for such a network, else "interval"
    (``kmeans_is_certified``); (None, "Voronoi radius") without ``features``."""
    network = _network(config, "features", train, test, None)  # (with weights: no training)
    if network is None:
        return None, "Voronoi radius"
    assert train.images is not None
    x = torch.from_numpy(train.images[:8]).to(config.device)
    try:
        with torch.no_grad():
            network(x)
    except Exception as exc:  # a shape the user's module cannot take: say what was fed
        raise ValueError(f"features fails on inputs of shape {tuple(x.shape)}: {exc}") from exc
    try:  # (exact programs take ReLU networks; linear bounds smooth activations too)
        (check_verifiable if config.exact else linear_bound_chain)(network, x)
    except ValueError as exc:
        if config.exact:
            raise ValueError(f"features: {exc}; exact: true needs a network of affine layers "
                             "and ReLU or piecewise-linear activations, set exact: false for "
                             "the others") from exc  # fmt: skip
        return network, "interval"
    return network, "linear"


def _clustered(config: EvaluateKMeansConfig, features: Model | None, x: Any) -> np.ndarray:
    """What k-means clusters of the inputs x (N, ...): x flattened, or the features network's
    flattened outputs (float32, in batches)."""
    x = torch.as_tensor(x)
    if features is None:
        return x.detach().cpu().numpy().reshape(len(x), -1)
    with torch.no_grad():
        out = [features(b.to(config.device)).flatten(1).float().cpu()
               for b in x.split(config.batch_size)]  # fmt: skip
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


Units = np.ndarray | None  # per-feature units of the budgets (eps_units: feature_std), or None
_LOADED: dict[str, tuple[Dataset, Dataset, dict[str, Model], Model | None, str, Units, Bounds]] = {}
NETWORKS = {"surrogate": "transfer", "heldout_surrogate": "heldout"}  # config key -> attack id
EPS_UNITS = {"input": "", "feature_std": " (eps in multiples of each feature's training std)"}
AXIS_UNITS = {"input": "input units", "feature_std": "multiples of each feature's training std"}


def _loaded(
    ctx: RunContext, config: EvaluateKMeansConfig
) -> tuple[Dataset, Dataset, dict[str, Model]]:
    """Train and test inputs and the transfer networks (attack id -> network), loaded once per
    process, config and files."""
    return _load_all(ctx, config)[:3]


def _features(ctx: RunContext, config: EvaluateKMeansConfig) -> Model | None:
    """The ``features`` network (None without one), loaded once per process with the data."""
    return _load_all(ctx, config)[3]


def _certificate(ctx: RunContext, config: EvaluateKMeansConfig) -> str:
    """The certificate of ``_feature_network`` ("Voronoi radius" without a network)."""
    return _load_all(ctx, config)[4]


def _units(ctx: RunContext, config: EvaluateKMeansConfig) -> Units:
    """The per-feature units of the budgets (``feature_units`` over the training inputs), loaded
    once with the data."""
    return _load_all(ctx, config)[5]


def _box(ctx: RunContext, config: EvaluateKMeansConfig) -> Bounds:
    """The inputs' box (``_resolved_box``), resolved once with the data."""
    return _load_all(ctx, config)[6]


def _load_all(
    ctx: RunContext, config: EvaluateKMeansConfig
) -> tuple[Dataset, Dataset, dict[str, Model], Model | None, str, Units, Bounds]:
    """``_loaded``'s data and networks, the ``features`` network and its certificate, the
    budgets' per-feature units and the inputs' box, checked, cached."""
    files = [config.train.path, config.test.path]
    specs = (config.surrogate, config.heldout_surrogate, config.features)
    files += [spec.weights for spec in specs if spec]
    stamps = "|".join(file_stamp(f) for f in files)
    key = sha256_bytes(f"{ctx.cache.root}|{stamps}|{config.model_dump_json()}".encode())
    if key not in _LOADED:
        train, test = load_inputs(config.train, "train"), load_inputs(config.test, "test")
        _check_inputs(config, train, test)
        features, certificate = _feature_network(config, train, test)
        if config.preprocess is not None:
            _check_preprocessing(config, train, features)
        networks = {attack: _network(config, which, train, test, ctx)
                    for which, attack in NETWORKS.items()}  # fmt: skip
        assert test.images is not None
        x = torch.from_numpy(test.images[: config.batch_size]).to(config.device)
        labels = np.r_[train.labels, test.labels]
        for which, attack in NETWORKS.items():
            network = networks[attack]
            if network is not None:
                check_classifier(network, x, labels, which)
        kept = {a: net for a, net in networks.items() if net is not None}
        _LOADED[key] = (
            train,
            test,
            kept,
            features,
            certificate,
            feature_units(config.eps_units, train, "training inputs"),
            _resolved_box(config, train, test),
        )
    return _LOADED[key]


# ---- units ----


Clusterer = KMeans | KMeansCells  # a k-means, or one behind the run's preprocessing
Models = dict[str, tuple[Clusterer, np.ndarray]]  # id prefix ("", "trained.") -> it, mapping


def _unit(
    ctx: RunContext, config: EvaluateKMeansConfig, models: Models, eps: float, start: int
) -> dict[str, Any]:
    """One budget on one chunk: per k-means and input, whether it still classifies the input
    correctly under each network's transfer attack (crafted once, judged by every k-means) and
    under the white-box PGD on that k-means."""
    _, test, networks = _loaded(ctx, config)
    features, units = _features(ctx, config), _torch(_units(ctx, config))
    assert test.images is not None
    sl = slice(start, start + config.chunk_size)
    x = torch.from_numpy(test.images[sl]).to(config.device)
    y = torch.from_numpy(test.labels[sl]).to(config.device)

    def still_correct(km: Clusterer, mapping: np.ndarray, adv: torch.Tensor) -> list[bool]:
        pred = mapping[km.predict(_clustered(config, features, adv))]
        return (pred == test.labels[sl]).tolist()

    transfer = {attack: _transfer_attack(config, network, eps, units)(x, y).x_adv
                for attack, network in networks.items()}  # fmt: skip
    out: dict[str, Any] = {}
    for prefix, (km, mapping) in models.items():
        part = {attack: still_correct(km, mapping, adv) for attack, adv in transfer.items()}
        whitebox = KMeansPGD(km, mapping, eps=eps, max_iter=config.whitebox_iter,
                             norm=config.norm, bounds=_box(ctx, config),
                             batch_size=config.batch_size, features=features,
                             units=units)  # fmt: skip
        part["whitebox"] = still_correct(km, mapping, whitebox(x, y).x_adv)
        out[prefix] = part
    return out


def _torch(units: Units) -> torch.Tensor | None:
    """Per-feature units as an attack's ``units`` (a float64 tensor), None as None."""
    return None if units is None else torch.from_numpy(units)


def _transfer_class(norm: str) -> Any:
    """The transfer attack's class in ``norm``: I-FGSM (Omari et al.'s) in L-inf, its L2
    analogue (PGD in L2 without random start) in L2; both take I-FGSM's arguments, and
    ``units`` for per-feature units (the box eps * units, or its ellipsoid)."""
    return IFGSM if norm == "linf" else partial(PGD, norm="l2", random_start=False)


def _transfer_attack(
    config: EvaluateKMeansConfig, network: Model, eps: float, units: torch.Tensor | None
) -> Attack:
    """The transfer attack at eps on ``network``: ``max_iter`` steps of eps / 4 of
    ``_transfer_class``, in the per-feature ``units``, if any."""
    return _transfer_class(config.norm)(network, eps=eps, max_iter=config.max_iter,
                                        eps_step=eps / 4, batch_size=config.batch_size,
                                        units=units)  # fmt: skip


def _minimal_unit(
    ctx: RunContext, config: EvaluateKMeansConfig, models: Models, start: int
) -> dict[str, Any]:
    """Per k-means and input of one chunk, the L-inf size of the smallest box-constrained
    perturbation to a cluster of another class that ``KMeansMinimalAttack`` finds in closed
    form (``minimal``; inf where none) and, with ``exact``, the exact one up to the largest
    eps (``exact``; computed for the inputs k-means classifies correctly, 0 for the others,
    which need no perturbation). Through ``features``: only the exact one, by mixed-integer
    programs (nan where a program hit the time limit), and the certified radius of each
    correct input (``radius``, ``_radius_through``)."""
    _, test, _ = _loaded(ctx, config)
    features = _features(ctx, config)
    assert test.images is not None
    sl = slice(start, start + config.chunk_size)
    x, y = torch.from_numpy(test.images[sl]), torch.from_numpy(test.labels[sl])
    data = _clustered(config, features, x) if features is not None else test.data[sl]
    units, certificate = _units(ctx, config), _certificate(ctx, config)
    box = _box(ctx, config)
    return {prefix: _minimal_sizes(config, box, km, mapping, x, y, data, features, units,
                                   certificate)
            for prefix, (km, mapping) in models.items()}  # fmt: skip


def _minimal_sizes(
    config: EvaluateKMeansConfig,
    box: Bounds,
    km: Clusterer,
    mapping: np.ndarray,
    x: torch.Tensor,
    y: torch.Tensor,
    data: np.ndarray,
    features: Model | None = None,
    units: Units = None,
    certificate: str = "Voronoi radius",
) -> dict[str, list[float]]:
    """``_minimal_unit``'s sizes for one k-means on inputs ``x`` (``data``: what k-means
    clusters of them): the closed form (not through ``features``) and, with ``exact``, the
    exact size of each correct input (0 for the others, which need no perturbation); in the
    weighted norm of the per-feature ``units``, if any, inside the inputs' ``box``. Through
    ``features`` also the ``certificate``'s radius of each correct input (``radius``)."""
    out = {}
    if features is None:
        closed = KMeansMinimalAttack(km, mapping, norm=config.norm, target="other-class",
                                     bounds=box, batch_size=config.batch_size,
                                     scale=units)  # fmt: skip
        distances = closed(x, y).distances
        assert distances is not None
        out["minimal"] = distances.double().cpu().tolist()
    correct = mapping[km.predict(data)] == y.cpu().numpy()
    if config.exact:
        sizes = np.zeros(len(y))
        if correct.any():
            sizes[correct] = _exact_sizes(config, box, km, mapping, x[correct], y[correct],
                                          features, units)  # fmt: skip
        out["exact"] = sizes.tolist()
    if features is not None:
        radii = np.zeros(len(y))
        if correct.any():
            radii[correct] = _radius_through(config, km, mapping, x[correct], features,
                                             certificate, units)  # fmt: skip
        out["radius"] = radii.tolist()
    return out


RADIUS_CAP = 4  # through a network, certified radii are searched up to 4 times the largest eps


def _radius_through(
    config: EvaluateKMeansConfig,
    km: Clusterer,
    mapping: np.ndarray,
    x: torch.Tensor,
    features: Model,
    certificate: str,
    units: Units = None,
) -> np.ndarray:
    """The certified radius through ``features`` of each input of x by the ``certificate``'s
    bounds ("linear" or "interval"; ``kmeans_certified_radius_through``, a bisection to 1e-3
    of its cap), searched up to ``RADIUS_CAP`` times the largest eps (an input certified there
    gets the cap), in the per-feature ``units``, if any."""
    cap = RADIUS_CAP * max(config.eps)
    return kmeans_certified_radius_through(km, x.to(config.device), cap, mapping,
                                           features=features, method=certificate,
                                           scale=units, norm=config.norm)  # fmt: skip


def _median_radius(
    config: EvaluateKMeansConfig, prefix: str, radius: np.ndarray, correct: np.ndarray
) -> dict[str, Any]:
    """The comparison ``<prefix>kmeans.median_certified_radius``: the median certified radius
    of the correctly classified inputs (0 without any), in the budgets' units."""
    unit = distance_unit(config.norm, config.eps_units)
    median = float(np.median(radius[correct])) if correct.any() else 0.0
    return {"id": f"{prefix}kmeans.median_certified_radius", "paper": None, "unit": unit,
            "ours": median}  # fmt: skip


def _exact_sizes(
    config: EvaluateKMeansConfig,
    box: Bounds,
    km: Clusterer,
    mapping: np.ndarray,
    x: torch.Tensor,
    y: torch.Tensor,
    features: Model | None,
    units: Units = None,
) -> np.ndarray:
    """The exact minimal perturbation in the run's norm (weighted by the per-feature ``units``,
    if any) of inputs k-means classifies correctly, up to the largest eps (inf beyond it): a
    program per candidate cell (eq. LP or D), or through ``features`` mixed-integer programs
    (L-inf; nan where one hit the time limit)."""
    largest = max(config.eps)
    if features is None:
        exact = KMeansMinimalAttack(km, mapping, norm=config.norm, target="other-class",
                                    bounds=box, batch_size=config.batch_size,
                                    exact=True, max_size=largest, scale=units)  # fmt: skip
        found = exact(x, y).distances
        assert found is not None
        return found.double().cpu().numpy()
    verified = verify_kmeans_linf(km, x.to(config.device), per_feature_budget(largest, units), mapping,
                                  features=features, minimal=True,
                                  time_limit=config.time_limit)  # fmt: skip
    # (a per-feature budget measures in its own units: 1 is the budget eps * std)
    return verified.distances if units is None else largest * verified.distances


def _kmeans_unit(ctx: RunContext, config: EvaluateKMeansConfig) -> dict[str, Any]:
    """k-means on the flattened training inputs and its majority-vote mapping: one unit, so a
    resumed run reads it instead of fitting again. With ``preprocess``, its centres and the
    affine map f(x) = A x + b in front of them (float64; a diagonal A, a scaler's, stored as
    its diagonal)."""
    train, _, _ = _loaded(ctx, config)
    return _record(*_fit_kmeans(config, train, _features(ctx, config)))


def _record(km: Clusterer, mapping: np.ndarray) -> dict[str, Any]:
    """A k-means and its mapping as a unit stores them: centres (float32 as fitted) or, behind
    a preprocessing, its cells (float64, a diagonal A stored as its diagonal)."""
    if isinstance(km, KMeans):
        return {"centers": km.cluster_centers_.tolist(), "mapping": mapping.tolist()}
    assert km.linear is not None and km.offset is not None
    linear = km.linear.numpy()
    diagonal = linear.shape[0] == linear.shape[1] and not np.any(linear - np.diag(np.diag(linear)))
    return {"centers": km.centers.tolist(), "mapping": mapping.tolist(),
            "offset": km.offset.tolist(),
            **({"scale": np.diag(linear).tolist()} if diagonal else {"linear": linear.tolist()})}  # fmt: skip


def _preprocessing(config: EvaluateKMeansConfig) -> Any:
    """``preprocess.factory(**kwargs)``, unfitted, with every ``random_state`` set to the
    run's seed (so that every worker fits the same one)."""
    assert config.preprocess is not None
    spec = config.preprocess
    return build_seeded("preprocess", spec.factory, spec.kwargs, config.seed,
                        ("fit", "transform"), "is not a transformer (fit and transform)")  # fmt: skip


def _check_preprocessing(
    config: EvaluateKMeansConfig, train: Dataset, features: Model | None = None
) -> None:
    """Fit the preprocessing on the training inputs (their features, with a ``features``
    network) and read its affine map, so that a step that is not affine is one line before
    any network is trained."""
    assert config.preprocess is not None
    data = train.data if features is None else _clustered(config, features, train.images)
    steps = _preprocessing(config).fit(data)
    try:
        affine_map(steps, data.shape[1])
    except ValueError as exc:
        raise ConfigError(f"preprocess.factory {config.preprocess.factory!r}: {exc}") from exc


def _fit_kmeans(
    config: EvaluateKMeansConfig, train: Dataset, features: Model | None = None
) -> tuple[Clusterer, np.ndarray]:
    """k-means on the flattened training inputs (the run's seed), or on their preprocessing
    (then its ``KMeansCells``), and its majority-vote mapping: the k-means unit's, and the one
    the plan times on. With ``features`` on the network's outputs instead of the inputs."""
    km = KMeans(config.n_clusters, random_state=config.seed, device=config.device)
    data = train.data if features is None else _clustered(config, features, train.images)
    if config.preprocess is None:
        km.fit(data)
        return km, majority_vote_mapping(km.labels_, train.labels, config.n_clusters)
    pipe = Pipeline([("preprocess", _preprocessing(config)), ("kmeans", km)]).fit(data)
    try:
        cells = kmeans_cells(pipe)
    except ValueError as exc:
        raise ConfigError(f"preprocess.factory {config.preprocess.factory!r}: {exc}") from exc
    return cells, majority_vote_mapping(km.labels_, train.labels, config.n_clusters)


def _radius(
    box: Bounds,
    km: Clusterer,
    data: np.ndarray,
    mapping: np.ndarray,
    units: Units = None,
    norm: str = "linf",
) -> np.ndarray:
    """The certified class-aware radius in ``norm`` of each row of ``data`` (flattened inputs)
    inside the inputs' ``box`` (none when every side is open), weighted by the per-feature
    ``units``, if any."""
    lo, hi = flat_bounds(box, tuple(data.shape[1:]))
    bounded = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    return kmeans_certified_radius(km, data, norm, mapping=mapping,
                                   bounds=(lo, hi) if bounded else None, scale=units)  # fmt: skip


def _fitted(config: EvaluateKMeansConfig, unit: dict[str, Any]) -> tuple[Clusterer, np.ndarray]:
    """The k-means and mapping a unit stored (centres as fitted, float32), or the cells of
    one behind the preprocessing."""
    mapping = np.asarray(unit["mapping"])
    if "offset" in unit:
        linear = np.diag(unit["scale"]) if "scale" in unit else np.asarray(unit["linear"])
        cells = KMeansCells(torch.tensor(unit["centers"], dtype=torch.float64),
                            torch.from_numpy(np.asarray(linear, dtype=np.float64)),
                            torch.tensor(unit["offset"], dtype=torch.float64))  # fmt: skip
        return cells, mapping
    centres = np.asarray(unit["centers"], dtype=np.float32)
    return KMeans.from_centers(centres, device=config.device), mapping


TRAINING = "adversarial-training"  # the unit (and checkpoint) of Algorithm 1


def _training_unit(ctx: RunContext, config: EvaluateKMeansConfig) -> dict[str, Any]:
    """Algorithm 1 on the training inputs, checkpointed after every step (centres and the
    majority-vote mapping of that step's training set) and resumed after the last one: the
    final centres (behind ``preprocess``: the cells, as the k-means unit stores them), mapping
    and per-step history."""
    train, _, networks = _loaded(ctx, config)
    spec, surrogate = config.adversarial_training, networks["transfer"]
    assert spec is not None and train.images is not None
    history, state = ctx.load_steps(TRAINING)
    resume = None if state is None else (history[-1]["step"], state["centers"])
    units = _units(ctx, config)
    attack = SurrogateAttack(surrogate, train.labels, "pixel", config.max_iter,
                             batch_size=config.batch_size, attack_cls=_transfer_class(config.norm),
                             units=units)  # fmt: skip
    est = KMeansAdversarialTraining(config.n_clusters, eta=spec.eta, beta=spec.beta,
                                    attack=attack, eps_max=spec.eps_max,
                                    continuous=spec.continuous, random_state=config.seed,
                                    device=config.device,
                                    preprocess=None if config.preprocess is None
                                    else _preprocessing(config))  # fmt: skip
    for step in est.iter_steps(train.images, resume=resume):
        mapping = majority_vote_mapping(step.kmeans.labels_, train.labels, config.n_clusters)
        state = {"centers": step.kmeans.cluster_centers_, "mapping": mapping}
        history.append({"step": step.step, "eps": step.eps, "inertia": float(step.kmeans.inertia_)})
        ctx.save_checkpoint(TRAINING, state, {"history": history})
        ctx.log.info("%s: step %d of %d (eps %.4g) done", TRAINING, step.step, spec.beta, step.eps)
    assert state is not None
    final: Clusterer = KMeans.from_centers(np.asarray(state["centers"]))
    if config.preprocess is not None:  # (iter_steps fitted preprocess_, even with no step left)
        final = kmeans_cells(Pipeline([("preprocess", est.preprocess_), ("kmeans", final)]))
    return {**_record(final, np.asarray(state["mapping"])), "history": history}


def summarise(
    config: EvaluateKMeansConfig,
    correct: np.ndarray,
    radius: np.ndarray | dict[float, np.ndarray],
    outcomes: dict[float, dict[str, np.ndarray]],
    prefix: str = "",
) -> dict[str, Any]:
    """Comparisons (every rate with its n), the curves of the figure and the soundness count.

    Parameters
    ----------
    config : EvaluateKMeansConfig
        The run's config.
    correct : ndarray of bool, shape (n,)
        Clean inputs k-means classifies correctly.
    radius : ndarray of shape (n,), or dict
        Their class-aware certified radius in the run's norm; or, through a ``features``
        network (no radius), eps -> per input whether it is certified at eps.
    outcomes : dict
        eps -> attack (transfer, whitebox, minimal) -> per input, still correctly classified.
    prefix : str, default=''
        Put before every id (``trained.`` for Algorithm 1's k-means).

    Returns
    -------
    dict
        ``comparisons``, ``curve`` (for ``plot_attack_curves``), ``certified_but_attacked``
        and, with ``exact`` among the attacks, ``exact_but_attacked``.
    """
    comparisons = [rate_comparison(f"{prefix}kmeans.clean_accuracy", correct)]
    if not isinstance(radius, dict):
        comparisons.append(_median_radius(config, prefix, radius, correct))
    attacks = sorted(outcomes[config.eps[0]])
    curve: dict[str, Any] = {"eps": list(config.eps), "attacks": {a: {"eps": list(config.eps),
                             "accuracy": []} for a in attacks}, "worst_case": [],
                             "certified": {"eps": list(config.eps), "accuracy": []}}  # fmt: skip
    contradicted, beaten, norm = {}, {}, config.norm
    for eps in config.eps:
        key = eps_key(eps)
        for attack in attacks:
            rate = rate_comparison(f"{prefix}{attack}.{norm}.{key}.accuracy", outcomes[eps][attack])
            comparisons.append(rate)
            curve["attacks"][attack]["accuracy"].append(rate["ours"])
        worst = np.logical_and.reduce([outcomes[eps][a] for a in attacks]) & correct
        certified = correct & (radius[eps] if isinstance(radius, dict) else radius > eps)
        for name, hits, line in (("worst_case", worst, curve["worst_case"]),
                                 ("certified", certified, curve["certified"]["accuracy"])):  # fmt: skip
            rate = rate_comparison(f"{prefix}{name}.{norm}.{key}.accuracy", hits)
            comparisons.append(rate)
            line.append(rate["ours"])
        contradicted[key] = int((certified & ~worst).sum())
        if "exact" in outcomes[eps]:
            beaten[key] = int((outcomes[eps]["exact"] & ~worst).sum())
    out = {"comparisons": comparisons, "curve": curve, "certified_but_attacked": contradicted}
    return out | ({"exact_but_attacked": beaten} if beaten else {})


def _report_tables(results: dict[str, Any], config: dict[str, Any]) -> list[Table]:
    """k-means accuracy per budget under each attack, with the certified lower bound (and the
    same for Algorithm 1's k-means)."""
    by_id = {c["id"]: c["ours"] for c in results["comparisons"]}
    tables, norm = [], results.get("norm", "linf")
    for prefix, curve in (("", results["curve"]), ("trained.", results.get("trained_curve"))):
        if curve is None:
            continue
        attacks = sorted(curve["attacks"])
        rows = []
        for eps in curve["eps"]:
            key = eps_key(eps)
            rows.append([f"{eps:g}", *(f"{by_id[f'{prefix}{a}.{norm}.{key}.accuracy']:.1f}" for a in attacks),
                         f"{by_id[f'{prefix}worst_case.{norm}.{key}.accuracy']:.1f}",
                         f"{by_id[f'{prefix}certified.{norm}.{key}.accuracy']:.1f}"])  # fmt: skip
        name = "k-means" if not prefix else "Algorithm 1's k-means"
        if config.get("features"):
            name += f" on {config['features']['factory']}'s features"
        if config.get("preprocess"):
            name += f" behind {config['preprocess']['factory']}"
        title = (f"{name} (k = {config['n_clusters']}) accuracy (%) on {results['n_test']} test "
                 f"inputs of {results['data']}, clean {by_id[f'{prefix}kmeans.clean_accuracy']:.1f} %, "
                 f"under {NORM_WORDS[norm]} attacks{EPS_UNITS[config.get('eps_units', 'input')]}"
                 f"{'; ' + PER_FEATURE_WORDS[results['bounds']] if 'bounds' in results else ''}, "
                 "and its certified lower bound")  # fmt: skip
        if "certificate" in results:  # through a features network: which bounds, and the
            title += f" ({results['certificate']} bounds through the network"  # exact's gaps
            unknown = results.get("exact_unknown")
            title += f"; {unknown} inputs left undecided by the exact programs)" if unknown else ")"
        tables.append(Table(title, ("eps", *attacks, "worst case", "certified"), rows))
        if "smoothing" in results:
            comparisons = {c["id"]: c for c in results["comparisons"]}
            tables.append(smoothing_table(results["smoothing"], comparisons, results["n_test"],
                                          prefix, name))  # fmt: skip
    return tables


# ---- advlab plan ----


def _random_kmeans(
    k: int, shape: tuple[int, ...], n_classes: int, bounds: Bounds, features: Model | None = None
) -> Model:
    """A k-means classifier with random centres and mapping (as fast as the fitted one), on
    the inputs or on the outputs of ``features``."""
    rng = np.random.default_rng(0)
    width = int(np.prod(shape))
    if features is not None:
        with torch.no_grad():
            width = features(torch.zeros(1, *shape, device=model_device(features))).numel()
    centres = rng.random((k, width)).astype(np.float32)
    return kmeans_model(centres, rng.integers(0, n_classes, k), bounds, features=features)


@config_errors()  # a mistake in the user's files or factory: one line, as in a run
def _plan(config: EvaluateKMeansConfig) -> dict[str, Any]:
    """Units and attack work of a run (``advlab plan``): the k-means fit, Algorithm 1, a unit
    per budget and chunk and one per chunk for the minimal perturbation (each serving every
    k-means); image-steps of the surrogates' training, of their transfer I-FGSM (crafted once
    for all k-means), of Algorithm 1's I-FGSM (beta steps on eta N inputs) and of the white-box
    PGD (per k-means), each measured on its network (initial weights; random centres for
    k-means)."""
    train, test = load_inputs(config.train, "train"), load_inputs(config.test, "test")
    assert test.images is not None
    shape, n_classes = tuple(test.images.shape[1:]), train.n_classes
    batch = min(config.batch_size, config.chunk_size, len(test))
    models = 1 + (config.adversarial_training is not None)
    chunks = -(-len(test) // config.chunk_size)
    budgets = len(config.eps)
    units = {"k-means fit": 1, "attacks (budgets x chunks)": budgets * chunks,
             "minimal perturbation (chunks)": chunks}  # fmt: skip
    box = _resolved_box(config, train, test)
    common = {"shape": list(shape), "batch": batch, "n_classes": n_classes,
              "bounds": list(display_range(box))}  # fmt: skip
    attacks = []
    for which, label in NETWORKS.items():
        spec: ModelSpec | None = getattr(config, which)
        if spec is None:
            continue
        untrained_model(spec, shape, n_classes)  # the factory imports and builds, or one line
        net = {**common, "model": spec.factory,
               "module": partial(untrained_model, spec, shape, n_classes)}  # fmt: skip
        if spec.train_epochs is not None:
            attacks.append(training_entry(spec, which, train, net))
        name = "I-FGSM" if config.norm == "linf" else "PGD-L2"
        attacks.append({**net, "what": f"{label} {name} ({budgets} budgets)",
                        "images": budgets * len(test), "steps": config.max_iter,
                        "units": budgets * chunks})  # fmt: skip
        training = config.adversarial_training
        if which == "surrogate" and training is not None:
            units["Algorithm 1 (checkpointed per step)"] = 1
            attacks.append({**net, "what": f"Algorithm 1 ({training.beta} steps)",
                            "images": round(training.beta * training.eta * len(train)),
                            "steps": config.max_iter, "units": 1})  # fmt: skip
    features, certificate = _feature_network(config, train, test)
    kmeans = partial(_random_kmeans, config.n_clusters, shape, n_classes, box, features)
    attacks.append({**common, "model": f"k-means (k = {config.n_clusters})", "module": kmeans,
                    "what": f"white-box PGD ({models} k-means x {budgets} budgets)",
                    "images": models * budgets * len(test), "steps": config.whitebox_iter,
                    "units": budgets * chunks})  # fmt: skip
    attacks += _timed_kmeans(config, train, test, models, chunks, features, certificate)
    if config.smoothing is not None:
        units["randomized smoothing (chunks)"] = chunks
        attacks.append(_timed_smoothing(config, test, kmeans(), models, chunks))
    notes = [
        "k-means is fitted here once: the minimal perturbation and certified radii are timed on",
        "it; Algorithm 1's fits are counted at that cold fit's rate (its warm starts are faster).",
    ]
    return {"units": units, "attacks": attacks, "notes": notes}


def _timed_smoothing(
    config: EvaluateKMeansConfig, test: Dataset, classifier: Model, models: int, chunks: int
) -> dict[str, Any]:
    """The plan entry of randomized smoothing: n0 + n passes of each k-means' classifier per
    test input, timed on a random k-means (as fast as the fitted one) over ``spread_sample``
    inputs in groups of 4."""
    assert test.images is not None and config.smoothing is not None
    smoothing = smoothing_of(
        config.smoothing, classifier, config.seed, config.batch_size, None
    )  # (the noise's units do not change the cost)
    x = torch.from_numpy(test.images[spread_sample(len(test))]).to(config.device)
    rate, timed = inputs_per_second(lambda group: smoothing.certify(x[group]),
                                    np.array_split(np.arange(len(x)), -(-len(x) // 4)))  # fmt: skip
    spec = config.smoothing
    return {"model": "k-means", "what": f"randomized smoothing, sigma {spec.sigma:g} ({models} "
            f"k-means x {spec.n0} + {spec.n} noisy copies per input; timed on {timed} inputs)",
            "images": models * len(test), "steps": 1, "rate": rate, "units": chunks}  # fmt: skip


def _timed_kmeans(
    config: EvaluateKMeansConfig,
    train: Dataset,
    test: Dataset,
    models: int,
    chunks: int,
    features: Model | None = None,
    certificate: str = "Voronoi radius",
) -> list[dict[str, Any]]:
    """Plan entries for the work that is not a network's passes, timed on the run's own
    k-means (fitted here with the run's seed): the fit (and Algorithm 1's beta fits at its
    rate) and, on ``spread_sample`` test inputs in groups of 32 for about ``SAMPLE_SECONDS``,
    the minimal perturbation (closed form and, with ``exact``, the linear programs) and the
    certified radius, per k-means."""
    start = time.perf_counter()
    km, mapping = _fit_kmeans(config, train, features)
    rate = len(train) / (time.perf_counter() - start)
    entries = [{"model": "k-means", "what": f"k-means fit (k = {config.n_clusters})",
                "images": len(train), "steps": 1, "rate": rate, "units": 1}]  # fmt: skip
    if config.adversarial_training is not None:
        beta = config.adversarial_training.beta
        entries.append({"model": "k-means", "what": f"Algorithm 1's k-means fits ({beta})",
                        "images": beta * len(train), "steps": 1, "rate": rate, "units": 1})  # fmt: skip
    assert test.images is not None
    pick = spread_sample(len(test))
    x, y = torch.from_numpy(test.images[pick]), torch.from_numpy(test.labels[pick])
    units = feature_units(config.eps_units, train, "training inputs")
    box = _resolved_box(config, train, test)

    def check(group: np.ndarray) -> None:
        if features is None:
            data = test.data[pick[group]]
            _minimal_sizes(config, box, km, mapping, x[group], y[group], data, units=units)
            _radius(box, km, data, mapping, units, config.norm)
            return
        data = _clustered(config, features, x[group])
        _minimal_sizes(config, box, km, mapping, x[group], y[group], data, features, units,
                       certificate)  # fmt: skip
        _certified_through(config, km, mapping, x[group], features, certificate, units)

    rate, timed = inputs_per_second(check, np.array_split(np.arange(len(x)), -(-len(x) // 32)))
    what = ("minimal perturbation and certified radius" if features is None
            else "exact minimal perturbation, certificates and radii through the features")  # fmt: skip
    entries.append({"model": "k-means", "what": f"{what} "
                    f"({models} k-means; timed on {timed} inputs)", "images": models * len(test),
                    "steps": 1, "rate": rate, "units": chunks})  # fmt: skip
    return entries


@register(
    "evaluate-kmeans",
    EvaluateKMeansConfig,
    description="k-means under evasion attack on your own data: transfer from your surrogate, white-box, certified",
    tables=_report_tables,
    plan=_plan,
)
def run_evaluate_kmeans(config: EvaluateKMeansConfig, ctx: RunContext) -> dict[str, Any]:
    """Check the data and the surrogate, fit and map k-means, attack every (eps, chunk) and
    summarise.

    Parameters
    ----------
    config : EvaluateKMeansConfig
        The validated config.
    ctx : RunContext
        The run (its executor runs the units).

    Returns
    -------
    dict
        ``comparisons``, ``curve``, ``certified_but_attacked``, the data's name and size, the
        surrogate's clean accuracy and the checksums of data and weights.
    """
    with config_errors():
        train, test, networks = _loaded(ctx, config)
    ctx.record_dataset(train)
    ctx.record_dataset(test)
    stamp = {"train_sha256": train.sha256, "test_sha256": test.sha256}
    for which, attack in NETWORKS.items():
        if attack in networks:
            label = "weights_sha256" if which == "surrogate" else "heldout_weights_sha256"
            stamp[label] = fingerprint(test, networks[attack])["weights_sha256"]
    features = _features(ctx, config)
    if features is not None:
        stamp["features_weights_sha256"] = fingerprint(test, features)["weights_sha256"]
    refuse_changed_files(ctx, stamp)
    models: Models = {"": _fitted(config, ctx.unit("kmeans", partial(_kmeans_unit, ctx, config)))}
    history = None
    if config.adversarial_training is not None:
        trained = ctx.unit(TRAINING, partial(_training_unit, ctx, config))
        models["trained."] = _fitted(config, trained)
        history = trained["history"]
    summaries = _measure(ctx, config, test, models)
    summary = summaries[""]
    for position, (which, attack) in enumerate(NETWORKS.items(), start=1):
        if attack in networks:
            with torch.no_grad():
                x = torch.from_numpy(test.images).to(config.device)
                pred = torch.cat([networks[attack](b).argmax(1).cpu()
                                  for b in x.split(config.batch_size)])  # fmt: skip
            hits = pred.numpy() == test.labels
            summary["comparisons"].insert(
                position, rate_comparison(f"{which}.clean_accuracy", hits)
            )
    certificate = _certificate(ctx, config)
    for prefix, part in summaries.items():
        name = "k-means" if not prefix else "Algorithm 1's k-means"
        if config.features is not None:
            name += f" on {config.features.factory}'s features"
        if config.preprocess is not None:
            name += f" behind {config.preprocess.factory}"
        plot_attack_curves(part["curve"], config.norm,
                           ctx.path(f"kmeans-{prefix}{config.norm}".replace(".", "-")),
                           f"{name} (k = {config.n_clusters}) on {test.name} ({len(test)} inputs)",
                           f"certified ({certificate}{' bounds' if features else ''}), lower bound",
                           AXIS_UNITS[config.eps_units])  # fmt: skip
    out = {"data": test.name, "n_test": len(test), **stamp, **bounds_record(config.bounds),
           **summary}  # fmt: skip
    if config.eps_units != "input":
        out["eps_units"] = config.eps_units
    if config.norm != "linf":  # (nothing for L-inf, so earlier results read as before)
        out["norm"] = config.norm
    if config.smoothing is not None:
        out["smoothing"] = config.smoothing.model_dump()
    if config.preprocess is not None:
        out["preprocess"] = config.preprocess.factory
    if config.features is not None:
        out["features"], out["certificate"] = config.features.factory, certificate
    if "trained." in summaries:
        trained_part = summaries["trained."]
        out["comparisons"] = summary["comparisons"] + trained_part["comparisons"]
        out["trained_curve"] = trained_part["curve"]
        out["trained_certified_but_attacked"] = trained_part["certified_but_attacked"]
        if "exact_but_attacked" in trained_part:
            out["trained_exact_but_attacked"] = trained_part["exact_but_attacked"]
        out["training_history"] = history
    return out


def _measure(
    ctx: RunContext, config: EvaluateKMeansConfig, test: Dataset, models: Models
) -> dict[str, dict[str, Any]]:
    """Every attack on every k-means (a unit per budget and chunk, and one per chunk for the
    minimal perturbation), summarised per k-means with ids after its prefix."""
    starts = range(0, len(test), config.chunk_size)
    jobs = {f"{eps_key(eps)}-{s:07d}": partial(_unit, ctx, config, models, eps, s)
            for eps in config.eps for s in starts}  # fmt: skip
    jobs |= {f"minimal-{s:07d}": partial(_minimal_unit, ctx, config, models, s) for s in starts}
    if config.smoothing is not None:
        jobs |= {f"smoothing-{s:07d}": partial(_smoothing_unit, ctx, config, models, s)
                 for s in starts}  # fmt: skip
    done = ctx.units(jobs, desc="attacks")
    summaries = {}
    features, units = _features(ctx, config), _units(ctx, config)
    data = test.data if features is None else _clustered(config, features, test.images)
    for prefix, (km, mapping) in models.items():
        correct = mapping[km.predict(data)] == test.labels
        radius = (_radius(_box(ctx, config), km, data, mapping, units, config.norm)
                  if features is None
                  else _certified_through(config, km, mapping, torch.from_numpy(test.images),
                                          features, _certificate(ctx, config), units))  # fmt: skip
        ctx.log.info("%sk-means clean accuracy %.2f %% on %d test inputs", prefix,
                     100 * correct.mean(), len(test))  # fmt: skip
        first = done[f"{eps_key(config.eps[0])}-{starts[0]:07d}"][prefix]
        outcomes = {eps: {a: np.concatenate([done[f"{eps_key(eps)}-{s:07d}"][prefix][a]
                                             for s in starts]) for a in first}
                    for eps in config.eps}  # fmt: skip
        unknown = 0
        minimal = [done[f"minimal-{s:07d}"][prefix] for s in starts]
        for name in (n for n in minimal[0] if n != "radius"):
            size = np.concatenate([part[name] for part in minimal])
            unknown += int(np.isnan(size).sum())
            for eps in config.eps:
                outcomes[eps][name] = correct & (size > eps)  # (nan: not proved robust)
        summaries[prefix] = summarise(config, correct, radius, outcomes, prefix)
        if "radius" in minimal[0]:  # through a network: the bisection's radii
            radii = np.concatenate([part["radius"] for part in minimal])
            summaries[prefix]["comparisons"].insert(
                1, _median_radius(config, prefix, radii, correct)
            )
        if features is not None and config.exact:
            summaries[prefix]["exact_unknown"] = unknown
        if config.smoothing is not None:
            parts = [done[f"smoothing-{s:07d}"][prefix] for s in starts]
            labels = np.concatenate([part["label"] for part in parts])
            radii = np.concatenate([part["radius"] for part in parts])
            unit = distance_unit("l2", config.eps_units)
            summaries[prefix]["comparisons"] += smoothing_comparisons(
                config.smoothing, labels, radii, test.labels, unit, prefix
            )
    return summaries


def _smoothing_unit(
    ctx: RunContext, config: EvaluateKMeansConfig, models: Models, start: int
) -> dict[str, Any]:
    """Per k-means and input of one chunk, its smoothed classifier's label (-1: abstains) and
    certified L2 radius, the noise seeded by the input's index in the test set."""
    _, test, _ = _loaded(ctx, config)
    assert test.images is not None and config.smoothing is not None
    x = torch.from_numpy(test.images[start : start + config.chunk_size]).to(config.device)
    indices = np.arange(start, start + len(x))
    out = {}
    for prefix, (km, mapping) in models.items():
        classifier = kmeans_model(km, mapping, _box(ctx, config), features=_features(ctx, config))
        smoothing = smoothing_of(config.smoothing, classifier, config.seed, config.batch_size,
                                 _units(ctx, config))  # fmt: skip
        result = smoothing.certify(x, indices=indices)
        out[prefix] = {"label": result.labels.tolist(), "radius": result.radii.tolist()}
    return out


def _certified_through(
    config: EvaluateKMeansConfig,
    km: Clusterer,
    mapping: np.ndarray,
    x: torch.Tensor,
    features: Model,
    certificate: str,
    units: Units = None,
) -> dict[float, np.ndarray]:
    """Per eps, whether each input of x is certified through ``features`` (its own cluster's
    class kept over its ball: the box eps * units in L-inf, the ellipsoid of the units in L2),
    by the ``certificate`` ("linear" or "interval") bounds."""
    x = x.to(config.device)
    certify = kmeans_is_certified_linear if certificate == "linear" else kmeans_is_certified
    return {eps: certify(km, x, eps, mapping, features=features, norm=config.norm,
                         units=units).cpu().numpy()
            for eps in config.eps}  # fmt: skip
