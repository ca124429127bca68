"""The clustering attacks of the literature do what their papers say, on small synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import DBSCAN, AgglomerativeClustering, SpectralClustering
from sklearn.datasets import load_digits, make_blobs
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import minmax_scale

from advlab.attacks.clustering import (
    BiggioBridge,
    BiggioObfuscation,
    Chhabra,
    Cina,
    CrussellMerge,
    bridge_count,
    merge_count,
    merged,
)
from advlab.cluster import KMeans
from advlab.metrics import changed_cluster, co_membership_distance, mutual_info_adjusted, spillover
from tests.conftest import needs_fashion


def two_blobs(gap: float = 6.0, n: int = 60, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack(
        [rng.normal(0, 0.3, (n, 2)), rng.normal(0, 0.3, (n, 2)) + np.array([gap, 0.0])]
    )


def unit_blobs(seed: int = 1) -> np.ndarray:
    X, _ = make_blobs(300, n_features=8, centers=2, cluster_std=3.0, random_state=seed)
    return np.clip(minmax_scale(X), 0, 1)


def warm_kmeans(X: np.ndarray) -> KMeans:
    return KMeans(2, init=KMeans(2, n_init=5, random_state=0).fit(X).cluster_centers_)


# --- metrics -------------------------------------------------------------------------------


def test_changed_cluster_matches_ids_and_counts_moves() -> None:
    ref = np.array([0, 0, 0, 1, 1, 1])
    assert not changed_cluster(ref, 1 - ref).any()  # renamed ids: nothing moved
    moved = np.array([1, 1, 0, 0, 0, 0])  # ids swapped, point 2 moved
    assert changed_cluster(ref, moved).tolist() == [False, False, True, False, False, False]
    assert spillover(ref, moved, touched=[2]) == 0


def test_co_membership_distance_equals_the_matrix_formula() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 40), rng.integers(0, 4, 40)
    Ya, Yb = np.eye(3)[a], np.eye(4)[b]
    expected = np.linalg.norm(Ya @ Ya.T - Yb @ Yb.T) / 40
    assert co_membership_distance(a, b) == pytest.approx(expected)
    assert co_membership_distance(a, a) == 0.0


# --- batched warm-started k-means -----------------------------------------------------------


def test_fit_predict_many_equals_one_fit_per_dataset() -> None:
    X = unit_blobs()
    km = warm_kmeans(X)
    rng = np.random.default_rng(0)
    batch = np.stack(
        [
            np.clip(X + rng.normal(0, 0.2, X.shape) * (rng.random(X.shape) < 0.1), 0, 1)
            for _ in range(6)
        ]
    )
    many = km.fit_predict_many(batch)
    assert many.shape == (6, len(X))
    for x, labels in zip(batch, many, strict=True):
        np.testing.assert_array_equal(labels, km.fit_predict(x))
    with pytest.raises(ValueError, match="shape"):
        km.fit_predict_many(X)


# --- Cina et al. ----------------------------------------------------------------------------


def test_cina_best_so_far_never_worsens_and_lowers_agreement() -> None:
    X = unit_blobs()
    result = Cina(warm_kmeans(X), s=0.4, delta=0.5, generations=25, population=3).attack(
        X, random_state=0
    )
    assert np.all(np.diff(result.objective) <= 1e-12)  # best so far: monotone
    assert mutual_info_adjusted(result.clean_labels, result.labels) < 0.6  # 0.42 when written
    assert np.abs(result.delta).max() <= 0.5 + 1e-12
    assert result.data.min() >= 0 and result.data.max() <= 1  # box kept
    untouched = np.setdiff1d(np.arange(len(X)), result.touched)
    np.testing.assert_array_equal(result.data[untouched], X[untouched])
    assert len(result.touched) == round(
        0.4 * (result.clean_labels == result.clean_labels[result.touched[0]]).sum()
    )
    assert result.n_refits == 1 + 25 * 3


def test_cina_is_reproducible_under_a_seed_and_attacks_any_clusterer() -> None:
    X = unit_blobs()[:120]
    runs = [Cina(AgglomerativeClustering(2, linkage="ward"), s=5, delta=0.3, generations=5).attack(X, random_state=3)
            for _ in range(2)]  # fmt: skip
    np.testing.assert_array_equal(runs[0].data, runs[1].data)
    for victim in (SpectralClustering(2, affinity="nearest_neighbors", random_state=0),
                   GaussianMixture(2, random_state=0)):  # fmt: skip
        result = Cina(victim, s=5, delta=0.2, generations=2).attack(X, random_state=0)
        assert result.labels.shape == (len(X),) and result.n_refits == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"s": 0}, "s must"), ({"delta": -0.1}, "delta"), ({"objective": "f1"}, "objective"),
     ({"generations": 0}, "generations"), ({"mutation_rate": 2}, "mutation_rate"),
     ({"box": (1, 0)}, "box")],
)  # fmt: skip
def test_cina_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Cina(KMeans(2), **kwargs)


def test_attacks_refuse_a_victim_without_fit_predict_and_bad_data() -> None:
    with pytest.raises(TypeError, match="fit_predict"):
        Cina(object())
    X = unit_blobs()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Cina(KMeans(2)).attack(X)
    for attack in (Cina(KMeans(2)), Chhabra(KMeans(2))):  # clipping would exceed the budget
        with pytest.raises(ValueError, match=r"X ranges over \[.*\], outside box=\(0.0, 1.0\)"):
            attack.attack(unit_blobs() * 3)
    with pytest.raises(ValueError, match="points"):
        Cina(KMeans(2), s=10_000).attack(unit_blobs())


# --- Chhabra et al. -------------------------------------------------------------------------


def test_chhabra_spills_over_with_budget_and_keeps_its_point() -> None:
    """A small cluster A, a large B and one point p of B near the boundary: moving A's point
    towards B by about 0.19 drags A's centroid by 0.04 and p spills over into A, while the
    moved point stays in A (worked out in the comments); a tiny budget spills nothing."""
    rng = np.random.default_rng(0)
    A = np.array([0.3, 0.5]) + rng.uniform(-0.01, 0.01, (5, 2))  # c_A ~ 0.3
    B = np.array([0.7, 0.5]) + rng.uniform(-0.01, 0.01, (20, 2))  # c_B ~ 0.69 with p
    X = np.vstack([A, B, [[0.51, 0.5]]])  # p: boundary (0.3 + 0.69) / 2 ~ 0.496 < 0.51
    km = warm_kmeans(X)
    big = Chhabra(km, budget=0.5, n_random=10).attack(X, random_state=0)
    tiny = Chhabra(km, budget=1e-6, n_random=2).attack(X, random_state=0)
    assert big.meta["spillover"] >= 1 and tiny.meta["spillover"] == 0
    t = int(big.touched[0])
    assert not changed_cluster(big.clean_labels, big.labels)[t]  # suspicion-free
    assert spillover(big.clean_labels, big.labels, [t]) == big.meta["spillover"]
    assert np.abs(big.delta).max() <= 0.5 + 1e-12
    assert np.all(np.diff(big.objective) >= 0)
    again = Chhabra(km, budget=0.5, n_random=10).attack(X, random_state=0)
    np.testing.assert_array_equal(big.data, again.data)
    with pytest.raises(ValueError, match="budget"):
        Chhabra(km, budget=0)


def test_chhabra_takes_a_budget_per_feature() -> None:
    """The spill-over setting of the test above: a budget of equal entries gives the scalar
    attack's data; with the second feature frozen (budget 0) the point moves along the first
    only, within its budget, and still spills over (the boundary lies across the first);
    freezing the first instead spills nothing; a budget of the wrong length is named."""
    rng = np.random.default_rng(0)
    A = np.array([0.3, 0.5]) + rng.uniform(-0.01, 0.01, (5, 2))
    B = np.array([0.7, 0.5]) + rng.uniform(-0.01, 0.01, (20, 2))
    X = np.vstack([A, B, [[0.51, 0.5]]])
    km = warm_kmeans(X)
    scalar = Chhabra(km, budget=0.5, n_random=10).attack(X, random_state=0)
    equal = Chhabra(km, budget=[0.5, 0.5], n_random=10).attack(X, random_state=0)
    np.testing.assert_array_equal(scalar.data, equal.data)
    along = Chhabra(km, budget=[0.5, 0.0], n_random=10).attack(X, random_state=0)
    assert along.delta[0, 1] == 0.0 and abs(along.delta[0, 0]) <= 0.5
    assert along.meta["spillover"] >= 1 and along.meta["budget"] == [0.5, 0.0]
    across = Chhabra(km, budget=[0.0, 0.5], n_random=10).attack(X, random_state=0)
    assert across.meta["spillover"] == 0
    with pytest.raises(ValueError, match=r"budget has shape \(3,\), X has 2 features"):
        Chhabra(km, budget=[0.5, 0.5, 0.5]).attack(X, random_state=0)
    with pytest.raises(ValueError, match="budget is 0 for every feature"):
        Chhabra(km, budget=[0.0, 0.0])


# --- Biggio et al. --------------------------------------------------------------------------


def test_biggio_bridge_merges_single_linkage_clusters_at_the_predicted_count() -> None:
    X = two_blobs()
    victim = AgglomerativeClustering(n_clusters=None, distance_threshold=0.9, linkage="single")
    gap = BiggioBridge(victim, n_points=0).attack(X).meta["gap"]
    m = bridge_count(gap, 0.9)
    assert m > 2
    short = BiggioBridge(victim, n_points=m - 1).attack(X)
    enough = BiggioBridge(victim, n_points=m).attack(X)
    assert not merged(short.clean_labels, short.original_labels, *short.meta["clusters"])
    assert merged(enough.clean_labels, enough.original_labels, *enough.meta["clusters"])
    assert enough.n_injected == m and enough.data.shape == (len(X) + m, 2)


def test_biggio_greedy_bridge_raises_the_clustering_distance() -> None:
    X = np.vstack([two_blobs(), two_blobs(seed=1)[:60] + np.array([3.0, 5.0])])
    victim = AgglomerativeClustering(n_clusters=3, linkage="single")
    result = BiggioBridge(victim, n_points=3, strategy="best").attack(X)
    assert result.objective[-1] > 0.1  # three blobs: a bridge merges two, another one splits
    assert result.objective[-1] == pytest.approx(
        co_membership_distance(result.clean_labels, result.original_labels)
    )


def test_biggio_obfuscation_hides_a_point_with_the_smallest_move() -> None:
    X = two_blobs()
    victim = AgglomerativeClustering(n_clusters=None, distance_threshold=0.9, linkage="single")
    target = int(victim.fit_predict(X)[100])
    result = BiggioObfuscation(victim, target).attack(X, index=0)
    assert result.meta["hidden"] and 0 < result.meta["a"] < 1
    assert result.labels[0] == np.bincount(result.labels[60:]).argmax()


# --- Crussell & Kegelmeyer ------------------------------------------------------------------


@pytest.mark.parametrize("min_samples", [3, 5, 8])
def test_crussell_merges_dbscan_clusters_at_the_predicted_count(min_samples: int) -> None:
    X = two_blobs(gap=5.0)
    victim = DBSCAN(eps=0.45, min_samples=min_samples)
    result = CrussellMerge(victim).attack(X)
    assert result.meta["merged"] and result.n_injected == result.meta["predicted"]
    assert result.meta["predicted"] == merge_count(result.meta["gap"], 0.45, min_samples)
    fewer = CrussellMerge(victim, n_points=result.meta["predicted"] - 1).attack(X)
    assert not fewer.meta["merged"]


def test_merge_count_formula_and_errors() -> None:
    assert merge_count(1.0, 0.45, 5) == 4  # r = 2: ceil(2 / 0.45) - 1
    assert merge_count(0.3, 0.45, 3) == 0
    with pytest.raises(ValueError, match="eps"):
        merge_count(1.0, 0.0, 5)
    with pytest.raises(TypeError, match="DBSCAN-like"):
        CrussellMerge(KMeans(2))
    with pytest.raises(ValueError, match=r"clusters=\(1, 1\) must be two distinct clusters"):
        CrussellMerge(DBSCAN(), clusters=(1, 1))


def test_each_attack_counts_the_fits_it_makes() -> None:
    """``queries(k)``, what advlab plan counts, is the number of victim fits ``attack`` makes."""
    X, _ = make_blobs(90, centers=3, random_state=0)
    km = KMeans(3, n_init=2, random_state=0)
    attacks = [
        Cina(km, s=0.2, box=None, generations=4, population=3),
        Chhabra(km, budget=0.5, box=None, n_line=5, n_random=3, batch=2),
        BiggioBridge(km, n_points=3),
        BiggioBridge(km, n_points=3, strategy="best"),  # 3 pairs of clusters per point
        CrussellMerge(DBSCAN(eps=0.45, min_samples=3)),
    ]
    for attack in attacks:
        data = two_blobs(gap=5.0) if isinstance(attack, CrussellMerge) else X
        attack.attack(data, random_state=0)
        assert attack.n_refits == attack.queries(3), type(attack).__name__
    assert [a.queries(3) for a in attacks] == [13, 14, 2, 11, 2]


def test_attacks_work_on_real_digits() -> None:
    digits = load_digits()
    X = digits.data[np.isin(digits.target, [1, 4])] / 16
    result = Cina(warm_kmeans(X), s=0.1, delta=0.3, generations=3, population=2).attack(
        X, random_state=0
    )
    assert result.delta.shape == (len(result.touched), 64)


# --- the experiment ---------------------------------------------------------------------------


TINY = {
    "n_per_class": 40, "grid_s": [0.2], "grid_delta": [0.3, 1.0], "clusterers": ["kmeans", "ward"],
    "generations": 3, "cases": ["digits-1v4"], "case_clusterers": ["ward"], "chhabra_rounds": 2,
    "merge_datasets": ["digits"], "merge_points": 3, "merge_quantiles": [0.5, 0.95], "robust": ["kmeans--", "algorithm1"],
    "transfer_models": ["linear-svm"]}  # fmt: skip


@needs_fashion
def test_clustering_attacks_tiny_run(tmp_path: Path) -> None:
    from advlab.experiments import Cache, get_experiment, run_experiment, validate_config

    exp = get_experiment("clustering-attacks")
    config = validate_config(exp.config_cls, TINY)
    results = run_experiment(exp, config, tmp_path / "run", Cache(tmp_path / "c"), quiet=True)
    ids = {c["id"]: c for c in results["comparisons"]}
    for name in ("cina.fmnist-6v9.kmeans.s0.2.delta0.3.ami", "cina.fmnist-6v9.ward.s0.2.delta1.ami",
                 "chhabra.digits-1v4.ward.spillover", "cina.digits-1v4.ward.linf",
                 "biggio.digits-1v4.q50.merge_count", "crussell.digits-1v4.q95.merge_count",
                 "cina.robust.algorithm1.ami", "chhabra.robust.kmeans--.spillover",
                 "cina.transfer.linear-svm"):  # fmt: skip
        assert name in ids, name
    assert 0.0 <= ids["cina.fmnist-6v9.kmeans.s0.2.delta0.3.ami"]["ours"] <= 1.0
    assert ids["chhabra.digits-1v4.ward.linf"]["ours"] <= 0.5 + 1e-9  # the budget
    curve = results["merges"]["digits"]["crussell.q50"]
    assert curve["merged"][curve["m"].index(curve["merge_count"])]
    for name in ("cina-ami-grid.png", "spillover-examples.png", "merge-curves.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000
    tables = exp.tables(results, config.model_dump())
    assert [t.title[:3] for t in tables] == ["(a)", "(a)", "(b)", "(c)", "(d)", "tra"]
