from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SKKMeans
from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus
from sklearn.exceptions import NotFittedError

from advlab.cluster import KMeans, elbow, find_knee, kmeans_plusplus
from advlab.data import load_dataset
from tests.conftest import needs_mnist


@pytest.fixture(scope="module")
def blobs():
    return load_dataset(
        "blobs", n_samples=3000, centers=6, n_features=8, cluster_std=2.0, random_state=1
    )


@pytest.fixture(scope="module")
def mnist_train():
    return load_dataset("mnist", "train")


@pytest.mark.parametrize("max_iter", [1, 3, 10, 300])
@pytest.mark.parametrize("bounds", ["elkan", "hamerly", "none", "sklearn", None])
def test_matches_sklearn_from_same_init_on_blobs(blobs, max_iter, bounds):
    init = blobs.data[::500][:6]
    ours = KMeans(6, init=init, max_iter=max_iter, tol=0.0, bounds=bounds).fit(blobs.data)
    ref = SKKMeans(6, init=init, n_init=1, max_iter=max_iter, tol=0.0, algorithm="lloyd").fit(
        blobs.data
    )
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, atol=1e-4)
    assert ours.n_iter_ == ref.n_iter_
    assert np.array_equal(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)


@needs_mnist
@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_matches_sklearn_on_mnist_subset(mnist_train, tol):
    X = mnist_train.data[:5000]
    init = X[np.random.default_rng(0).choice(5000, 40, replace=False)]
    ours = KMeans(40, init=init, max_iter=15, tol=tol).fit(X)
    ref = SKKMeans(40, init=init, n_init=1, max_iter=15, tol=tol, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, atol=1e-4)
    assert ours.n_iter_ == ref.n_iter_
    assert (ours.labels_ == ref.labels_).mean() > 0.999
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-4)


@pytest.mark.parametrize("mode", ["elkan", "hamerly"])
def test_bounds_do_not_change_the_result_but_save_work(blobs, mode):
    X = np.concatenate([blobs.data, blobs.data * 0.5 + 3.0])
    a = KMeans(30, random_state=3, bounds=mode).fit(X)
    b = KMeans(30, random_state=3, bounds=False).fit(X)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, atol=1e-5)
    assert np.array_equal(a.labels_, b.labels_) and a.n_iter_ == b.n_iter_
    assert a.bounds_ == mode and b.bounds_ == "none"
    assert a.distance_rows_ < 0.8 * b.distance_rows_


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["elkan", "hamerly", "none", "sklearn"])
def test_every_bound_gives_lloyds_labels_on_hard_data(mode, dtype):
    """Uniform data (many points near cluster boundaries, centres moving for many
    iterations) and heavy duplicates: each bound's labels equal plain Lloyd's at every
    step count, float32 and float64. The initial centres are distinct rows: two identical
    centres tie exactly for every point near them, and which one a GEMM-based E-step picks
    then depends on the machine's BLAS kernels (on one CPU here scikit-learn and advlab split
    such a tie differently, on another they did not), so no label comparison is defined."""
    rng = np.random.default_rng(0)
    uniform = rng.uniform(size=(3000, 5)).astype(dtype)
    duplicates = uniform[rng.integers(0, 100, size=3000)]
    for X in (uniform, duplicates):
        distinct = np.unique(X, axis=0)
        init = distinct[rng.choice(len(distinct), 40, replace=False)]
        for max_iter in (2, 8, 40):
            a = KMeans(40, init=init, max_iter=max_iter, tol=0.0, bounds=mode).fit(X)
            ref = SKKMeans(40, init=init, n_init=1, max_iter=max_iter, tol=0.0).fit(X)
            assert (a.labels_ == ref.labels_).mean() >= 0.999, (mode, max_iter)
            assert a.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)


def test_choose_bounds_rule():
    from advlab.cluster.kmeans import choose_bounds

    assert choose_bounds(60000, 784, 856) == "elkan"
    assert choose_bounds(60000, 784, 10) == "none"  # few clusters: bounds do not pay
    assert choose_bounds(60000, 10, 856) == "elkan"
    assert choose_bounds(60000, 50, 100) == "hamerly"
    assert choose_bounds(60000, 2, 100) == "sklearn"  # small k*d on CPU: scikit-learn's loop
    assert choose_bounds(60000, 2, 100, cpu=False) == "hamerly"  # never on a GPU
    assert choose_bounds(10000, 10, 195) == "sklearn"  # small n, moderate k*d
    assert choose_bounds(60000, 2, 856) == "hamerly"  # d < 8: Elkan's bounds do not pay
    assert choose_bounds(10**7, 784, 856) == "hamerly"  # Elkan's n*k bounds would not fit


def test_seeded_runs_are_identical_and_seeds_matter(blobs):
    a = KMeans(12, random_state=5).fit(blobs.data)
    b = KMeans(12, random_state=5).fit(blobs.data)
    c = KMeans(12, random_state=6).fit(blobs.data)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_) and np.array_equal(
        a.labels_, b.labels_
    )
    assert not np.array_equal(a.cluster_centers_, c.cluster_centers_)


@pytest.mark.parametrize("algorithm", ["greedy", "parallel"])
def test_kmeanspp_seeding_quality_on_blobs_matches_sklearn(blobs, algorithm):
    ours, ref = [], []
    for seed in range(5):
        centres, idx = kmeans_plusplus(blobs.data, 20, random_state=seed, init_algorithm=algorithm)
        assert np.array_equal(centres, blobs.data[idx]) and len(set(idx)) == 20
        ours.append(_inertia(blobs.data, centres))
        ref.append(_inertia(blobs.data, sk_kmeans_plusplus(blobs.data, 20, random_state=seed)[0]))
    assert np.mean(ours) == pytest.approx(np.mean(ref), rel=0.05)


def _inertia(X, centres):
    from scipy.spatial.distance import cdist

    return (cdist(X.astype(np.float64), centres.astype(np.float64), "sqeuclidean").min(1)).sum()


@needs_mnist
def test_kmeanspp_initial_inertia_on_mnist_10k_within_2_percent(mnist_train):
    X = mnist_train.data[:10000]
    ours = [_inertia(X, kmeans_plusplus(X, 100, random_state=s)[0]) for s in range(3)]
    ref = [_inertia(X, sk_kmeans_plusplus(X, 100, random_state=s)[0]) for s in range(3)]
    assert np.mean(ours) <= 1.02 * np.mean(ref)


def test_init_array_continues_from_given_centres(blobs):
    first = KMeans(6, random_state=0, max_iter=2).fit(blobs.data)
    cont = KMeans(6, init=first.cluster_centers_, max_iter=300).fit(blobs.data)
    full = KMeans(6, random_state=0, max_iter=302).fit(blobs.data)
    np.testing.assert_allclose(cont.cluster_centers_, full.cluster_centers_, atol=1e-4)
    # a torch tensor and an (k, ...) shaped array are accepted as init
    images = blobs.data.reshape(-1, 2, 4)
    km = KMeans(6, init=torch.as_tensor(first.cluster_centers_.reshape(6, 2, 4)), max_iter=1).fit(
        images
    )
    assert km.cluster_centers_.shape == (6, 8)


def test_predict_transform_score_and_torch_input(blobs):
    km = KMeans(6, random_state=0).fit(torch.as_tensor(blobs.data))
    assert np.array_equal(km.predict(blobs.data), km.labels_)
    dist = km.transform(blobs.data[:10])
    assert dist.shape == (10, 6)
    assert np.array_equal(dist.argmin(1), km.labels_[:10])
    assert km.score(blobs.data) == pytest.approx(-km.inertia_, rel=1e-5)
    assert np.array_equal(KMeans(6, random_state=0).fit_predict(blobs.data), km.labels_)


def test_empty_clusters_are_relocated_like_sklearn():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(20, 1, (5, 2))]).astype(np.float32)
    init = np.array([[0, 0], [0.1, 0.1], [100, 100], [-100, -100]], dtype=np.float32)
    ours = KMeans(4, init=init, max_iter=5, tol=0).fit(X)
    ref = SKKMeans(4, init=init, n_init=1, max_iter=5, tol=0, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, atol=1e-4)
    assert len(np.unique(ours.labels_)) == 4


def test_random_init_and_n_init_keeps_best(blobs):
    single = [KMeans(6, init="random", random_state=s).fit(blobs.data).inertia_ for s in range(3)]
    best = KMeans(6, init="random", n_init=3, random_state=0).fit(blobs.data)
    assert best.inertia_ <= max(single) + 1e-6


def test_n_init_auto_and_a_callable_init_as_scikit_learn_takes_them(blobs):
    """scikit-learn's ``n_init="auto"`` (its default since 1.4: one seeding for k-means++ and
    an array, ten for "random" and a callable) and ``init`` as a callable
    ``init(X, n_clusters, random_state)`` called once per seeding (both were refused, so code
    written for scikit-learn's KMeans failed on advlab's)."""
    X = blobs.data
    for init, runs in (("k-means++", 1), ("random", 10)):
        auto = KMeans(6, init=init, n_init="auto", random_state=0).fit(X)
        fixed = KMeans(6, init=init, n_init=runs, random_state=0).fit(X)
        assert auto.inertia_ == fixed.inertia_
        assert np.array_equal(auto.cluster_centers_, fixed.cluster_centers_)
    calls = []

    def first_rows(data, n_clusters, random_state):
        calls.append(random_state)
        return data[random_state.choice(len(data), n_clusters, replace=False)]

    ours = KMeans(6, init=first_rows, n_init=3, random_state=0).fit(X)
    assert len(calls) == 3 and all(isinstance(r, np.random.RandomState) for r in calls)
    random = KMeans(6, init="random", n_init=3, random_state=0).fit(X)  # (the same draws)
    assert ours.inertia_ == pytest.approx(random.inertia_, rel=1e-12)
    calls.clear()
    KMeans(6, init=first_rows, n_init="auto", random_state=0).fit(X)
    assert len(calls) == 10
    rows = KMeans(6, init=lambda data, k, random_state: data[:k]).fit(X)
    array = KMeans(6, init=X[:6]).fit(X)
    assert np.array_equal(rows.cluster_centers_, array.cluster_centers_)
    warm = KMeans(6, init=lambda data, k, random_state: data[:k], max_iter=5)
    assert warm.fit_predict_many(np.stack([X, X[::-1]])).shape == (2, len(X))
    with pytest.raises(ValueError, match=r"the array init returned has shape \(5, 8\)"):
        KMeans(6, init=lambda data, k, random_state: data[:5]).fit(X)
    with pytest.raises(ValueError, match="'n_init' parameter"):
        KMeans(6, n_init="many").fit(X)


@pytest.mark.parametrize(
    ("kwargs", "data", "message"),
    [
        ({"n_clusters": 50}, np.zeros((10, 2)), "exceeds n_samples"),
        ({"n_clusters": 0}, np.zeros((10, 2)), r"range \[1, inf\)"),
        ({"n_clusters": 2}, np.array([[0.0, np.nan], [1, 1], [2, 2]]), "NaN"),
        ({"n_clusters": 2}, np.array([[0.0, np.inf], [1, 1], [2, 2]]), "infinity"),
        ({"n_clusters": 2}, np.zeros((0, 3)), "0 sample"),
        ({"n_clusters": 2}, np.zeros(5), "2D array"),
        ({"n_clusters": 2, "init": np.zeros((3, 2))}, np.zeros((10, 2)), "init array has shape"),
        ({"n_clusters": 2, "init": "kmeans++"}, np.zeros((10, 2)), "'init' parameter"),
        ({"n_clusters": 2, "tol": -1.0}, np.zeros((10, 2)), "tol"),
        ({"n_clusters": 2, "max_iter": 0}, np.zeros((10, 2)), "max_iter"),
        ({"n_clusters": 2}, np.array([["a", "b"], ["c", "d"]]), "convert string"),
    ],
)
def test_bad_input_raises_value_error(kwargs, data, message):
    with pytest.raises(ValueError, match=message):
        KMeans(**kwargs).fit(data)


def test_predict_checks_features_and_fitted(blobs):
    with pytest.raises(NotFittedError, match="not fitted"):
        KMeans(3).predict(blobs.data)
    km = KMeans(3, random_state=0).fit(blobs.data)
    with pytest.raises(ValueError, match="expecting 8 features"):
        km.predict(np.zeros((4, 5), dtype=np.float32))


def test_elbow_finds_the_planted_number_of_clusters():
    data = load_dataset(
        "blobs", n_samples=1500, centers=5, n_features=4, cluster_std=0.5, random_state=2
    ).data
    result = elbow(data, range(1, 13), random_state=0)
    assert result.knee == 5
    assert all(a >= b for a, b in zip(result.inertias, result.inertias[1:], strict=False))
    with pytest.raises(ValueError, match="at least 3"):
        find_knee([1, 2], [2.0, 1.0])
    with pytest.raises(ValueError, match="exceeds"):
        elbow(data[:5], [2, 3, 10])


def test_label_weight_sums_are_bincounts_on_both_branches():
    """The CPU branch (bincount) and the CUDA branch (index_add_ in float64, run here on CPU)
    give numpy's weighted bincount, empty labels included (k > largest label)."""
    from advlab.cluster.kmeans import _index_add_weight_sums, label_weight_sums

    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, 7, 500))
    w = torch.from_numpy(rng.random(500).astype(np.float32))
    expected = np.bincount(labels.numpy(), weights=w.numpy().astype(np.float64), minlength=9)
    np.testing.assert_allclose(label_weight_sums(labels, w, 9).numpy(), expected, rtol=1e-6)
    cuda_branch = _index_add_weight_sums(labels, w, 9)
    assert cuda_branch.dtype == torch.float64 and cuda_branch.shape == (9,)
    np.testing.assert_allclose(cuda_branch.numpy(), expected, rtol=1e-12)
    assert label_weight_sums(labels, None, 9).tolist() == np.bincount(labels, minlength=9).tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kmeans_on_cuda_is_bit_reproducible_with_deterministic_kernels(blobs):
    """Two fits with the same seed on one GPU give the same bits under
    ``reproducible_unit`` (weighted sums through index_add_, not float atomics in bincount), and
    the labels of a CPU fit from the same centres."""
    from advlab.cluster.kmeans import label_weight_sums
    from advlab.utils.perf import reproducible_unit

    X = blobs.data.astype(np.float32)
    w = np.random.default_rng(1).random(len(X)).astype(np.float32)
    with reproducible_unit(1, cuda=True):
        fits = [KMeans(40, random_state=0, device="cuda").fit(X, sample_weight=w) for _ in range(2)]
        labels = torch.from_numpy(fits[0].labels_).cuda()
        sums = label_weight_sums(labels, torch.from_numpy(w).cuda(), 40).cpu().numpy()
    assert np.array_equal(fits[0].cluster_centers_, fits[1].cluster_centers_)
    np.testing.assert_allclose(
        sums, np.bincount(fits[0].labels_, weights=w, minlength=40), rtol=1e-6
    )
    on_cpu = KMeans(40, init=fits[0].cluster_centers_, n_init=1, max_iter=1).fit(X, sample_weight=w)
    assert (on_cpu.labels_ == fits[0].labels_).mean() > 0.99


@pytest.mark.parametrize("bounds", ["sklearn", "none", "hamerly"])
def test_fewer_distinct_clusters_than_asked_warn_as_scikit_learn_does(bounds):
    """Three distinct points repeated, k = 5: scikit-learn's ConvergenceWarning, whichever
    E-step runs; no warning when every cluster holds a point."""
    from sklearn.exceptions import ConvergenceWarning

    X = np.repeat(np.random.default_rng(0).normal(size=(3, 4)), 10, axis=0)
    with pytest.warns(ConvergenceWarning, match=r"distinct clusters \(3\).*n_clusters \(5\)"):
        KMeans(5, bounds=bounds, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KMeans(3, bounds=bounds, random_state=0).fit(X)
