from __future__ import annotations

import numpy as np
import pytest

from advlab.attacks.poisoning import (
    bridge_points,
    contextual_reversal,
    find_outliers,
    gaussian_noise,
    label_shuffle,
    mimicry,
    seed_label_flip,
    subtle_outliers,
    uniform_outliers,
)
from advlab.cluster import KMeans
from advlab.cluster.seeded import SeededKMeans, seed_sample
from advlab.data import load_dataset
from advlab.defenses import KMeansMinusMinus, NKMeans, SanitizedKMeans, TrimmedKMeans
from advlab.experiments.builtin.poison_cluster import flip_ratio_sweep


@pytest.fixture(scope="module")
def iris():
    d = load_dataset("iris", "all")
    return (d.data - d.data.mean(0)) / d.data.std(0), d.labels


@pytest.mark.parametrize(
    ("attack", "kwargs", "n_added"),
    [
        (uniform_outliers, {"n": 7}, 7),
        (subtle_outliers, {"n": 5}, 5),
        (bridge_points, {"fraction": 0.2}, 30),
        (mimicry, {"n_inject": 12}, 12),
    ],
)
def test_injections_flag_exactly_the_injected_points_and_are_seeded(iris, attack, kwargs, n_added):
    X, y = iris
    a = attack(X, y, random_state=0, **kwargs)
    b = attack(X, y, random_state=0, **kwargs)
    c = attack(X, y, random_state=1, **kwargs)
    assert a.data.shape == (150 + n_added, 4) and a.n_injected == n_added
    assert np.array_equal(a.is_injected, np.r_[np.zeros(150, bool), np.ones(n_added, bool)])
    assert np.array_equal(a.original, X)  # originals untouched
    assert np.array_equal(a.labels[:150], y)
    assert np.array_equal(a.data, b.data) and not np.array_equal(a.data, c.data)


def test_uniform_outliers_lie_outside_the_data_box(iris):
    X, y = iris
    p = uniform_outliers(X, y, n=50, random_state=0)
    new = p.data[p.is_injected]
    assert ((new < X.min(0)) | (new > X.max(0))).any(1).all()


def test_subtle_outliers_follow_the_covariance(iris):
    X, y = iris
    p = subtle_outliers(X, y, n=1500, scale=2.0, random_state=0)
    new = p.data[p.is_injected]
    np.testing.assert_allclose(np.cov(new, rowvar=False), 4 * np.cov(X, rowvar=False), atol=0.5)


def test_perturbation_attacks_inject_nothing(iris):
    X, y = iris
    noisy = gaussian_noise(X, y, sigma=0.2, random_state=0)
    assert noisy.n_injected == 0 and np.std(noisy.data - X) == pytest.approx(0.2, rel=0.1)
    shuffled = label_shuffle(X, y, fraction=0.4, random_state=0)
    assert np.array_equal(shuffled.data, X)
    assert np.array_equal(np.sort(shuffled.labels), np.sort(y))  # a permutation
    assert (shuffled.labels != y).sum() <= 60


def test_bridge_points_pull_the_two_closest_clusters_together():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [20.0, 10.0]])
    X = np.vstack([c + rng.normal(size=(200, 2)) for c in centres])
    y = np.repeat([0, 1, 2], 200)
    poisoned = bridge_points(X, y, fraction=0.5, noise=0.3, random_state=0)
    assert poisoned.n_injected == 300
    new = poisoned.data[poisoned.is_injected]
    assert (
        np.all((new[:, 0] > -1.5) & (new[:, 0] < 6.5)) and np.abs(new[:, 1]).max() < 4.5
    )  # between blobs 0 and 1

    def gap(data):
        c = KMeans(3, n_init=5, random_state=0).fit(data).cluster_centers_
        c = c[np.argsort(c[:, 0])]
        return np.linalg.norm(c[0] - c[1])

    assert gap(poisoned.data) < 0.8 * gap(X)
    from advlab.metrics import silhouette

    before = silhouette(X, KMeans(3, random_state=0).fit_predict(X))
    after = silhouette(poisoned.data, KMeans(3, random_state=0).fit_predict(poisoned.data))
    assert after < before - 0.1


def test_mimicry_points_survive_dbscan_while_uniform_outliers_do_not(iris):
    X, y = iris
    assert find_outliers(X).sum() > 0
    camo = mimicry(X, y, random_state=0)
    kept = ~find_outliers(camo.data)
    survival = kept[camo.is_injected].mean()
    plain = uniform_outliers(X, y, n=camo.n_injected, margin=1.0, random_state=0)
    plain_survival = (~find_outliers(plain.data))[plain.is_injected].mean()
    assert survival > 0.8 and plain_survival < 0.3
    # the original outliers, now surrounded by look-alikes, mostly stop being purged
    outliers = camo.meta["outliers"]
    assert kept[:150][outliers].mean() > 0.5


def test_mimicry_plants_outliers_when_there_are_none():
    d = load_dataset("digits", "all")  # 64-D: DBSCAN with minPts = 128 flags nothing
    assert not find_outliers(d.data).any()
    with pytest.raises(ValueError, match="no outliers"):
        mimicry(d.data, d.labels, random_state=0)
    p = mimicry(d.data, d.labels, random_state=0, plant_if_none=4)
    assert p.meta["planted"] == 4 and p.data.shape[0] > 1797 + 4
    assert np.array_equal(p.original, d.data.astype(np.float64)) and p.is_injected[1797:].all()


def test_contextual_reversal_reports_when_normal_points_get_purged():
    d = load_dataset(
        "blobs", n_samples=300, centers=2, n_features=2, cluster_std=1.0, random_state=0
    )
    X = np.vstack([d.data, [[15.0, 15.0], [15.5, 14.5], [-14.0, 13.0]]])
    y = np.r_[d.labels, [0, 0, 1]]
    result = contextual_reversal(X, y, step=40, max_rounds=15, random_state=0)
    assert result.meta["reversed"]
    assert result.meta["n_injected_at_reversal"] == result.n_injected > 0
    assert result.meta["purged_normal"].sum() >= 1


def test_seeded_kmeans_and_label_flip(iris):
    X, y = iris
    partial = seed_sample(y, 0.2, random_state=0)
    assert (partial >= 0).sum() == 30 and set(np.unique(partial[partial >= 0])) == {0, 1, 2}
    clean = SeededKMeans().fit(X, partial)
    assert np.mean(clean.labels_ == y) > 0.75
    flipped = seed_label_flip(X, partial, 0.5, random_state=0)
    changed = flipped.labels != partial
    assert changed.sum() == 15 and np.all(partial[changed] >= 0)
    assert np.array_equal(np.flatnonzero(changed), flipped.meta["flipped"])
    full_flip = SeededKMeans().fit(X, seed_label_flip(X, partial, 1.0, random_state=0).labels)
    assert np.mean(full_flip.labels_ == y) < 0.4


def test_flip_ratio_sweep_finds_a_collapse(iris):
    X, y = iris
    sweep = flip_ratio_sweep(X, y, n_seeds=4)
    acc = np.asarray(sweep["accuracy_mean"])
    assert acc[0] > 0.75 and acc[-1] < 0.4
    assert 0.3 <= sweep["collapse_ratio"] <= 1.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda X, y: label_shuffle(X, y, fraction=1.5), r"\[0, 1\]"),
        (lambda X, y: seed_label_flip(X, y, ratio=-0.1), r"\[0, 1\]"),
        (lambda X, y: bridge_points(X, y, fraction=2.0), r"\[0, 1\]"),
        (lambda X, y: uniform_outliers(X, y, n=10_000), "exceeds"),
        (lambda X, y: uniform_outliers(X, y, n=-1), "non-negative"),
        (lambda X, y: bridge_points(X, y, n_clusters=500), "n_clusters"),
        (lambda X, y: gaussian_noise(X[:, :1].ravel(), y), "shape"),
        (lambda X, y: gaussian_noise(np.where(X > 1, np.nan, X), y), "NaN"),
        (lambda X, y: uniform_outliers(X, np.array(list("abc"))[y]), "LabelEncoder"),
        (lambda X, y: gaussian_noise(X, y + 0.5), "integer class labels"),
        (lambda X, y: mimicry(X, y, detector_params={"epsx": 1}), "'epsx'"),
        (lambda X, y: mimicry(X, y, detector="lof", detector_params={"k": 3}), "'k'"),
    ],
)
def test_bad_input(iris, call, message):
    X, y = iris
    with pytest.raises(ValueError, match=message):
        call(X, y)


# ------------------------------------------------------------------ defenses


@pytest.fixture(scope="module")
def planted():
    """Three tight blobs and 15 far outliers that drag plain k-means centres."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [3.0, 5.0]])
    X = np.vstack([c + 0.5 * rng.normal(size=(100, 2)) for c in centres])
    outliers = rng.uniform(-40, 40, size=(15, 2)) + np.array([60.0, 60.0])
    return np.vstack([X, outliers]).astype(np.float32), centres


def _centre_error(found, true):
    return max(np.linalg.norm(found - t, axis=1).min() for t in true)


@pytest.mark.parametrize(
    "defense",
    [
        lambda: KMeansMinusMinus(3, n_outliers=15, random_state=0),
        lambda: TrimmedKMeans(3, trim=0.06, n_init=5, random_state=0),
        lambda: NKMeans(3, n_outliers=15, random_state=0),
        lambda: SanitizedKMeans(3, detector="lof", random_state=0),
        lambda: SanitizedKMeans(3, detector="isolation_forest", random_state=0),
    ],
)
def test_defenses_recover_clean_centres_where_kmeans_fails(planted, defense):
    X, true = planted
    plain = KMeans(3, n_init=5, random_state=0).fit(X)
    assert _centre_error(plain.cluster_centers_, true) > 2.0
    model = defense().fit(X)
    assert _centre_error(model.cluster_centers_, true) < 0.5
    assert model.outliers_.shape == (315,) and model.outliers_[300:].mean() > 0.9
    assert np.array_equal(model.predict(X), model.labels_)


def test_defense_bad_input(planted):
    X, _ = planted
    with pytest.raises(ValueError, match="trim"):
        TrimmedKMeans(3, trim=1.2).fit(X)
    with pytest.raises(ValueError, match="n_outliers"):
        NKMeans(3, n_outliers=0).fit(X)
    with pytest.raises(ValueError, match="2 \\* n_outliers"):
        NKMeans(3, n_outliers=200).fit(X)
    with pytest.raises(ValueError, match="detector"):
        SanitizedKMeans(3, detector="oracle").fit(X)
    with pytest.raises(ValueError, match="exceeds"):
        KMeansMinusMinus(400, n_outliers=10).fit(X)
