"""``poison-cluster``: the Poison Cluster attacks against k-means and the defenses, measured
honestly: many seeds with confidence intervals, metrics on the original points only, accuracy
with a learned cluster-to-class mapping, and internal metrics that *improve* under attack flagged.

One unit per (dataset, attack, seed): the attack poisons the data, every defense clusters it
(k = number of classes), and each is scored against plain k-means on the clean data. Also: the
seed-label flip sweep of the seeded k-means (collapse ratio, paper: 0.7 Iris, 0.6 breast cancer),
the survival of mimicry points under the DBSCAN removal step (vs plain uniform outliers), the
contextual reversal, PCA pictures and an attack x defense heat map.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from advlab.attacks.poisoning import (
    PoisonedData,
    bridge_points,
    contextual_reversal,
    find_outliers,
    gaussian_noise,
    inject,
    label_shuffle,
    mimicry,
    seed_label_flip,
    subtle_outliers,
    uniform_outliers,
)
from advlab.attacks.poisoning.base import check_xy
from advlab.cluster import (
    KMeans,
    SeededKMeans,
    clustering_accuracy,
    hungarian_mapping,
    majority_vote_mapping,
    seed_sample,
)
from advlab.data import load_dataset
from advlab.defenses import KMeansMinusMinus, NKMeans, SanitizedKMeans, TrimmedKMeans
from advlab.experiments.aggregate import aggregate, ci_key, curve, mean_and_half_width, tidy_row
from advlab.experiments.config import ExperimentConfig
from advlab.experiments.registry import register
from advlab.experiments.reporting import paper_data
from advlab.experiments.runner import RunContext
from advlab.metrics import calinski_harabasz, changed_cluster, davies_bouldin, silhouette
from advlab.report.plots import plot_heatmap, plot_pca_panels, plot_sweep
from advlab.report.tables import Table
from advlab.utils.validation import check_number

Attack = Literal[
    "none",
    "gaussian_noise",
    "uniform_outliers",
    "subtle_outliers",
    "label_shuffle",
    "mimicry",
    "bridge_points",
]
Defense = Literal["kmeans", "kmeans--", "trimmed", "nkmeans", "sanitized-iforest", "sanitized-lof"]
PAPER_FLIP: dict[str, float] = paper_data("poison-cluster", "flip_ratio")
LEVEL = 0.95  # 95 % t intervals over the seeds
INTERNAL = {"silhouette": 1, "calinski_harabasz": 1, "davies_bouldin": -1}  # +1: higher is better


class PoisonConfig(ExperimentConfig):
    datasets: tuple[Literal["iris", "breast-cancer", "digits", "mnist"], ...] = (
        "iris",
        "breast-cancer",
        "digits",
        "mnist",
    )
    attacks: tuple[Attack, ...] = ("none", "gaussian_noise", "uniform_outliers", "subtle_outliers", "label_shuffle",
                                   "mimicry", "bridge_points")  # fmt: skip
    defenses: tuple[Defense, ...] = (
        "kmeans",
        "kmeans--",
        "trimmed",
        "nkmeans",
        "sanitized-iforest",
        "sanitized-lof",
    )
    n_seeds: int = Field(10, ge=2)
    mnist_subset: int = Field(
        1000, ge=100, description="first n MNIST training images (documented subset)"
    )
    sigma: float = Field(0.2, ge=0)
    n_outliers: int = Field(5, ge=0)
    shuffle_fraction: float = Field(0.2, ge=0, le=1)
    bridge_fraction: float = Field(0.2, ge=0, le=1)
    flip_seed_fraction: float = Field(0.2, gt=0, le=1)
    flip_reliable_share: float = Field(
        0.8, gt=0, le=1, description="share of seeds collapsed at the 'reliable' flip ratio"
    )
    budgets: tuple[float, ...] = Field(
        (0.02, 0.05, 0.1),
        description="injected points as a share of n for the budget-matched comparison",
    )
    budget_attacks: tuple[Attack, ...] = (
        "uniform_outliers",
        "subtle_outliers",
        "mimicry",
        "bridge_points",
    )
    silhouette_sample: int = Field(2000, ge=100)


def _load(name: str, config: PoisonConfig) -> tuple[np.ndarray, np.ndarray]:
    ds = load_dataset(name, "all" if name != "mnist" else "train")
    if name == "mnist":
        ds = ds.subset(slice(0, config.mnist_subset))
    X = ds.data.astype(np.float64)
    if name in ("iris", "breast-cancer"):  # standardised, as the reference notebooks do
        X = (X - X.mean(0)) / X.std(0)
    return X, ds.labels


def _attack(
    name: str, X: np.ndarray, y: np.ndarray, config: PoisonConfig, seed: int
) -> PoisonedData:
    none = np.zeros(len(X), dtype=bool)
    fns = {
        "none": lambda: PoisonedData(X, y, none, {"attack": "none"}),
        "gaussian_noise": lambda: gaussian_noise(X, y, config.sigma, random_state=seed),
        "uniform_outliers": lambda: uniform_outliers(X, y, config.n_outliers, random_state=seed),
        "subtle_outliers": lambda: subtle_outliers(X, y, config.n_outliers, random_state=seed),
        "label_shuffle": lambda: label_shuffle(X, y, config.shuffle_fraction, random_state=seed),
        "mimicry": lambda: mimicry(
            X, y, n_clusters=len(np.unique(y)), random_state=seed, plant_if_none=config.n_outliers
        ),
        "bridge_points": lambda: bridge_points(
            X, y, config.bridge_fraction, n_clusters=len(np.unique(y)), random_state=seed
        ),
    }
    return fns[name]()


TOLD_COUNT = ("kmeans--", "trimmed", "nkmeans")  # the defenses that need a contamination count


def _defense(name: str, k: int, n_flag: int, n_total: int, seed: int) -> Any:
    """A defense; those in ``TOLD_COUNT`` are told ``n_flag`` outliers (the oracle: the true
    number injected, or an estimate: see ``_unit``)."""
    trim = min(0.5, n_flag / n_total)
    return {
        "kmeans": lambda: KMeans(k, n_init=3, random_state=seed),
        "kmeans--": lambda: KMeansMinusMinus(k, n_outliers=n_flag, random_state=seed),
        "trimmed": lambda: TrimmedKMeans(k, trim=trim, n_init=5, random_state=seed),
        "nkmeans": lambda: NKMeans(k, n_outliers=max(1, n_flag), random_state=seed),
        "sanitized-iforest": lambda: SanitizedKMeans(
            k, detector="isolation_forest", random_state=seed
        ),
        "sanitized-lof": lambda: SanitizedKMeans(k, detector="lof", random_state=seed),
    }[name]()


def _match_centres(found: np.ndarray, ref: np.ndarray) -> float:
    """Mean distance between matched centres (Hungarian matching on distances)."""
    cost = np.linalg.norm(found[:, None] - ref[None], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def _internal(X: np.ndarray, labels: np.ndarray, sample: int, seed: int) -> dict[str, float]:
    if len(np.unique(labels)) < 2:
        return {m: float("nan") for m in INTERNAL}
    return {"silhouette": silhouette(X, labels, sample, seed), "calinski_harabasz": calinski_harabasz(X, labels),
            "davies_bouldin": davies_bouldin(X, labels)}  # fmt: skip


def _score(
    model: Any,
    poisoned: PoisonedData,
    y: np.ndarray,
    clean: KMeans,
    config: PoisonConfig,
    seed: int,
) -> dict[str, Any]:
    """Accuracy, ARI, NMI, centroid shift and changed points on the original points, internal
    metrics with and without the injected points, and the injected points a defense dropped."""
    k = clean.n_clusters
    orig = ~poisoned.is_injected
    labels_all = model.predict(poisoned.data)
    lab = labels_all[orig]
    # mappings learned on the (possibly shuffled) labels of the original points, scored on the true ones
    y_seen = poisoned.labels[orig]
    entry = {
        "acc_hungarian": 100 * clustering_accuracy(y, lab, hungarian_mapping(lab, y_seen, k)),
        "acc_majority": 100 * clustering_accuracy(y, lab, majority_vote_mapping(lab, y_seen, k)),
        "ari": adjusted_rand_score(y, lab),
        "nmi": normalized_mutual_info_score(y, lab),
        "centroid_shift": _match_centres(model.cluster_centers_, clean.cluster_centers_),
        "changed_cluster": int(changed_cluster(clean.labels_, lab).sum()),
        **{f"{m}_with_injected": v for m, v in
           _internal(poisoned.data, labels_all, config.silhouette_sample, seed).items()},
        **{f"{m}_original": v for m, v in
           _internal(poisoned.data[orig], lab, config.silhouette_sample, seed).items()},
    }  # fmt: skip
    if hasattr(model, "outliers_") and poisoned.n_injected:
        entry["defense_caught_injected"] = 100.0 * float(model.outliers_[~orig].mean())
    return entry


def _unit(
    dataset: str, attack: str, seed: int, X: np.ndarray, y: np.ndarray, config: PoisonConfig
) -> dict[str, Any]:
    """Every defense on the poisoned data. Those that need a contamination count run twice:
    told the true number injected (the oracle, under its own name) and told the number that the
    DBSCAN removal step flags (``<name>.no_oracle``), both clipped to [n_outliers or 1, n / 4]."""
    k = len(np.unique(y))
    clean = KMeans(k, n_init=3, random_state=seed).fit(X)
    poisoned = _attack(attack, X, y, config, seed)
    orig = ~poisoned.is_injected
    n_total = len(poisoned.data)
    removal = find_outliers(poisoned.data)
    n_flag = min(max(poisoned.n_injected, config.n_outliers), n_total // 4)
    n_estimated = min(max(int(removal.sum()), 1), n_total // 4)
    out: dict[str, Any] = {"n_injected": poisoned.n_injected, "n_estimated": n_estimated}
    if poisoned.n_injected:
        out["removal_caught_injected"] = 100.0 * float(removal[~orig].mean())
    for name in config.defenses:
        model = _defense(name, k, n_flag, n_total, seed).fit(poisoned.data)
        out[name] = _score(model, poisoned, y, clean, config, seed)
        if name in TOLD_COUNT:
            model = _defense(name, k, n_estimated, n_total, seed).fit(poisoned.data)
            out[f"{name}.no_oracle"] = _score(model, poisoned, y, clean, config, seed)
    return out


def _budget_unit(
    attack: str, budget: float, seed: int, X: np.ndarray, y: np.ndarray, config: PoisonConfig
) -> dict[str, Any]:
    """Plain k-means after ``attack`` injected round(budget * n) points (at least 1): accuracy
    (%, Hungarian mapping, as ``_score``) and ARI on the original points."""
    n = max(1, round(budget * len(X)))
    poisoned = inject(attack, X, y, n, plant=config.n_outliers, random_state=seed)
    if poisoned.n_injected != n:
        raise RuntimeError(f"{attack} injected {poisoned.n_injected} points, budget {n}")
    k = len(np.unique(y))
    model = KMeans(k, n_init=3, random_state=seed).fit(poisoned.data)
    lab = model.predict(poisoned.data)[~poisoned.is_injected]
    y_seen = poisoned.labels[~poisoned.is_injected]  # = y: these attacks only add points
    acc = 100 * clustering_accuracy(y, lab, hungarian_mapping(lab, y_seen, k))
    return {"n_injected": n, "acc_hungarian": acc, "ari": adjusted_rand_score(y, lab)}


def _summaries(
    results: dict[tuple[str, str], list[dict[str, Any]]], config: PoisonConfig
) -> dict[str, Any]:
    """Per data set / attack, defense and metric: mean and 95 % t half-width over the seeds
    (NaN seeds left out; fewer than two values give NaN), for the tables and pictures."""
    summary: dict[str, Any] = {}
    for (dataset, attack), reps in results.items():
        s: dict[str, Any] = {}
        defenses = [d for d in reps[0] if isinstance(reps[0][d], dict)]
        for defense in defenses:
            s[defense] = {}
            for metric in reps[0][defense]:
                mean, half = mean_and_half_width(
                    (r[defense].get(metric, np.nan) for r in reps), LEVEL, drop_nan=True,
                    min_values=2,
                )  # fmt: skip
                s[defense][metric] = {"mean": mean, "ci95": half}
        s["n_injected"] = float(np.mean([r["n_injected"] for r in reps]))
        s["n_estimated"] = float(np.mean([r.get("n_estimated", np.nan) for r in reps]))
        caught = [r["removal_caught_injected"] for r in reps if "removal_caught_injected" in r]
        if caught:
            mean, half = mean_and_half_width(caught, LEVEL)
            s["removal_caught_injected"] = {"mean": mean, "ci95": half}
        summary[f"{dataset}/{attack}"] = s
    return summary


def _flags(summary: dict[str, Any], config: PoisonConfig) -> list[dict[str, Any]]:
    """Internal metrics (computed with the injected points) that look *better* under attack."""
    flags = []
    for key, s in summary.items():
        dataset, attack = key.split("/")
        clean = summary.get(f"{dataset}/none")
        if attack == "none" or clean is None:
            continue
        for defense in config.defenses:
            for metric, sign in INTERNAL.items():
                a, c = (
                    s[defense][f"{metric}_with_injected"]["mean"],
                    clean[defense][f"{metric}_with_injected"]["mean"],
                )
                if np.isfinite(a) and np.isfinite(c) and sign * (a - c) > 0:
                    flags.append({"dataset": dataset, "attack": attack, "defense": defense, "metric": metric,
                                  "clean": c, "attacked": a})  # fmt: skip
    return flags


def _pictures(config: PoisonConfig, ctx: RunContext) -> None:
    for dataset in [d for d in config.datasets if d in ("iris", "breast-cancer")]:
        X, y = _load(dataset, config)
        pca = PCA(2, random_state=0).fit(X)
        panels = []
        for attack in config.attacks:
            p = _attack(attack, X, y, config, 0)
            km = KMeans(len(np.unique(y)), n_init=3, random_state=0).fit(p.data)
            panels.append({"title": attack, "xy": pca.transform(p.data), "labels": km.labels_, "injected": p.is_injected,
                           "centers": pca.transform(km.cluster_centers_.astype(np.float64))})  # fmt: skip
        plot_pca_panels(
            panels,
            ctx.path(f"pca-{dataset}"),
            f"{dataset}: k-means after each attack (PCA, seed 0)",
        )


def flip_ratio_sweep(
    X: Any,
    y: Any,
    ratios: Any = None,
    n_seeds: int = 10,
    seed_fraction: float = 0.2,
    level: float = 0.95,
    reliable_share: float = 0.8,
) -> dict[str, Any]:
    """Accuracy of the seeded k-means against the true labels for each flip ratio and seed.

    A seed has *collapsed* at a ratio when its accuracy there falls to the midpoint between its
    clean accuracy and chance (1 / n_classes) or below. Two readings of "the ratio at which the
    model collapses": ``collapse_ratio``, the mean over seeds of the first collapsed ratio (with
    its ``level`` confidence half-width), and ``reliable_ratio``, the smallest ratio at which at
    least ``reliable_share`` of the seeds have collapsed."""
    data, labels = check_xy(X, y)
    n_seeds = int(check_number("n_seeds", n_seeds, 1, integer=True))
    ratios = (
        np.round(np.arange(0.0, 1.0001, 0.1), 10)
        if ratios is None
        else np.asarray(ratios, dtype=float)
    )
    n_classes = len(np.unique(labels))
    acc = np.zeros((n_seeds, len(ratios)))
    for s in range(n_seeds):
        seeds = seed_sample(labels, seed_fraction, random_state=s)
        for j, ratio in enumerate(ratios):
            poisoned = seed_label_flip(data, seeds, float(ratio), random_state=1000 * s + j)
            pred = SeededKMeans().fit(data, poisoned.labels).labels_
            acc[s, j] = float(np.mean(pred == labels))
    collapsed = acc <= ((acc[:, :1] + 1.0 / n_classes) / 2)  # (seeds, ratios)
    collapse = [float(ratios[row.argmax()]) if row.any() else float("nan") for row in collapsed]
    share = collapsed.mean(0)
    reliable = np.flatnonzero(share >= reliable_share)
    mean, half = mean_and_half_width(collapse, level, drop_nan=True)
    acc_curve = curve(acc, level)
    return {"ratios": ratios.tolist(), "accuracy": acc.tolist(), "accuracy_mean": acc_curve["mean"],
            "accuracy_ci": acc_curve[ci_key(level)], "collapse_per_seed": collapse,
            "collapse_ratio": mean, "collapse_ci": half,
            "collapsed_share": share.tolist(), "reliable_share": reliable_share,
            "reliable_ratio": float(ratios[reliable[0]]) if len(reliable) else float("nan")}  # fmt: skip


def _sample_size(results: dict[str, Any], config: dict[str, Any], comparison_id: str) -> int:
    """Every interval is over the config's seeds."""
    return int(config["n_seeds"])


def _report_tables(results: dict[str, Any], config: dict[str, Any]) -> list[Table]:
    """k-means accuracy per dataset and attack, and each defense under mimicry."""
    summary = results["summary"]
    datasets = list(dict.fromkeys(k.split("/")[0] for k in summary))
    attacks = list(dict.fromkeys(k.split("/")[1] for k in summary))

    def cell(metric: dict[str, float] | None) -> str:
        return "-" if metric is None else f"{metric['mean']:.1f} ± {metric['ci95']:.1f}"

    grid = [[d] + [cell(summary.get(f"{d}/{a}", {}).get("kmeans", {}).get("acc_hungarian"))
                   for a in attacks] for d in datasets]  # fmt: skip
    tables = [Table(
        f"k-means accuracy in % (Hungarian mapping, mean ± 95 % t over {config['n_seeds']} seeds)",
        ("dataset", *attacks), grid,
    )]  # fmt: skip
    for d in datasets:
        mimicry = summary.get(f"{d}/mimicry")
        if not mimicry:
            continue
        defenses = [
            k for k in mimicry if isinstance(mimicry[k], dict) and "acc_hungarian" in mimicry[k]
        ]
        caught = [mimicry[k].get("defense_caught_injected") for k in defenses]
        tables.append(Table(
            f"{d}, mimicry: accuracy and injected points discarded by each defense (%)",
            ("", *defenses),
            [["accuracy"] + [f"{mimicry[k]['acc_hungarian']['mean']:.1f}" for k in defenses],
             ["injected discarded"] + ["-" if c is None else f"{c['mean']:.0f}" for c in caught]],
        ))  # fmt: skip
    return tables + _verdict_tables(results, config)


def _verdict_tables(results: dict[str, Any], config: dict[str, Any]) -> list[Table]:
    """Budget-matched attacks, oracle vs estimated contamination, and both flip-ratio readings."""
    by_id = {c["id"]: c for c in results["comparisons"]}
    summary = results["summary"]
    datasets = list(dict.fromkeys(k.split("/")[0] for k in summary))
    tables = []

    def cell(cid: str, digits: int = 1) -> str:
        c = by_id.get(cid)
        if c is None:
            return "-"
        return f"{c['ours']:.{digits}f} ± {c.get('ci95', float('nan')):.{digits}f}"

    budgets, attacks = config.get("budgets") or [], config.get("budget_attacks") or []
    if any(".budget_matched." in cid for cid in by_id):
        body = []
        for d in datasets:
            for a in attacks:
                body.append([f"`{d}.budget_matched.{a}`",
                             *(cell(f"{d}.budget_matched.{a}.b{b:g}") for b in budgets)])  # fmt: skip
        tables.append(Table(
            f"Budget-matched: k-means accuracy (%, mean ± 95 % t over {config['n_seeds']} seeds) "
            "with the same number of injected points for every attack",
            ("attack", *(f"b{b:g} = {b:.0%} of n" for b in budgets)), body,
            note="id = row id + '.b<budget>'.",
        ))  # fmt: skip
    oracle = [cid for cid in by_id if cid.endswith(".no_oracle")]
    if oracle:
        body = []
        for cid in oracle:
            base = cid.removesuffix(".no_oracle")
            d, attack = base.split(".")[:2]
            s = summary.get(f"{d}/{attack}", {})
            body.append([f"`{base}`", cell(f"{base}.oracle"), cell(cid),
                         f"{s.get('n_injected', float('nan')):.0f}",
                         f"{s.get('n_estimated', float('nan')):.1f}"])  # fmt: skip
        tables.append(Table(
            "Defenses told the true number of injected points (oracle) or the number the DBSCAN "
            "removal step flags (no_oracle): accuracy in %",
            ("dataset.attack.defense", "oracle", "no_oracle", "injected", "estimated (mean)"), body,
        ))  # fmt: skip
    flips = [d for d in datasets if f"flip_ratio.reliable.{d}" in by_id]
    if flips:
        body = [[d, f"{by_id[f'flip_ratio.first_collapse.{d}']['paper']:.1f}",
                 cell(f"flip_ratio.first_collapse.{d}", 2),
                 f"{by_id[f'flip_ratio.reliable.{d}']['ours']:.1f}"] for d in flips]  # fmt: skip
        tables.append(Table(
            "Seed-label flip ratio at which the seeded k-means collapses",
            ("dataset", "paper", "first collapse (mean ± 95 %)",
             f"reliable (>= {config.get('flip_reliable_share', 0.8):.0%} of seeds)"), body,
            note="ids `flip_ratio.first_collapse.<dataset>` and `flip_ratio.reliable.<dataset>`.",
        ))  # fmt: skip
    return tables


NO_ATTACK_NOTE = (
    "No network is attacked: every unit fits k-means and the defenses, so there are no "
    "image-steps to estimate."
)


@register(
    "poison-cluster",
    PoisonConfig,
    tables=_report_tables,
    sample_size=_sample_size,
    plan=lambda config: {"units": _plan_units(config), "attacks": [], "notes": [NO_ATTACK_NOTE]},
    description="Poison Cluster attacks x robust k-means defenses on Iris, breast cancer, digits, MNIST",
)
def run_poison(config: PoisonConfig, ctx: RunContext) -> dict[str, Any]:
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    budget_results: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    single: list[dict[str, Any]] = []  # rows that are already one statistic each
    sweeps: dict[str, Any] = {}
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {d: _load(d, config) for d in config.datasets}
    done = ctx.units(_jobs(data, config), desc="poison-cluster")
    for dataset in config.datasets:
        for attack in config.attacks:
            results[(dataset, attack)] = [
                done[f"{dataset}-{attack}-seed{s}"] for s in range(config.n_seeds)
            ]
        if dataset in PAPER_FLIP:
            sweep = done[f"{dataset}-flip-sweep"]
            sweeps[dataset] = sweep
            single.append(tidy_row(f"flip_ratio.first_collapse.{dataset}", sweep["collapse_ratio"],
                                   "ratio", PAPER_FLIP[dataset], ci95=sweep["collapse_ci"]))  # fmt: skip
            single.append(tidy_row(f"flip_ratio.reliable.{dataset}", sweep["reliable_ratio"],
                                   "ratio", PAPER_FLIP[dataset]))  # fmt: skip
        for budget in config.budgets:
            for attack in config.budget_attacks:
                budget_results[(dataset, attack, budget)] = [
                    done[f"{dataset}-budget{budget:g}-{attack}-seed{s}"] for s in range(config.n_seeds)
                ]  # fmt: skip
        reversal = done[f"{dataset}-reversal"]
        single.append(tidy_row(f"contextual_reversal.{dataset}.n_injected", float(reversal["n_injected"]),
                               "points", reversed=reversal["reversed"]))  # fmt: skip
    summary = _summaries(results, config)
    comparisons = (
        aggregate(single)
        + aggregate(_budget_rows(budget_results), LEVEL)
        + aggregate(_oracle_rows(results), LEVEL, drop_nan=True, min_values=2)
        + aggregate(_survival_and_clean_rows(summary, config))
    )
    for dataset in config.datasets:
        clean = summary.get(f"{dataset}/none", {}).get("kmeans")
        attacks: list[str] = [a for a in config.attacks if a != "none"]
        if clean and attacks:
            drop = [[summary[f"{dataset}/{a}"][d]["acc_hungarian"]["mean"] - summary[f"{dataset}/none"][d]["acc_hungarian"]["mean"]
                     for d in config.defenses] for a in attacks]  # fmt: skip
            plot_heatmap(drop, attacks, list(config.defenses), ctx.path(f"heatmap-{dataset}"),
                         f"{dataset}: accuracy change vs clean (points, Hungarian)")  # fmt: skip
    if sweeps:
        curves = {d: {"x": s["ratios"], "mean": [100 * v for v in s["accuracy_mean"]],
                      "ci": [100 * v for v in s["accuracy_ci"]], "mark": s["collapse_ratio"]} for d, s in sweeps.items()}  # fmt: skip
        plot_sweep(curves, ctx.path("flip-sweep"), "flip ratio of the seed labels", "accuracy (%)",
                   "Seeded k-means under seed-label flips (95% CI)")  # fmt: skip
    _pictures(config, ctx)
    return {"summary": summary, "flip_sweeps": sweeps, "improved_internal_metrics": _flags(summary, config),
            "comparisons": comparisons}  # fmt: skip


def _survival_and_clean_rows(summary: dict[str, Any], config: PoisonConfig) -> list[dict[str, Any]]:
    """``mimicry.survival.<dataset>`` and ``uniform_outliers.survival.<dataset>`` (% of the
    injected points the noise removal keeps, 100 - caught, with the caught share's 95 % CI) and
    ``clean.<dataset>.kmeans.acc_hungarian``: one row each, from the seed summary."""
    rows = []
    for dataset in config.datasets:
        for attack in ("mimicry", "uniform_outliers"):
            s = summary.get(f"{dataset}/{attack}", {}).get("removal_caught_injected")
            if s is not None:
                name = "mimicry.survival" if attack == "mimicry" else "uniform_outliers.survival"
                rows.append(tidy_row(f"{name}.{dataset}", 100.0 - s["mean"], ci95=s["ci95"]))
        clean = summary.get(f"{dataset}/none", {}).get("kmeans")
        if clean:
            rows.append(tidy_row(f"clean.{dataset}.kmeans.acc_hungarian",
                                 clean["acc_hungarian"]["mean"]))  # fmt: skip
    return rows


def _jobs(
    data: Mapping[str, tuple[np.ndarray, np.ndarray]], config: PoisonConfig
) -> dict[str, partial[dict[str, Any]]]:
    """Every unit of the experiment as a picklable job (seeds come from the key), so an executor
    can run them in any order, anywhere: per dataset the attack x seed units, the flip sweep, the
    budget-matched units and the contextual reversal."""
    jobs: dict[str, partial[dict[str, Any]]] = {}
    for dataset, (X, y) in data.items():
        for attack in config.attacks:
            for seed in range(config.n_seeds):
                jobs[f"{dataset}-{attack}-seed{seed}"] = partial(
                    _unit, dataset, attack, seed, X, y, config
                )
        if dataset in PAPER_FLIP:
            jobs[f"{dataset}-flip-sweep"] = partial(flip_ratio_sweep, X, y, None, config.n_seeds,
                                                    config.flip_seed_fraction, 0.95, config.flip_reliable_share)  # fmt: skip
        for budget in config.budgets:
            for attack in config.budget_attacks:
                for seed in range(config.n_seeds):
                    jobs[f"{dataset}-budget{budget:g}-{attack}-seed{seed}"] = partial(
                        _budget_unit, attack, budget, seed, X, y, config)  # fmt: skip
        jobs[f"{dataset}-reversal"] = partial(_reversal, X, y)
    return jobs


def _plan_units(config: PoisonConfig) -> dict[str, int]:
    """Units per dataset (``advlab plan``); no network attack, so no image-steps."""
    per_dataset = (
        len(config.attacks) + len(config.budgets) * len(config.budget_attacks)
    ) * config.n_seeds
    return {f"{d}: attack x seed, budget x seed, sweeps": per_dataset + 1 + (d in PAPER_FLIP)
            for d in config.datasets}  # fmt: skip


def _budget_rows(
    budget_results: dict[tuple[str, str, float], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """``<dataset>.budget_matched.<attack>.b<budget>``: k-means accuracy (%), one row per seed,
    with the same number of injected points for every attack."""
    return [tidy_row(f"{dataset}.budget_matched.{attack}.b{budget:g}", r["acc_hungarian"],
                     n_injected=reps[0]["n_injected"])
            for (dataset, attack, budget), reps in budget_results.items() for r in reps]  # fmt: skip


def _oracle_rows(results: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """``<dataset>.<attack>.<defense>.oracle`` and ``.no_oracle``: the accuracy (%) of each
    defense told the true number of injected points and told the DBSCAN estimate, one row per
    seed."""
    rows = []
    for (dataset, attack), reps in results.items():
        if attack == "none":  # nothing injected: no true count to tell
            continue
        for defense in TOLD_COUNT:
            if defense not in reps[0] or f"{defense}.no_oracle" not in reps[0]:
                continue
            for told, key in (("oracle", defense), ("no_oracle", f"{defense}.no_oracle")):
                rows += [tidy_row(f"{dataset}.{attack}.{defense}.{told}",
                                  r[key].get("acc_hungarian", np.nan)) for r in reps]  # fmt: skip
    return rows


def _reversal(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    try:
        result = contextual_reversal(X, y, max_rounds=30, random_state=0)
    except ValueError as exc:  # no outlier to start from: nothing to reverse
        return {"reversed": False, "n_injected": 0, "purged_normal": 0, "note": str(exc)}
    return {"reversed": bool(result.meta["reversed"]), "n_injected": result.n_injected,
            "purged_normal": int(result.meta["purged_normal"].sum())}  # fmt: skip
