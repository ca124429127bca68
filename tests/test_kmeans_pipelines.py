"""White-box attacks and certificates of a k-means behind the affine steps of a scikit-learn
Pipeline (scalers, PCA), measured in the pipeline's input units: checked against the
pipeline's own ``predict``, by brute force in 2-D, and against the k-means of the
back-projected centres where PCA makes the two the same."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import DBSCAN
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    Normalizer,
    PolynomialFeatures,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)

from advlab.attacks.evasion import KMeansMinimalAttack, KMeansPGD, kmeans_certified_radius
from advlab.attacks.evasion.kmeans_pgd import kmeans_model
from advlab.cluster import KMeans, kmeans_cells


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """8x8 digits in their own pixel units, 0 to 16."""
    X, y = load_digits(return_X_y=True)
    return X[:600].astype(np.float64), y[:600]


PIPELINES = {
    "standard": lambda: make_pipeline(StandardScaler(), KMeans(12, random_state=0)),
    "minmax-pca": lambda: make_pipeline(
        MinMaxScaler(), PCA(20, random_state=0), SKKMeans(12, n_init=1, random_state=0)
    ),
    "robust-whiten": lambda: make_pipeline(
        RobustScaler(), PCA(10, whiten=True, random_state=0), KMeans(12, random_state=0)
    ),
    "nested-passthrough": lambda: Pipeline(
        [
            ("pre", make_pipeline(MaxAbsScaler(), "passthrough")),
            ("skip", None),
            ("km", SKKMeans(12, n_init=1, random_state=0)),
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_the_cells_of_a_pipeline_assign_as_it_predicts(digits, name):
    """eq. P: the cluster of argmin_j gamma_j - 2 u_j . x, and the float64 and float32 models
    the attacks use, are the pipeline's prediction on its data and on points far from it."""
    X, _ = digits
    pipe = PIPELINES[name]().fit(X)
    cells = kmeans_cells(pipe)
    assert cells.n_features == 64
    far = np.random.default_rng(0).uniform(-16, 32, size=(300, 64))
    for points in (X, far):
        t = torch.from_numpy(points)
        np.testing.assert_array_equal(cells.assign(t).numpy(), pipe.predict(points))
        by_sites = (cells.levels[None] - 2 * t @ cells.sites.T).argmin(1).numpy()
        np.testing.assert_array_equal(by_sites, pipe.predict(points))
        for dtype in (torch.float64, torch.float32):
            model = kmeans_model(pipe, None, None, dtype)
            with torch.no_grad():
                decided = model(t.to(dtype)).argmax(1).numpy()
            agree = np.mean(decided == pipe.predict(points))
            assert agree == 1.0 if dtype == torch.float64 else agree > 0.99


def _grid_distance(pipe: Pipeline, mapping: np.ndarray, x: np.ndarray, norm: str) -> np.ndarray:
    """Brute force: per point, the distance to the nearest point of a 1/400 grid over the unit
    box that the pipeline assigns to another class."""
    axis = np.linspace(0, 1, 401)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    grid_class = mapping[pipe.predict(grid)]
    own = mapping[pipe.predict(x)]
    gaps = [np.abs(grid[grid_class != c] - p) for p, c in zip(x, own, strict=True)]
    return np.array(
        [(g.max(1) if norm == "linf" else np.linalg.norm(g, axis=1)).min() for g in gaps]
    )


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_exact_minimal_attack_on_a_whitening_pipeline_matches_brute_force_in_2d(norm):
    """Whitening stretches and rotates the space k-means clusters, so its cells are not those
    of any centres in the input box: the exact attack's distance, in input units, is the grid
    search's over ``pipe.predict`` (to the grid step), its point lands in another class, and
    the certified radius <= exact <= the closed-form search."""
    rng = np.random.default_rng(0)
    train = rng.uniform(0, 1, size=(400, 2)) @ np.array([[1.0, 0.0], [0.8, 0.25]])
    pipe = make_pipeline(PCA(2, whiten=True), SKKMeans(12, n_init=1, random_state=0)).fit(train)
    mapping = np.arange(12) % 3
    x = rng.uniform(0, 1, size=(100, 2))
    kwargs = dict(mapping=mapping, norm=norm, target="other-class", bounds=(0.0, 1.0))
    exact = KMeansMinimalAttack(pipe, exact=True, **kwargs)(torch.from_numpy(x))
    closed = KMeansMinimalAttack(pipe, **kwargs)(torch.from_numpy(x)).distances.numpy()
    certified = kmeans_certified_radius(pipe, x, norm, mapping=mapping, bounds=(0.0, 1.0))
    found, brute = exact.distances.numpy(), _grid_distance(pipe, mapping, x, norm)
    assert bool(exact.success.all())
    # never beaten by a grid point; below the grid only where it misses a thin sliver of a cell
    assert np.all(found <= brute + 1e-9) and np.mean(brute - found <= 1 / 400 + 1e-5) > 0.95
    assert np.all(certified <= found + 1e-9) and np.all(found <= closed + 1e-12)
    adv = exact.x_adv.numpy()
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.all(mapping[pipe.predict(adv)] != mapping[pipe.predict(x)])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_certified_radius_of_a_pipeline_is_where_its_prediction_changes(digits, norm):
    """Without a box the radius to the nearest cluster is exact (eq. R): the minimal attack
    moves each point by it (plus its overshoot) into another cluster of ``pipe.predict``, and
    no random move of 0.999 times it changes the prediction."""
    X, _ = digits
    pipe = PIPELINES["standard"]().fit(X)
    x = X[:40]
    radius = kmeans_certified_radius(pipe, x, norm)
    result = KMeansMinimalAttack(pipe, norm=norm, bounds=None)(torch.from_numpy(x))
    np.testing.assert_allclose(result.distances.numpy(), radius, rtol=1e-3)
    assert np.all(pipe.predict(result.x_adv.numpy()) != pipe.predict(x))
    rng = np.random.default_rng(1)
    for _ in range(50):
        step = rng.choice([-1.0, 1.0], size=x.shape) if norm == "linf" else rng.normal(size=x.shape)
        size = np.abs(step).max(1) if norm == "linf" else np.linalg.norm(step, axis=1)
        moved = x + 0.999 * (radius / size)[:, None] * step
        np.testing.assert_array_equal(pipe.predict(moved), pipe.predict(x))


def test_a_pca_pipeline_is_the_k_means_of_its_back_projected_centres(digits):
    """Unwhitened PCA drops the same orthogonal component from every distance, so the pipeline's
    cells are those of its centres mapped back to pixel space: the same radii and the same
    minimal perturbations, with the box."""
    X, _ = digits
    pipe = make_pipeline(PCA(20, random_state=0), SKKMeans(15, n_init=1, random_state=0)).fit(X)
    pca, km = pipe[0], pipe[-1]
    back = km.cluster_centers_ @ pca.components_ + pca.mean_
    mapping = np.arange(15) % 10
    x, box = X[:60], (0.0, 16.0)
    for norm in ("linf", "l2"):
        np.testing.assert_allclose(
            kmeans_certified_radius(pipe, x, norm, mapping=mapping, bounds=box),
            kmeans_certified_radius(back, x, norm, mapping=mapping, bounds=box), atol=1e-9
        )  # fmt: skip
        kwargs = dict(mapping=mapping, norm=norm, target="other-class", bounds=box, exact=True)
        np.testing.assert_allclose(
            KMeansMinimalAttack(pipe, **kwargs)(torch.from_numpy(x[:15])).distances.numpy(),
            KMeansMinimalAttack(back, **kwargs)(torch.from_numpy(x[:15])).distances.numpy(),
            rtol=1e-6,
        )


def test_pgd_on_a_pipeline_spends_its_budget_in_input_units(digits):
    """White-box PGD through the scaler and PCA: every perturbation is within eps pixels, its
    success is the pipeline's change of cluster, and no point certified beyond eps moves."""
    X, _ = digits
    pipe = PIPELINES["robust-whiten"]().fit(X)
    x, own = X[:200], pipe.predict(X[:200])
    eps = 1.5  # pixels, of 16
    result = KMeansPGD(pipe, None, eps=eps, max_iter=30, bounds=(0.0, 16.0))(
        torch.from_numpy(x).float(), torch.from_numpy(own)
    )
    adv = result.x_adv.double().numpy()
    assert np.abs(adv - x).max() <= eps * (1 + 1e-6) and adv.min() >= 0 and adv.max() <= 16
    moved = pipe.predict(adv) != own
    assert 0.1 < moved.mean() < 1.0
    assert np.mean(moved == result.success.numpy()) > 0.99  # float32 model, float64 pipeline
    certified = kmeans_certified_radius(pipe, x, "linf", bounds=(0.0, 16.0))
    assert (certified > eps).any() and not moved[certified > eps * (1 + 1e-6)].any()


def test_steps_that_are_not_affine_or_not_fitted_are_named(digits):
    X, _ = digits
    for step, name in (
        (Normalizer(), "'normalizer' \\(Normalizer\\) is not affine"),
        (MinMaxScaler(clip=True), "'minmaxscaler' \\(MinMaxScaler\\) is not affine"),
        (FunctionTransformer(np.log1p), "'functiontransformer' .* is not affine"),
        (PolynomialFeatures(2), "'polynomialfeatures' .* is not affine"),
        (QuantileTransformer(n_quantiles=50), "'quantiletransformer' .* is not affine"),
    ):
        pipe = make_pipeline(step, KMeans(4, random_state=0)).fit(X)
        for make in (
            lambda p=pipe: KMeansMinimalAttack(p, bounds=(0.0, 16.0)),
            lambda p=pipe: KMeansPGD(p, None, eps=0.1, max_iter=2, bounds=(0.0, 16.0)),
            lambda p=pipe: kmeans_certified_radius(p, X[:5]),
        ):
            with pytest.raises(ValueError, match=name):
                make()
    with pytest.raises(ValueError, match="last step 'dbscan' \\(DBSCAN\\) has no cluster_centers_"):
        kmeans_cells(make_pipeline(StandardScaler(), DBSCAN()).fit(X))
    with pytest.raises(NotFittedError):
        kmeans_cells(make_pipeline(StandardScaler(), KMeans(4)))
    pipe = PIPELINES["standard"]().fit(X)
    with pytest.raises(ValueError, match="x has 10 features, the k-means takes 64"):
        kmeans_certified_radius(pipe, X[:5, :10])


def test_a_clusterer_that_does_not_predict_the_nearest_centre_is_refused(digits):
    """BisectingKMeans descends its tree of bisections, so a quarter of the points are not in
    the cluster of their nearest centre: its cells would certify what it does not do (they were
    used silently). Refused alone and in a pipeline, by every white-box entry point; with two
    clusters (one bisection, the Voronoi split) and with renamed labels (SeededKMeans predicts
    the class of the cluster) it is taken."""
    from sklearn.cluster import BisectingKMeans, MiniBatchKMeans

    from advlab.cluster import SeededKMeans

    X, y = digits
    for victim in (BisectingKMeans(8, random_state=0).fit(X),
                   make_pipeline(StandardScaler(), BisectingKMeans(8, random_state=0)).fit(X)):  # fmt: skip
        far = np.random.default_rng(0).uniform(0, 16, size=(2000, 64))
        feats = victim[:-1].transform(far) if hasattr(victim, "steps") else far
        centres = (victim[-1] if hasattr(victim, "steps") else victim).cluster_centers_
        nearest = ((feats[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        assert np.mean(nearest != victim.predict(far)) > 0.05
        for make in (
            lambda v=victim: KMeansMinimalAttack(v, bounds=(0.0, 16.0)),
            lambda v=victim: KMeansPGD(v, None, eps=0.1, max_iter=2, bounds=(0.0, 16.0)),
            lambda v=victim: kmeans_certified_radius(v, X[:5]),
        ):
            with pytest.raises(ValueError, match="does not assign points by their nearest centre"):
                make()
    kmeans_cells(BisectingKMeans(2, random_state=0).fit(X))
    # a float32 fit: scikit-learn's predict refuses float64 inputs, so the check probes in float32
    X32 = X.astype(np.float32)
    for fitted in (SKKMeans(8, n_init=1, random_state=0).fit(X32),
                   make_pipeline(StandardScaler(), SKKMeans(8, n_init=1, random_state=0)).fit(X32)):  # fmt: skip
        np.testing.assert_array_equal(kmeans_cells(fitted).predict(X32), fitted.predict(X32))
    kmeans_cells(MiniBatchKMeans(8, n_init=1, random_state=0).fit(X))
    seeded = SeededKMeans().fit(X, np.where(y < 5, 30, 70))  # classes 30 and 70
    assert set(seeded.predict(X)) == {30, 70}
    kmeans_cells(seeded)


def test_the_segment_search_returns_points_inside_the_box():
    """Centres outside the box (a k-means of other data, or float rounding below 0): the
    bisection towards a cell's centre is clipped to the box, so no returned point leaves it
    (it returned points up to 0.2 outside [0, 1])."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(-0.3, 1.3, size=(10, 5))
    mapping = np.arange(10) % 2
    x = rng.uniform(0, 1, size=(200, 5))
    for norm in ("l2", "linf"):
        result = KMeansMinimalAttack(centres, mapping, norm=norm, target="other-class")(
            torch.from_numpy(x)
        )
        adv = result.x_adv.numpy()
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        ok = result.success.numpy()
        assert ok.mean() > 0.9
        landed = mapping[np.argmin(((adv[:, None] - centres[None]) ** 2).sum(-1), 1)]
        own = mapping[np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), 1)]
        assert np.all((landed != own)[ok])


def test_pgd_through_a_torch_feature_extractor(digits):
    """k-means on a network's embeddings (deep clustering): with ``features`` PGD perturbs the
    pixels through the network, within eps, its success is k-means' change of cluster on the
    embedding, the network's mode is restored, and a linear network gives the same examples
    as the same affine map read as the k-means' cells."""
    from advlab.cluster import KMeansCells

    X, _ = digits
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    x = torch.from_numpy(X[:200]).float()
    with torch.no_grad():
        embedding = net(x).numpy()
    km = KMeans(10, random_state=0).fit(embedding)
    own = km.predict(embedding)
    result = KMeansPGD(km, None, eps=1.0, max_iter=20, bounds=(0.0, 16.0), features=net)(
        x, torch.from_numpy(own)
    )
    adv = result.x_adv
    assert float((adv - x).abs().max()) <= 1.0 + 1e-5 and adv.min() >= 0 and adv.max() <= 16
    with torch.no_grad():
        moved = km.predict(net(adv).numpy()) != own
    assert 0.2 < moved.mean() and np.array_equal(moved, result.success.numpy())
    assert net.training and all(p.requires_grad for p in net.parameters())
    linear = torch.nn.Linear(64, 8).double()
    with torch.no_grad():
        km_lin = KMeans(10, random_state=0).fit(linear(x.double()).numpy())
    cells = KMeansCells(torch.from_numpy(km_lin.cluster_centers_).double(),
                        linear.weight.detach(), linear.bias.detach())  # fmt: skip
    lab = torch.from_numpy(km_lin.predict(linear(x.double()).detach().numpy()))
    via_features = KMeansPGD(km_lin, None, eps=1.0, max_iter=10, bounds=(0.0, 16.0),
                             features=linear.float())(x, lab).x_adv  # fmt: skip
    via_cells = KMeansPGD(cells, None, eps=1.0, max_iter=10, bounds=(0.0, 16.0))(x, lab).x_adv
    assert ((via_features - via_cells).abs().amax(1) < 1e-4).float().mean() > 0.95
    with pytest.raises(ValueError, match="k-means takes 8 features per sample, got 64"):
        KMeansPGD(km, None, eps=1.0, max_iter=2, bounds=(0.0, 16.0))(x, torch.from_numpy(own))
