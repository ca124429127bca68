"""``evaluate-clustering``: how much poisoning moves *your own* clustering (any scikit-learn
estimator or pipeline with ``fit_predict``) on *your own* data, as a run and a report.

::

    experiment: evaluate-clustering
    data: {path: customers.npz}                   # x (N, D); y (N,) optional
    clusterer:
      factory: mypackage.pipes:make_pipeline     # or sklearn.cluster:KMeans, advlab.cluster:KMeans
      kwargs: {n_clusters: 5}
    attacks:
      - {name: uniform_outliers, budgets: [0.01, 0.05]}   # injected points, share of N
      - {name: mimicry, budgets: [0.01, 0.05]}
      - {name: gaussian_noise, budgets: [0.1]}            # sigma, in the units of x
      - {name: cina, budgets: [0.1], params: {delta: 0.2, generations: 30}}  # s
      - {name: chhabra, budgets: [0.5]}                   # L-inf move of one point
      - {name: biggio, budgets: [0.02]}                   # bridge points, share of N

Per seed s (``n_seeds`` of them), the clusterer (every ``random_state`` in its parameters set to
s; one without runs as it is) clusters the clean data, then each attack at each budget poisons
it (seed s too) and the same clusterer clusters the poisoned data. The attacks that read labels
(mimicry's camouflage, the bridges' clusters) get the data's labels, or, where the file has
none, the clean clustering of the same seed. On the N original rows (perturbed ones included, injected
ones left out) the run measures:

- ``ari_clean``, ``ami_clean``: agreement with the clean clustering of the same seed (1: the
  attack changed nothing);
- ``changed``: the share (%) of original rows whose cluster changed, ids matched first
  (``advlab.metrics.changed_cluster``);
- ``ari_labels``: agreement with the data's labels, when it has them (beside ``clean.ari_labels``).

Controls say what an effect must beat: ``control.seed_to_seed`` (the clean clusterings of
seeds s and s + 1 compared: the clusterer's own randomness); at every injection budget,
``control.resample`` (as many points drawn with replacement from the data itself: what adding
that many *harmless* points does); at every ``chhabra`` budget, ``control.random_move`` (the
point Chhabra's attack moves, moved to a random corner of the same L-inf ball, no search: what
moving that point that far does anyway). Each value is the mean over seeds with its 95 % t interval.
Budgets: ``uniform_outliers``, ``subtle_outliers``, ``mimicry``, ``bridge_points`` inject
``round(b * N)`` points (at least 1, ``advlab.attacks.poisoning.inject``), and so do the two
attacks of the literature that inject: ``biggio`` (Biggio et al. 2013's bridge between the two
closest clusters, or its greedy ``strategy: best``) and ``crussell`` (Crussell & Kegelmeyer
2015's line of core points merging two DBSCAN clusters; a DBSCAN-like victim only);
``gaussian_noise``'s budget is sigma; ``cina``'s is s, the share of the victim cluster it
perturbs (Cinà et al. 2022, each entry by at most ``delta``); ``chhabra``'s is the L-inf bound
of the one point it moves (Chhabra et al. 2020: the rows that change cluster are *other* rows).
The four that query the victim (``cina``, ``chhabra``, ``biggio``, ``crussell``) run against the
user's estimator itself, with the seed's ``random_state``.
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
from functools import partial
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from advlab.attacks.clustering import BiggioBridge, Chhabra, Cina, CrussellMerge
from advlab.attacks.poisoning import INJECTION_ATTACKS, gaussian_noise, inject
from advlab.data.datasets import IDX_DATASETS
from advlab.experiments.aggregate import aggregate, tidy_row
from advlab.experiments.builtin._user import (
    DataSource,
    Strict,
    build_seeded,
    config_errors,
    file_stamp,
    load_source,
    refuse_changed_files,
)
from advlab.experiments.config import ConfigError, ExperimentConfig
from advlab.experiments.registry import register
from advlab.experiments.runner import RunContext
from advlab.metrics import changed_cluster
from advlab.report.plots import plot_sweep
from advlab.report.tables import Table
from advlab.utils.cache import arrays_sha256

LEVEL = 0.95  # t intervals over the seeds
# attacks that query the victim: name -> (class, the constructor argument the budget sets)
QUERY_ATTACKS = {"cina": (Cina, "s"), "chhabra": (Chhabra, "budget"),
                 "biggio": (BiggioBridge, "n_points"), "crussell": (CrussellMerge, "n_points")}  # fmt: skip
INJECTING = (*INJECTION_ATTACKS, "biggio", "crussell")  # budget: injected share of N
ATTACKS = (*INJECTION_ATTACKS, "gaussian_noise", *QUERY_ATTACKS)
# budget kind -> (axis label, figure name)
BUDGET_OF = {**{a: ("injected share of N", "injected") for a in INJECTING},
             "gaussian_noise": ("sigma", "gaussian_noise"),
             "cina": ("s (share of the victim cluster)", "cina"),
             "chhabra": ("L-inf bound of the one moved point", "chhabra")}  # fmt: skip


class ClusteringDataSpec(DataSource):
    """The clustered rows: ``name`` (a built-in data set, all of it) or ``path``.

    Attributes
    ----------
    name : str or None
        iris, breast-cancer, digits, blobs, mnist or fashion-mnist (training split).
    path : str or None
        An ``.npz`` holding ``x_key`` (N, D) and optionally ``y_key`` (N,) labels, or a
        ``.csv`` file with a header line, its column ``y_key`` (if any) the labels and the
        others the features. Labels that are not integers (class names) are taken as codes
        in sorted order.
    n : int or None
        The first n rows (None: all; at least 4 rows are needed).
    standardize : bool
        Scale each feature to mean 0 and standard deviation 1 first.
    x_key, y_key : str
        The arrays' names in the ``.npz`` file (``y_key``: the labels' column of a ``.csv``).
    """

    standardize: bool = False


class ClustererSpec(Strict):
    """The victim: ``factory(**kwargs)``, an estimator or pipeline with ``fit_predict``.

    Attributes
    ----------
    factory : str
        ``package.module:callable`` (a class such as ``sklearn.cluster:KMeans`` or a function
        returning a ``Pipeline``); it must be importable on every worker.
    kwargs : dict
        Its keyword arguments.
    """

    factory: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class PoisonEntry(Strict):
    """One attack at its ``budgets`` (see the module docstring for each budget's meaning),
    with the keyword arguments ``params`` of its function or class.

    Attributes
    ----------
    name : str
        uniform_outliers, subtle_outliers, mimicry, bridge_points, gaussian_noise, cina,
        chhabra, biggio or crussell.
    budgets : tuple of float
        One or more budgets, > 0 (an injection attack's at most half of N, Cina's at most 1).
    params : dict
        Further arguments (e.g. uniform_outliers' margin, Cina's delta and generations,
        Biggio's strategy).
    """

    name: str
    budgets: tuple[float, ...]
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> PoisonEntry:
        if self.name not in ATTACKS:
            raise ValueError(f"unknown attack {self.name!r}; choose one of {', '.join(ATTACKS)}")
        if not self.budgets or any(not (math.isfinite(b) and b > 0) for b in self.budgets):
            raise ValueError(f"budgets must be finite and > 0, got {list(self.budgets)}")
        if self.name == "cina" and any(b > 1 for b in self.budgets):
            raise ValueError(
                f"cina's budgets are shares of a cluster, at most 1: {list(self.budgets)}"
            )
        unknown = set(self.params) - _params_of(self.name)
        if unknown:
            raise ValueError(
                f"{self.name} takes params {sorted(_params_of(self.name)) or 'none'} (budget and "
                f"seed are set by the run), got {sorted(unknown)}"
            )
        return self


def _params_of(name: str) -> set[str]:
    """The ``params`` an attack takes: those of ``inject`` for the injection attacks, the
    constructor's of an attack that queries the victim but the victim and the budget's; none
    for Gaussian noise (its budget is sigma)."""
    if name in INJECTION_ATTACKS:
        return {"n_clusters", "plant"}
    if name in QUERY_ATTACKS:
        cls, budget = QUERY_ATTACKS[name]
        return set(inspect.signature(cls).parameters) - {"self", "clusterer", budget}
    return set()


class EvaluateClusteringConfig(ExperimentConfig):
    """Config of ``evaluate-clustering`` (see the module docstring).

    Attributes
    ----------
    seed : int
        The first seed; seed s runs with s = seed, seed + 1, ...
    data : ClusteringDataSpec
        The clustered rows.
    clusterer : ClustererSpec
        The victim.
    attacks : tuple of PoisonEntry
        At least one attack, each name once.
    n_seeds : int
        Seeds (repetitions), >= 2 for an interval.
    """

    data: ClusteringDataSpec
    clusterer: ClustererSpec
    attacks: tuple[PoisonEntry, ...]
    n_seeds: int = Field(5, ge=2)

    @field_validator("attacks")
    @classmethod
    def _attacks_once(cls, attacks: tuple[PoisonEntry, ...]) -> tuple[PoisonEntry, ...]:
        names = [a.name for a in attacks]
        if not names:
            raise ValueError("give at least one attack")
        if len(set(names)) < len(names):
            raise ValueError(f"each attack once (its budgets in one list), got {names}")
        return attacks


# ---- data and victim ----


def load_rows(spec: ClusteringDataSpec) -> tuple[np.ndarray, np.ndarray | None, str, str]:
    """(X float64 (N, D), labels or None, name, SHA-256 of the arrays) of ``spec``.

    Parameters
    ----------
    spec : ClusteringDataSpec
        Where the rows come from.

    Returns
    -------
    tuple
        The rows (standardized if asked), their labels (None without), a name and a checksum.
    """
    split = "train" if spec.name in IDX_DATASETS else "all"
    x, y, name = load_source(spec, split, y_required=False, encode=True)
    X = x.reshape(len(x), -1).astype(np.float64)
    if spec.path is not None and x.ndim != 2:
        raise ValueError(f"data.path: {spec.x_key} must have shape (N, D), got {x.shape}")
    if len(X) < 4:
        raise ValueError(f"{name}: {len(X)} rows; clustering them needs at least 4")
    if spec.standardize:
        X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    arrays = {"X": X} if y is None else {"X": X, "y": y}
    return X, y, name, arrays_sha256(arrays)


def make_victim(spec: ClustererSpec, seed: int) -> Any:
    """A fresh victim with every ``random_state`` among its (nested) parameters set to
    ``seed``.

    Parameters
    ----------
    spec : ClustererSpec
        The victim's factory and arguments.
    seed : int
        The seed.

    Returns
    -------
    estimator
        An unfitted estimator with ``fit_predict``.
    """
    return build_seeded("clusterer", spec.factory, spec.kwargs, seed, ("fit_predict",),
                        "has no fit_predict (a clusterer, or a Pipeline ending in one)")  # fmt: skip


_ROWS: dict[str, tuple[np.ndarray, np.ndarray | None, str, str]] = {}


def _rows(spec: ClusteringDataSpec) -> tuple[np.ndarray, np.ndarray | None, str, str]:
    """The rows, loaded once per process and file version."""
    key = f"{file_stamp(spec.path)}|{spec.model_dump_json()}"
    if key not in _ROWS:
        _ROWS[key] = load_rows(spec)
    return _ROWS[key]


# ---- units ----


def _clean_unit(config: EvaluateClusteringConfig, seed: int) -> dict[str, Any]:
    X, _, _, _ = _rows(config.data)
    return {"labels": np.asarray(make_victim(config.clusterer, seed).fit_predict(X)).tolist()}


def _injected(budget: float, n: int) -> int:
    """Rows an injection attack (or the resample control) adds at ``budget``: round(b N), >= 1."""
    return max(1, round(budget * n))


CONTROLS = ("resample", "random_move")  # their ids are control.<name>.b<budget>.*


def _settings(config: EvaluateClusteringConfig) -> list[tuple[str, dict[str, Any], tuple]]:
    """(attack, params, budgets) of every attack, then the resample control at every budget
    of an injection attack and the random-move control at Chhabra's budgets."""
    settings = [(e.name, e.params, e.budgets) for e in config.attacks]
    injection = sorted({b for name, _, budgets in settings if name in INJECTING
                        for b in budgets})  # fmt: skip
    controls: list[tuple[str, dict[str, Any], tuple]] = (
        [("resample", {}, tuple(injection))] if injection else []
    )
    controls += [("random_move", p, b) for name, p, b in settings if name == "chhabra"]
    return settings + controls


def _poison(
    name: str, params: dict[str, Any], budget: float, X: np.ndarray, y: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(poisoned rows, mask of injected rows) of the injection attacks, Gaussian noise and
    the benign ``resample`` control (real rows drawn again, as many as an attack injects)."""
    if name == "resample":
        rng = np.random.default_rng(seed)
        extra = X[rng.integers(0, len(X), _injected(budget, len(X)))]
        return np.vstack([X, extra]), np.r_[np.zeros(len(X), bool), np.ones(len(extra), bool)]
    if name == "gaussian_noise":
        return gaussian_noise(X, y, budget, random_state=seed).data, np.zeros(len(X), bool)
    done = inject(name, X, y, _injected(budget, len(X)), random_state=seed, **params)
    return done.data, done.is_injected


def query_attack(name: str, victim: Any, params: dict[str, Any], budget: float, n: int) -> Any:
    """The attack ``name`` that queries ``victim``, its budget set: Cina's s, Chhabra's L-inf
    bound, or the points Biggio's and Crussell's attacks inject (``round(budget * n)``, >= 1);
    unbounded data (``box=None``) unless ``params`` say otherwise.

    Parameters
    ----------
    name : str
        cina, chhabra, biggio or crussell.
    victim : estimator
        The clusterer it queries.
    params : dict
        Its further constructor arguments.
    budget : float
        The config's budget.
    n : int
        Rows of the clean data.

    Returns
    -------
    ClusteringAttack
    """
    cls, key = QUERY_ATTACKS[name]
    value = _injected(budget, n) if key == "n_points" else budget
    box = {"box": None} if "box" in inspect.signature(cls).parameters else {}
    return cls(victim, **{**box, key: value, **params})


def _attack_unit(
    config: EvaluateClusteringConfig, name: str, params: dict[str, Any], budget: float,
    seed: int, clean: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """One attack at one budget for one seed: the poisoned clustering of the original rows
    scored against the clean one (and the labels). An attack that cannot run on these rows
    (mimicry where the detector finds no outlier to conceal) is one ``ConfigError`` naming
    it."""
    X, y, name_of_rows, _ = _rows(config.data)
    try:
        data, injected = _attacked(config, name, params, budget, seed, clean, X, y)
    except ValueError as exc:
        raise ConfigError(
            f"attack {name!r} at budget {budget} (seed {seed}) cannot run on {name_of_rows}: "
            f"{exc}; leave it out of attacks"
        ) from exc
    labels = np.asarray(make_victim(config.clusterer, seed).fit_predict(data))[~injected]
    out = {
        "ari_clean": float(adjusted_rand_score(clean, labels)),
        "ami_clean": float(adjusted_mutual_info_score(clean, labels)),
        "changed": 100.0 * float(changed_cluster(clean, labels).mean()),
        "n_injected": int(injected.sum()),
    }
    if y is not None:
        out["ari_labels"] = float(adjusted_rand_score(y, labels))
    return out


def _attacked(
    config: EvaluateClusteringConfig, name: str, params: dict[str, Any], budget: float,
    seed: int, clean: np.ndarray, X: np.ndarray, y: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(attacked rows, mask of injected rows) of one attack at one budget for one seed."""
    reference = y if y is not None else clean
    if name in QUERY_ATTACKS:  # the victim itself is queried
        attack = query_attack(name, make_victim(config.clusterer, seed), params, budget, len(X))
        result = attack.attack(X, random_state=seed)
        data, injected = result.data, result.is_injected
    elif name == "random_move":  # Chhabra's point, to a random corner of its ball
        chooser = query_attack(
            "chhabra", make_victim(config.clusterer, seed), params, budget, len(X)
        )
        t = chooser.choose(X, clean)[2]
        data, injected = X.copy(), np.zeros(len(X), bool)
        data[t] += budget * np.random.default_rng(seed).choice([-1.0, 1.0], X.shape[1])
    else:
        data, injected = _poison(name, params, budget, X, reference, seed)
    return data, injected


# ---- the experiment ----


def _check_before_work(
    ctx: RunContext, config: EvaluateClusteringConfig
) -> tuple[tuple[np.ndarray, np.ndarray | None, str, str], dict[str, Any]]:
    """Load the rows and fit the victim once (seed 0's clean clustering, kept as its unit), so
    that a wrong file, factory or argument is one ``ConfigError`` before any attack runs."""
    with config_errors():
        rows = _rows(config.data)
        n = len(rows[0])
        for name, _, budgets in _settings(config):
            too_many = [b for b in budgets if name in INJECTING and _injected(b, n) > n // 2]
            if too_many:
                raise ValueError(
                    f"{name} at {too_many} would inject more than half of the {n} rows"
                )
        for entry in config.attacks:  # a victim or argument the attack refuses, named now
            if entry.name in QUERY_ATTACKS:
                victim = make_victim(config.clusterer, config.seed)
                try:
                    query_attack(entry.name, victim, entry.params, entry.budgets[0], n)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"attack {entry.name!r}: {exc}") from exc
        first = ctx.unit(f"clean-seed{config.seed}", partial(_clean_unit, config, config.seed))
        return rows, first


def _tidy_rows(
    config: EvaluateClusteringConfig,
    clean: dict[int, np.ndarray],
    done: dict[tuple[str, float, int], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Tidy rows: one per seed and comparison id (``done``: (attack, budget, seed) -> unit)."""
    seeds = sorted(clean)
    y = _rows(config.data)[1]
    rows = []
    if y is not None:
        rows += [tidy_row("clean.ari_labels", float(adjusted_rand_score(y, clean[s])), "ARI")
                 for s in seeds]  # fmt: skip
    rows += [tidy_row("control.seed_to_seed.ari", float(adjusted_rand_score(clean[a], clean[b])),
                      "ARI") for a, b in itertools.pairwise(seeds)]  # fmt: skip
    for (name, budget, _), result in done.items():
        prefix = f"{'control.' if name in CONTROLS else ''}{name}.b{budget:g}"
        for metric, unit in (("ari_clean", "ARI"), ("ami_clean", "AMI"), ("changed", "%"),
                             ("ari_labels", "ARI")):  # fmt: skip
            if metric in result:
                rows.append(tidy_row(f"{prefix}.{metric}", result[metric], unit,
                                     n_injected=result["n_injected"]))  # fmt: skip
    return rows


def _curves(
    comparisons: list[dict[str, Any]], config: EvaluateClusteringConfig
) -> dict[tuple[str, str], dict[str, Any]]:
    """Per budget kind, ARI with the clean clustering against the budget, one line per attack
    (the resample control with the injection attacks)."""
    by_id = {c["id"]: c for c in comparisons}
    kinds: dict[tuple[str, str], dict[str, Any]] = {}
    for name, _, budgets in _settings(config):
        kind = BUDGET_OF[{"resample": "uniform_outliers", "random_move": "chhabra"}.get(name, name)]
        prefix = f"control.{name}" if name in CONTROLS else name
        points = [by_id[f"{prefix}.b{b:g}.ari_clean"] for b in sorted(budgets)]
        kinds.setdefault(kind, {})[f"{name} (control)" if name in CONTROLS else name] = {
            "x": sorted(budgets), "mean": [p["ours"] for p in points],
            "ci": [p["ci95"] for p in points],
        }  # fmt: skip
    return kinds


def _report_tables(results: dict[str, Any], config: dict[str, Any]) -> list[Table]:
    """Per attack and budget: ARI and AMI with the clean clustering, rows that changed cluster,
    ARI with the labels; the controls beside them."""
    by_id = {c["id"]: c for c in results["comparisons"]}

    def cell(cid: str) -> str:
        c = by_id.get(cid)
        return "" if c is None else f"{c['ours']:.3g} ± {c['ci95']:.2g}"

    rows = []
    for cid in by_id:
        if cid.endswith(".ari_clean"):
            prefix = cid.removesuffix(".ari_clean")
            attack, budget = prefix.rsplit(".b", 1)
            rows.append([attack, budget, str(by_id[cid].get("n_injected", "")), cell(cid),
                         cell(f"{prefix}.ami_clean"), cell(f"{prefix}.changed"),
                         cell(f"{prefix}.ari_labels")])  # fmt: skip
    seed_to_seed = cell("control.seed_to_seed.ari")
    labels = cell("clean.ari_labels")
    title = (f"{results['victim']} on {results['data']} ({results['n_rows']} rows), mean ± 95 % "
             f"t half-width over {config.get('n_seeds')} seeds; clean ARI with the labels "
             f"{labels or 'n/a'}, seed-to-seed ARI of the clean clusterings {seed_to_seed}")  # fmt: skip
    return [Table(title, ("attack", "budget", "injected", "ARI with clean",
                          "AMI with clean", "changed cluster (%)", "ARI with labels"), rows)]  # fmt: skip


def _sample_size(results: dict[str, Any], config: dict[str, Any], comparison_id: str) -> int | None:
    """Seeds behind a mean (pairs of consecutive seeds for the seed-to-seed control)."""
    n = int(config.get("n_seeds", 0))
    return n - 1 if comparison_id == "control.seed_to_seed.ari" else n


# ---- advlab plan: the work is fits of the user's clusterer ----

PLAN_FITS = 3  # clean fits timed by advlab plan (the median is the rate)


def _fits_per_unit(
    config: EvaluateClusteringConfig, name: str, params: dict[str, Any], budget: float,
    n: int, n_clusters: int,
) -> int:  # fmt: skip
    """Fits of the victim in one attack unit: the fit of the poisoned data, and before it the
    queries of an attack that queries the victim (its ``queries``)."""
    if name not in QUERY_ATTACKS:
        return 1
    victim = make_victim(config.clusterer, config.seed)
    return 1 + query_attack(name, victim, params, budget, n).queries(n_clusters)


def _timed_fits(config: EvaluateClusteringConfig, X: np.ndarray) -> tuple[float, int]:
    """(median wall time, clusters found) of ``PLAN_FITS`` clean fits of the victim (seeds
    seed, seed + 1, ...)."""
    times, clusters = [], []
    for seed in range(config.seed, config.seed + PLAN_FITS):
        victim = make_victim(config.clusterer, seed)
        start = time.perf_counter()
        labels = np.asarray(victim.fit_predict(X))
        times.append(time.perf_counter() - start)
        clusters.append(len(np.unique(labels[labels != -1])))
    return float(np.median(times)), int(np.median(clusters))


@config_errors()  # a mistake in the user's files or factory: one line, as in a run
def _plan(config: EvaluateClusteringConfig) -> dict[str, Any]:
    """Units and fits of a run (``advlab plan``): a clean unit per seed, a unit per attack,
    budget and seed; the fits at the rate of clean fits timed here."""
    X, _, name, _ = load_rows(config.data)
    seconds, k = _timed_fits(config, X)
    units = {"clean (seeds)": config.n_seeds}
    work = [("clean fits", config.n_seeds, config.n_seeds)]
    for attack, params, budgets in _settings(config):
        count = len(budgets) * config.n_seeds
        units[f"{attack} (budgets x seeds)"] = count
        fits = sum(_fits_per_unit(config, attack, params, b, len(X), k) for b in budgets)
        work.append((attack, fits * config.n_seeds, count))
    attacks = [{"what": what, "images": fits, "steps": 1, "rate": 1.0 / max(seconds, 1e-9),
                "units": count} for what, fits, count in work]  # fmt: skip
    notes = [
        f"Work is fits of {config.clusterer.factory}: one per unit, and the queries of the",
        f"attacks that query it (Cina, Chhabra, Biggio, Crussell; Biggio's greedy bridge at the {k}",
        f"clusters a clean fit found); a clean fit of the {len(X)} rows of {name} took",
        f"{seconds:.3g} s here (median of {PLAN_FITS}). An injection attack's fit sees up to 1.5 N",
        "rows, and the attacks' own work (mimicry's neighbours, Cina's scoring) comes on top.",
    ]
    return {"units": units, "attacks": attacks, "notes": notes, "work_unit": "fits",
            "throughput_source": "measured: clean fits of the clusterer here"}  # fmt: skip


@register(
    "evaluate-clustering",
    EvaluateClusteringConfig,
    description="poisoning of your own clustering (any fit_predict estimator or pipeline) on your own data",
    tables=_report_tables,
    sample_size=_sample_size,
    plan=_plan,
)
def run_evaluate_clustering(config: EvaluateClusteringConfig, ctx: RunContext) -> dict[str, Any]:
    """Check the data and the victim, cluster the clean data per seed, then attack every
    (attack, budget, seed) as one unit and aggregate over the seeds.

    Parameters
    ----------
    config : EvaluateClusteringConfig
        The validated config.
    ctx : RunContext
        The run (its executor runs the units).

    Returns
    -------
    dict
        ``comparisons``, the ``curves`` of the figures, the data's name, size and checksum.
    """
    (X, _, name, sha), first = _check_before_work(ctx, config)
    ctx.record_data(name, sha, len(X))
    refuse_changed_files(ctx, {"data_sha256": sha})
    seeds = range(config.seed, config.seed + config.n_seeds)
    others = {f"clean-seed{s}": partial(_clean_unit, config, s) for s in seeds[1:]}
    clean_done = {f"clean-seed{config.seed}": first, **ctx.units(others, desc="clean")}
    clean = {s: np.asarray(clean_done[f"clean-seed{s}"]["labels"]) for s in seeds}
    cases = {(attack, budget, s): params for attack, params, budgets in _settings(config)
             for budget in budgets for s in seeds}  # fmt: skip
    jobs = {f"{attack}-b{budget!r}-seed{s}": partial(_attack_unit, config, attack, params, budget,
                                                     s, clean[s])
            for (attack, budget, s), params in cases.items()}  # fmt: skip
    done = ctx.units(jobs, desc="attacks")
    results = dict(zip(cases, done.values(), strict=True))
    comparisons = aggregate(_tidy_rows(config, clean, results), LEVEL)
    curves = _curves(comparisons, config)
    for (axis, figure), lines in curves.items():
        plot_sweep(lines, ctx.path(f"poisoning-{figure}"), axis, "ARI with the clean clustering",
                   f"{config.clusterer.factory} on {name}: poisoned vs clean clustering")  # fmt: skip
    return {"comparisons": comparisons,
            "curves": {figure: lines for (_, figure), lines in curves.items()}, "data": name, "n_rows": len(X),
            "data_sha256": sha, "victim": config.clusterer.factory}  # fmt: skip
