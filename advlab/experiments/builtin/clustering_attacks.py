"""``clustering-attacks``: the attacks on clustering that the literature compares against,
on every common clusterer.

(a) Cinà et al.'s robustness grid: Fashion-MNIST shirts (6) vs ankle boots (9), the first
    ``n_per_class`` training images of each; AMI between the clean and the poisoned
    clustering against s (share of the victim cluster perturbed) and delta (L-inf bound),
    for k-means, spectral and Ward clustering (heat maps).
(b) Chhabra et al.'s spill-over cases (8x8 digits 8 vs 9 and 1 vs 4, MNIST 1 vs 4 and 3 vs 2):
    spill-over of Chhabra's one-point attack, and of Cinà's attack on one point (s = 1) at the
    same L-inf budget.
(c) Biggio et al.'s bridge on single linkage and Crussell & Kegelmeyer's line on DBSCAN: the
    number of injected points that merges the two largest clusters, measured on a curve and
    beside the count predicted from the gap.
(d) The robust k-means family and Algorithm 1's adversarially trained k-means as victims of
    (a) at one cell and of (b) on one case.
Plus the transfer of Cinà's poisoned points to supervised models trained on other clean
images (linear and RBF SVM, random forest, the zoo's small CNN).

Victims are deterministic (fixed seeds; k-means warm-started from its clean fit, the attacker
querying "k-means from these centres" as a service), so a change of clustering is the attack's
doing, not the victim's randomness.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, Literal

import numpy as np
from pydantic import Field
from sklearn.cluster import DBSCAN, AgglomerativeClustering, SpectralClustering
from sklearn.ensemble import RandomForestClassifier
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import SVC, LinearSVC

from advlab.attacks.clustering import (
    BiggioBridge,
    Chhabra,
    Cina,
    CrussellMerge,
    bridge_count,
    merge_count,
    merged,
)
from advlab.cluster import KMeans
from advlab.data import Dataset, load_dataset
from advlab.defenses import (
    KMeansAdversarialTraining,
    KMeansMinusMinus,
    NKMeans,
    SanitizedKMeans,
    TrimmedKMeans,
)
from advlab.defenses.training_attacks import KMeansWhiteBoxAttack
from advlab.experiments.config import ExperimentConfig
from advlab.experiments.registry import register
from advlab.experiments.runner import RunContext
from advlab.metrics import adjusted_rand, mutual_info_adjusted, perturbation_norms, spillover
from advlab.models.train import train_classifier
from advlab.report.plots import plot_adversarial_examples, plot_sweep, plot_value_grids
from advlab.report.tables import Table

Clusterer = Literal["kmeans", "spectral", "ward", "average", "complete", "single", "gmm"]
Case = Literal["digits-8v9", "digits-1v4", "mnist-1v4", "mnist-3v2"]
Robust = Literal["kmeans", "kmeans--", "trimmed", "nkmeans", "sanitized-iforest", "algorithm1"]
TransferModel = Literal["linear-svm", "rbf-svm", "random-forest", "small_cnn"]


class ClusteringAttacksConfig(ExperimentConfig):
    n_per_class: int = Field(800, ge=20, description="Fashion-MNIST images per class in (a)")
    grid_s: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.4, 0.6)
    grid_delta: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
    clusterers: tuple[Clusterer, ...] = ("kmeans", "spectral", "ward")
    generations: int = Field(70, ge=1, description="G of Cina's search")
    population: int = Field(2, ge=1, description="children per generation (one batched query)")
    cases: tuple[Case, ...] = ("digits-8v9", "digits-1v4", "mnist-1v4", "mnist-3v2")
    case_clusterers: tuple[Clusterer, ...] = ("kmeans", "ward")
    mnist_per_class: int = Field(200, ge=20, description="MNIST images per class in (b), (c)")
    chhabra_budget: float = Field(0.5, gt=0, description="L-inf budget of the one point in (b)")
    chhabra_rounds: int = Field(40, ge=0)
    merge_datasets: tuple[Literal["digits", "mnist"], ...] = ("digits", "mnist")
    merge_points: int = Field(12, ge=2, description="points on each merge curve")
    merge_quantiles: tuple[float, ...] = Field(
        (0.5, 0.75, 0.95), description="cut heights / DBSCAN radii as quantiles of k-NN distances"
    )
    robust: tuple[Robust, ...] = (
        "kmeans",
        "kmeans--",
        "trimmed",
        "nkmeans",
        "sanitized-iforest",
        "algorithm1",
    )
    robust_cell: tuple[float, float] = (0.2, 0.4)
    transfer_models: tuple[TransferModel, ...] = (
        "linear-svm",
        "rbf-svm",
        "random-forest",
        "small_cnn",
    )
    transfer_epochs: int = Field(3, ge=1)
    device: str = "cpu"


class FitThenPredict:
    """A victim that fits and then labels the data it was given with ``predict`` (for
    estimators whose ``labels_`` describe something else, e.g. Algorithm 1's perturbed D')."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.fit(X).predict(X))


def make_clusterer(name: str, X: np.ndarray, k: int, seed: int) -> Any:
    """The victim called ``name``, deterministic (fixed seeds; k-means warm-started)."""
    if name == "kmeans":
        return KMeans(k, init=KMeans(k, n_init=10, random_state=seed).fit(X).cluster_centers_)
    if name == "spectral":
        return SpectralClustering(
            k, affinity="nearest_neighbors", n_neighbors=10, random_state=seed
        )
    if name in ("ward", "average", "complete", "single"):
        return AgglomerativeClustering(k, linkage=name)
    if name == "gmm":
        return GaussianMixture(k, covariance_type="diag", random_state=seed)
    raise ValueError(f"unknown clusterer {name!r}")


def make_robust(name: str, k: int, n_flag: int, n_total: int, seed: int) -> Any:
    """A robust k-means victim, or plain k-means under the same protocol (``"kmeans"``: three
    k-means++ restarts, no warm start); the outlier-aware ones are told ``n_flag`` of the
    ``n_total`` points (the touched count, an oracle). Algorithm 1: eta = 1/2, beta = 3, the
    label-free white-box PGD up to eps = 0.1 in [0, 1] pixels."""
    if name == "algorithm1":
        return FitThenPredict(KMeansAdversarialTraining(
            k, eta=0.5, beta=3, eps_max=0.1, attack=KMeansWhiteBoxAttack(bounds=(0.0, 1.0)),
            random_state=seed))  # fmt: skip
    est = {
        "kmeans": lambda: KMeans(k, n_init=3, random_state=seed),
        "kmeans--": lambda: KMeansMinusMinus(k, n_outliers=n_flag, n_init=3, random_state=seed),
        "trimmed": lambda: TrimmedKMeans(
            k, trim=min(0.5, n_flag / n_total), n_init=3, random_state=seed
        ),
        "nkmeans": lambda: NKMeans(k, n_outliers=max(1, n_flag), random_state=seed),
        "sanitized-iforest": lambda: SanitizedKMeans(
            k, detector="isolation_forest", random_state=seed
        ),
    }[name]()
    return FitThenPredict(est)


def two_classes(name: str, classes: tuple[int, int], per_class: int) -> tuple[Dataset, np.ndarray]:
    """The first ``per_class`` images of each class (train split; all of the 8x8 digits)."""
    ds = load_dataset(name, "all" if name == "digits" else "train")
    rows = np.concatenate([np.flatnonzero(ds.labels == c)[:per_class] for c in classes])
    sub = ds.subset(np.sort(rows))
    return sub, sub.data.astype(np.float64)


def _case(case: str, config: ClusteringAttacksConfig) -> tuple[Dataset, np.ndarray]:
    name, pair = case.split("-")
    a, b = (int(c) for c in pair.split("v"))
    per_class = 10_000 if name == "digits" else config.mnist_per_class
    return two_classes(name, (a, b), per_class)


def _grid_unit(X: np.ndarray, clusterer: str, s: float, delta: float, config: ClusteringAttacksConfig,
               generations: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Cina's attack at one (s, delta); ``generations=1`` is the control: the search's random
    start (eps ~ U(0, delta) on the same points, same direction), no search."""
    victim = make_clusterer(clusterer, X, 2, config.seed)
    attack = Cina(victim, s=s, delta=delta, generations=generations or config.generations,
                  population=1 if generations == 1 else config.population)  # fmt: skip
    with (
        warnings.catch_warnings()
    ):  # spectral: "graph is not fully connected" once points move away
        warnings.simplefilter("ignore", UserWarning)
        r = attack.attack(X, random_state=config.seed)
    lab = r.original_labels
    return {"ami": mutual_info_adjusted(r.clean_labels, lab), "ari": adjusted_rand(r.clean_labels, lab),
            "objective": r.objective.tolist(), "n_touched": len(r.touched), **perturbation_norms(r.delta),
            "n_refits": r.n_refits, "seconds": r.seconds}  # fmt: skip


def _spill_unit(X: np.ndarray, clusterer: str, config: ClusteringAttacksConfig) -> dict[str, Any]:
    chh = Chhabra(make_clusterer(clusterer, X, 2, config.seed), budget=config.chhabra_budget,
                  n_random=config.chhabra_rounds).attack(X, random_state=config.seed)  # fmt: skip
    t = int(chh.touched[0])
    cina = Cina(make_clusterer(clusterer, X, 2, config.seed), s=1, delta=config.chhabra_budget,
                generations=config.generations, population=config.population, objective="ami")  # fmt: skip
    cr = cina.attack(X, random_state=config.seed)
    return {
        "chhabra": {"spillover": chh.meta["spillover"], **perturbation_norms(chh.delta),
                    "index": t, "perturbed": chh.data[t].tolist(), "n_refits": chh.n_refits,
                    "random_spillover": random_move_spillover(make_clusterer(clusterer, X, 2, config.seed), X, t, config)},
        "cina": {"spillover": spillover(cr.clean_labels, cr.original_labels, cr.touched),
                 **perturbation_norms(cr.delta), "index": int(cr.touched[0]), "n_refits": cr.n_refits},
    }  # fmt: skip


def random_move_spillover(
    victim: Any, X: np.ndarray, t: int, config: ClusteringAttacksConfig
) -> int:
    """The control of a spill-over: the same point moved by the full budget in random signs
    (clipped to [0, 1]), no search. A victim whose clustering changes this way is unstable,
    and its spill-over under attack says little about the attack."""
    rng = np.random.RandomState(config.seed)
    moved = X.copy()
    moved[t] = np.clip(X[t] + config.chhabra_budget * rng.choice([-1.0, 1.0], X.shape[1]), 0, 1)
    return spillover(victim.fit_predict(X), victim.fit_predict(moved), [t])


def _class_pair(labels: np.ndarray, classes: np.ndarray) -> tuple[int, int]:
    """The largest cluster whose majority class is the first class, and the largest whose
    majority is the second (the two classes' main clusters; DBSCAN noise left out)."""
    ids = [c for c in np.unique(labels) if c != -1]
    first, second = np.unique(classes)[:2]
    best: dict[int, tuple[int, int]] = {}
    for c in ids:
        members = classes[labels == c]
        values, counts = np.unique(members, return_counts=True)
        major = int(values[np.argmax(counts)])
        if major in (first, second) and len(members) > best.get(major, (-1, 0))[1]:
            best[major] = (int(c), len(members))
    if len(best) < 2:
        raise ValueError("the clean clustering has no cluster led by one of the two classes")
    return best[int(first)][0], best[int(second)][0]


def _merge_unit(
    X: np.ndarray, classes: np.ndarray, config: ClusteringAttacksConfig
) -> dict[str, Any]:
    """Merge curves of Biggio's bridge (single linkage) and Crussell's line (DBSCAN) between
    the main clusters of the two classes, at several cut heights / radii: single linkage cut
    at quantiles of the nearest-neighbour distance, DBSCAN's eps at quantiles of the distance
    to the 5th neighbour (min_samples = 5)."""
    nn = NearestNeighbors(n_neighbors=6).fit(X)
    dist, _ = nn.kneighbors(X)
    out: dict[str, Any] = {}
    for q in config.merge_quantiles:
        threshold = float(np.quantile(dist[:, 1], q))
        single = AgglomerativeClustering(
            n_clusters=None, distance_threshold=threshold, linkage="single"
        )
        pair = _class_pair(single.fit_predict(X), classes)
        gap = BiggioBridge(single, 0, clusters=pair).attack(X).meta["gap"]
        out[f"biggio.q{round(100 * q)}"] = _curve(
            lambda m, v=single, p=pair: BiggioBridge(v, m, clusters=p).attack(X),
            bridge_count(gap, threshold), config, {"threshold": threshold, "gap": gap})  # fmt: skip
        eps = float(np.quantile(dist[:, 5], q))
        dbscan = DBSCAN(eps=eps, min_samples=5)
        try:
            pair = _class_pair(dbscan.fit_predict(X), classes)
        except ValueError as exc:  # no cluster of its own for one class at this radius
            out[f"crussell.q{round(100 * q)}"] = {"skipped": str(exc), "eps": eps}
            continue
        base = CrussellMerge(dbscan, n_points=0, clusters=pair).attack(X)
        out[f"crussell.q{round(100 * q)}"] = _curve(
            lambda m, v=dbscan, p=pair: CrussellMerge(v, m, clusters=p).attack(X),
            merge_count(base.meta["gap"], eps, 5), config,
            {"eps": eps, "min_samples": 5, "gap": base.meta["gap"]})  # fmt: skip
    return out


def _curve(run: Any, predicted: int, config: ClusteringAttacksConfig, extra: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    top = max(2, int(np.ceil(1.5 * predicted)))
    ms = sorted(
        set(np.linspace(0, top, config.merge_points).round().astype(int).tolist())
        | {predicted, max(predicted - 1, 0)}
    )
    joined = []
    for m in ms:
        r = run(m)
        a, b = r.meta["clusters"]
        joined.append(merged(r.clean_labels, r.original_labels, a, b))
    first = next((m for m, j in zip(ms, joined, strict=True) if j), None)
    return {"m": ms, "merged": joined, "predicted": predicted, "merge_count": first, **extra}


def _robust_unit(X: np.ndarray, case_X: np.ndarray, name: str, config: ClusteringAttacksConfig) -> dict[str, Any]:  # fmt: skip
    s, delta = config.robust_cell
    n_touched = round(s * len(X) / 2)
    cina = Cina(make_robust(name, 2, n_touched, len(X), config.seed), s=s, delta=delta,
                generations=config.generations, population=config.population)  # fmt: skip
    r = cina.attack(X, random_state=config.seed)
    chh = Chhabra(make_robust(name, 2, 1, len(case_X), config.seed), budget=config.chhabra_budget,
                  n_random=config.chhabra_rounds).attack(case_X, random_state=config.seed)  # fmt: skip
    control = random_move_spillover(
        make_robust(name, 2, 1, len(case_X), config.seed), case_X, int(chh.touched[0]), config
    )
    return {"cina_ami": mutual_info_adjusted(r.clean_labels, r.original_labels),
            "chhabra_spillover": chh.meta["spillover"], "chhabra_random_spillover": control,
            "n_refits": r.n_refits + chh.n_refits}  # fmt: skip


def _transfer_unit(X: np.ndarray, train: Dataset, labels: np.ndarray, config: ClusteringAttacksConfig, ctx: RunContext) -> dict[str, Any]:  # fmt: skip
    """Accuracy of supervised models (trained on other clean images) on Cina's touched points,
    clean and poisoned (k-means victim at ``robust_cell``)."""
    s, delta = config.robust_cell
    r = Cina(make_clusterer("kmeans", X, 2, config.seed), s=s, delta=delta,
             generations=config.generations, population=config.population).attack(X, random_state=config.seed)  # fmt: skip
    clean, poisoned, y = X[r.touched], r.data[r.touched], labels[r.touched]
    out: dict[str, Any] = {}
    for name in config.transfer_models:
        if name == "small_cnn":
            shape = train.images.shape[1:] if train.images is not None else (1, 28, 28)
            model = train_classifier("small_cnn", train, epochs=config.transfer_epochs, seed=config.seed,
                                     device=config.device, cache=ctx.cache).model.eval()  # fmt: skip
            import torch

            def predict(Z: np.ndarray, model: Any = model, shape: Any = shape) -> np.ndarray:
                with torch.no_grad():
                    x = torch.as_tensor(Z, dtype=torch.float32).reshape(-1, *shape)
                    return model(x.to(config.device)).argmax(1).cpu().numpy()
        else:
            est = {"linear-svm": lambda: LinearSVC(C=0.1, random_state=config.seed),
                   "rbf-svm": lambda: SVC(kernel="rbf", gamma="scale"),
                   "random-forest": lambda: RandomForestClassifier(100, random_state=config.seed)}[name]()  # fmt: skip
            predict = est.fit(train.data, train.labels).predict
        acc_clean = 100 * float(np.mean(predict(clean) == y))
        acc_poisoned = 100 * float(np.mean(predict(poisoned) == y))
        out[name] = {"clean": acc_clean, "poisoned": acc_poisoned, "drop": acc_clean - acc_poisoned}
    out["n_touched"] = len(r.touched)
    return out


def _fmt(v: float) -> str:
    return f"{v:g}"


def _report_tables(results: dict[str, Any], config: dict[str, Any]) -> list[Table]:
    tables = []
    for clusterer, grid in results.get("grid", {}).items():
        tables.append(Table(
            f"(a) Cinà, Fashion-MNIST 6 vs 9: AMI(clean, poisoned) for {clusterer} (rows s, columns delta)",
            ("s \\ delta", *[_fmt(d) for d in grid["delta"]]),
            [[_fmt(s)] + [f"{v:.3f}" for v in row] for s, row in zip(grid["s"], grid["ami"], strict=True)],
        ))  # fmt: skip
    spill = results.get("spillover", {})
    if spill:
        rows = [[key.split("/")[0], key.split("/")[1], str(v["chhabra"]["spillover"]), f"{v['chhabra']['linf']:.3f}",
                 f"{v['chhabra']['l2']:.2f}", str(v["chhabra"]["random_spillover"]), str(v["cina"]["spillover"]),
                 f"{v['cina']['linf']:.3f}", f"{v['cina']['l2']:.2f}"] for key, v in spill.items()]  # fmt: skip
        tables.append(Table(f"(b) spill-over of one perturbed point, L-inf budget {config.get('chhabra_budget')}",
                            ("case", "victim", "Chhabra spill", "L-inf", "L2", "random move spill", "Cinà (s=1) spill",
                             "L-inf", "L2"), rows))  # fmt: skip
    merges = results.get("merges", {})
    if merges:
        rows = [[d, key.split(".")[0], key.split(".")[1],
                 f"{c.get('threshold', c.get('eps')):.3f}", f"{c['gap']:.3f}", str(c["merge_count"]), str(c["predicted"])]
                for d, m in merges.items() for key, c in m.items() if "skipped" not in c]  # fmt: skip
        tables.append(Table("(c) injected points that merge the main clusters of classes 1 and 4 (measured on the "
                            "curve, predicted from the gap)",
                            ("data", "attack", "cut (quantile)", "cut height / eps", "gap", "merged at", "predicted"),
                            rows))  # fmt: skip
    robust = results.get("robust", {})
    if robust:
        rows = [[name, f"{v['cina_ami']:.3f}", str(v["chhabra_spillover"]), str(v["chhabra_random_spillover"])]
                for name, v in robust.items()]  # fmt: skip
        s_d = tuple(config.get("robust_cell", ()))
        tables.append(Table(f"(d) robust victims: AMI under Cinà at (s, delta) = {s_d} on Fashion-MNIST 6 vs 9; "
                            "Chhabra spill-over on digits 1 vs 4",
                            ("victim", "Cinà AMI", "Chhabra spill", "random move spill"), rows))  # fmt: skip
    transfer = results.get("transfer", {})
    if transfer:
        rows = [[m, f"{v['clean']:.1f}", f"{v['poisoned']:.1f}", f"{v['drop']:.1f}"]
                for m, v in transfer.items() if isinstance(v, dict)]  # fmt: skip
        tables.append(Table(f"transfer: accuracy (%) on Cinà's {transfer.get('n_touched')} touched points",
                            ("model", "clean", "poisoned", "drop"), rows))  # fmt: skip
    return tables


@register(
    "clustering-attacks",
    ClusteringAttacksConfig,
    tables=_report_tables,
    description="Cinà, Chhabra, Biggio and Crussell attacks on k-means, spectral, hierarchical, DBSCAN",
)
def run_clustering_attacks(config: ClusteringAttacksConfig, ctx: RunContext) -> dict[str, Any]:
    fmnist, X = two_classes("fashion-mnist", (6, 9), config.n_per_class)
    ctx.record_dataset(fmnist)
    comparisons: list[dict[str, Any]] = []
    grid: dict[str, Any] = {}
    cells = [(c, s, d) for c in config.clusterers for s in config.grid_s for d in config.grid_delta]
    jobs = {}
    for clusterer, s, delta in cells:  # the search, and its random start as the control
        cell = f"{clusterer}-s{s:g}-d{delta:g}"
        jobs[f"grid-{cell}"] = partial(_grid_unit, X, clusterer, s, delta, config)
        jobs[f"grid-start-{cell}"] = partial(_grid_unit, X, clusterer, s, delta, config, 1)
    done = ctx.units(jobs, desc="cina grid")
    for clusterer, s, delta in cells:
        unit = done[f"grid-{clusterer}-s{s:g}-d{delta:g}"]
        g = grid.setdefault(clusterer, {"s": list(config.grid_s), "delta": list(config.grid_delta),
                                        "ami": [[None] * len(config.grid_delta) for _ in config.grid_s]})  # fmt: skip
        g["ami"][config.grid_s.index(s)][config.grid_delta.index(delta)] = unit["ami"]
        comparisons.append({"id": f"cina.fmnist-6v9.{clusterer}.s{s:g}.delta{delta:g}.ami", "ours": unit["ami"],
                            "paper": None, "unit": "AMI", "refits": unit["n_refits"]})  # fmt: skip
        comparisons.append({"id": f"cina.fmnist-6v9.{clusterer}.s{s:g}.delta{delta:g}.ari", "ours": unit["ari"],
                            "paper": None, "unit": "ARI"})  # fmt: skip
        start = done[f"grid-start-{clusterer}-s{s:g}-d{delta:g}"]
        comparisons.append({"id": f"cina.fmnist-6v9.{clusterer}.s{s:g}.delta{delta:g}.ami_random_start",
                            "ours": start["ami"], "paper": None, "unit": "AMI"})  # fmt: skip
        g.setdefault("ami_random_start", [[None] * len(config.grid_delta) for _ in config.grid_s])
        g["ami_random_start"][config.grid_s.index(s)][config.grid_delta.index(delta)] = start["ami"]
    if grid:
        plot_value_grids(
            [{"title": c, "matrix": g["ami"], "rows": [_fmt(s) for s in g["s"]], "cols": [_fmt(d) for d in g["delta"]]}
             for c, g in grid.items()],
            ctx.path("cina-ami-grid"), "s (share of the victim cluster)", "delta (L-inf)",
            f"Cinà et al. on Fashion-MNIST 6 vs 9 ({len(X)} images): AMI(clean, poisoned)", vmin=0, vmax=1,
        )  # fmt: skip
    spill: dict[str, Any] = {}
    examples: dict[str, tuple[np.ndarray, np.ndarray, int, str]] = {}
    case_data: dict[str, np.ndarray] = {}
    case_sets: dict[str, Dataset] = {}
    for case in config.cases:
        case_sets[case], case_data[case] = _case(case, config)
        ctx.record_dataset(case_sets[case])
    done = ctx.units({f"spill-{case}-{clusterer}": partial(_spill_unit, case_data[case], clusterer, config)
                      for case in config.cases for clusterer in config.case_clusterers},
                     desc="spill-over")  # fmt: skip
    for case in config.cases:
        ds, Xc = case_sets[case], case_data[case]
        for clusterer in config.case_clusterers:
            unit = done[f"spill-{case}-{clusterer}"]
            spill[f"{case}/{clusterer}"] = unit
            for attack in ("chhabra", "cina"):
                for metric in ("spillover", "l0", "l2", "linf"):
                    comparisons.append({"id": f"{attack}.{case}.{clusterer}.{metric}", "ours": float(unit[attack][metric]),
                                        "paper": None, "unit": "points" if metric == "spillover" else "norm"})  # fmt: skip
            comparisons.append({"id": f"chhabra.{case}.{clusterer}.spillover_random_move",
                                "ours": float(unit["chhabra"]["random_spillover"]), "paper": None, "unit": "points"})  # fmt: skip
            best = examples.get(case)
            if ds.images is not None and (best is None or unit["chhabra"]["spillover"] > best[2]):
                i = unit["chhabra"]["index"]
                shape = ds.images.shape[1:]
                clean, moved = (
                    Xc[i].reshape(shape),
                    np.asarray(unit["chhabra"]["perturbed"]).reshape(shape),
                )
                examples[case] = (clean, moved, unit["chhabra"]["spillover"], clusterer)
    if examples:
        rows = {"clean": [e[0] for e in examples.values()],
                "perturbed": [e[1] for e in examples.values()],
                "difference (0.5 = none)": [0.5 + (e[1] - e[0]) / 2 for e in examples.values()]}  # fmt: skip
        plot_adversarial_examples(rows, ctx.path("spillover-examples"), "Chhabra's point, victim with the most "
                                  "spill-over: " + ", ".join(f"{c} {e[3]} ({e[2]})" for c, e in examples.items()))  # fmt: skip
    merges: dict[str, Any] = {}
    merge_jobs = {}
    for dataset in config.merge_datasets:
        ds, Xm = two_classes(
            dataset, (1, 4), 10_000 if dataset == "digits" else config.mnist_per_class
        )
        ctx.record_dataset(ds)
        merge_jobs[f"merge-{dataset}"] = partial(_merge_unit, Xm, ds.labels, config)
    merge_done = ctx.units(merge_jobs, desc="merge curves")
    for dataset in config.merge_datasets:
        merges[dataset] = merge_done[f"merge-{dataset}"]
        merges[dataset] = {k: c for k, c in merges[dataset].items() if "skipped" not in c} | {
            k: c for k, c in merges[dataset].items() if "skipped" in c}  # fmt: skip
        for key, c in merges[dataset].items():
            if "skipped" in c:
                ctx.log.info("merge %s %s skipped: %s", dataset, key, c["skipped"])
                continue
            attack, cut = key.split(".")
            comparisons.append({"id": f"{attack}.{dataset}-1v4.{cut}.merge_count", "ours": c["merge_count"],
                                "paper": None, "unit": "points", "predicted": c["predicted"]})  # fmt: skip
    if merges:
        curves: dict[str, dict[str, Any]] = {
            f"{a} ({d})": {"x": [m / max(c["predicted"], 1) for m in c["m"]], "mean": [float(j) for j in c["merged"]],
                           "ci": [0.0] * len(c["m"]), "mark": 1.0 if i == 0 else None}
            for d, m in merges.items() for i, (a, c) in enumerate(m.items()) if "skipped" not in c}  # fmt: skip
        plot_sweep(curves, ctx.path("merge-curves"), "injected points / predicted count", "merged (1 = yes)",
                   "Main clusters of digits 1 and 4 merged? (dashed: the predicted count)")  # fmt: skip
    robust: dict[str, Any] = {}
    case_X = case_data.get("digits-1v4", next(iter(case_data.values()), None))
    if case_X is not None:
        done = ctx.units({f"robust-{name}": partial(_robust_unit, X, case_X, name, config)
                          for name in config.robust}, desc="robust victims")  # fmt: skip
        for name in config.robust:
            robust[name] = done[f"robust-{name}"]
            comparisons.append(
                {
                    "id": f"cina.robust.{name}.ami",
                    "ours": robust[name]["cina_ami"],
                    "paper": None,
                    "unit": "AMI",
                }
            )
            comparisons.append({"id": f"chhabra.robust.{name}.spillover", "ours": float(robust[name]["chhabra_spillover"]),
                                "paper": None, "unit": "points"})  # fmt: skip
            comparisons.append({"id": f"chhabra.robust.{name}.spillover_random_move",
                                "ours": float(robust[name]["chhabra_random_spillover"]), "paper": None, "unit": "points"})  # fmt: skip
    transfer: dict[str, Any] = {}
    if config.transfer_models:
        rest = load_dataset("fashion-mnist", "train")
        held_out = [np.flatnonzero(rest.labels == c)[config.n_per_class : 2 * config.n_per_class]
                    for c in (6, 9)]  # fmt: skip
        train = rest.subset(np.sort(np.concatenate(held_out)))
        transfer = ctx.units(
            {"transfer": partial(_transfer_unit, X, train, fmnist.labels, config, ctx)}
        )["transfer"]
        for model in config.transfer_models:
            comparisons.append({"id": f"cina.transfer.{model}", "ours": transfer[model]["drop"], "paper": None,
                                "unit": "accuracy points lost"})  # fmt: skip
    return {"grid": grid, "spillover": spill, "merges": merges, "robust": robust, "transfer": transfer,
            "comparisons": comparisons}  # fmt: skip
