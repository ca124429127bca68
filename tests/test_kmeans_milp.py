"""``verify_kmeans_linf``: exact verification of k-means on the inputs, behind a pipeline and on
a ReLU network's features, against the exact minimal attack, a brute-force grid, interval
bounds and PGD; and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from advlab.attacks.evasion import KMeansMinimalAttack, KMeansPGD, kmeans_certified_radius
from advlab.cluster import KMeans, majority_vote_mapping
from advlab.data import load_dataset
from advlab.defenses import (
    ATTACKED,
    ROBUST,
    UNKNOWN,
    kmeans_is_certified,
    kmeans_is_certified_linear,
    verify_kmeans_linf,
)
from advlab.models import Model


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", "train")
    return torch.from_numpy(data.images[:300]), data.labels[:300]


def _moved_class(predict, mapping, x, x_adv):
    """Whether each x_adv lies in a cluster of another class than x's (cluster ids when
    ``mapping`` is None)."""
    before, after = predict(x), predict(x_adv)
    if mapping is not None:
        before, after = mapping[before], mapping[after]
    return before != after


def test_without_a_network_it_agrees_with_the_exact_minimal_attack(digits):
    """k-means on the pixels: an input is proved robust at eps exactly where the exact minimal
    L-inf perturbation exceeds eps; the minimal programs find that perturbation (a hair past
    the boundary) and their examples change the class."""
    x, y = digits
    x = x[:40].double()
    flat = x.flatten(1).numpy()
    km = KMeans(20, random_state=0).fit(load_dataset("digits", "train").images.reshape(-1, 64))
    mapping = majority_vote_mapping(km.predict(flat), y[:40], 20)
    for target in (mapping, None):
        goal = "other-class" if target is not None else "any-cluster"
        exact = KMeansMinimalAttack(km, target, "linf", goal, exact=True)(x).distances.numpy()
        for eps in (0.05, 0.1):
            result = verify_kmeans_linf(km, x, eps, mapping=target)
            assert not np.any(result.status == UNKNOWN)
            np.testing.assert_array_equal(result.status == ROBUST, exact > eps)
        found = verify_kmeans_linf(km, x, 0.3, mapping=target, minimal=True)
        attacked = found.status == ATTACKED
        assert attacked.sum() >= 35 and np.all(exact[~attacked] > 0.3 - 1e-9)
        gap = exact[attacked] - found.distances[attacked]  # the exact attack overshoots by 1e-6
        assert np.all(gap >= -1e-7) and np.all(gap <= 2e-6)
        moved = found.x_adv[attacked].flatten(1).numpy()
        assert np.all(_moved_class(km.predict, target, flat[attacked], moved))
        sizes = np.abs(moved - flat[attacked]).max(1)  # a hair past the boundary
        assert np.all(sizes >= found.distances[attacked] - 1e-9)
        assert np.all(sizes <= found.distances[attacked] + 1e-3)


def test_linear_certificates_without_a_network_are_the_boxed_voronoi_radius(digits):
    """Without a network (or behind a pipeline's affine steps) the bound of each half-space over
    the input box is exact, for linear and interval bounds alike: per cluster the two
    certificates are equal (the boxed radius without a pipeline); class-aware, linear bounds,
    which may keep any cluster of the own class ahead, certify at least what interval bounds
    do, and lie below the exact minimum."""
    x, y = digits
    flat = x.flatten(1).double().numpy()
    km = KMeans(20, random_state=0).fit(flat)
    radius = kmeans_certified_radius(km, flat, "linf", bounds=(0.0, 1.0))
    pipe = make_pipeline(StandardScaler(), PCA(10, random_state=0), KMeans(15, random_state=0))
    pipe.fit(flat)
    pipe_mapping = majority_vote_mapping(pipe.predict(flat), y, 15)
    for eps in (0.02, 0.05):
        np.testing.assert_array_equal(kmeans_is_certified_linear(km, x, eps).numpy(), radius > eps)
        interval = kmeans_is_certified(pipe, x, eps, mapping=pipe_mapping).numpy()
        linear = kmeans_is_certified_linear(pipe, x, eps, mapping=pipe_mapping).numpy()
        robust = verify_kmeans_linf(pipe, x, eps, mapping=pipe_mapping).status == ROBUST
        assert np.all(linear[interval]) and np.all(robust[linear])
        per_cluster = kmeans_is_certified(pipe, x, eps).numpy()
        np.testing.assert_array_equal(per_cluster, kmeans_is_certified_linear(pipe, x, eps).numpy())
        assert 0 < per_cluster.mean() < 1


def test_behind_a_pipeline_it_agrees_with_the_exact_minimal_attack(digits):
    x, y = digits
    x = x[:30].double()
    flat = x.flatten(1).numpy()
    pipe = make_pipeline(StandardScaler(), PCA(10, random_state=0), KMeans(15, random_state=0))
    pipe.fit(digits[0].flatten(1).double().numpy())
    mapping = majority_vote_mapping(pipe.predict(flat), y[:30], 15)
    exact = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", exact=True, max_size=0.1)
    sizes = exact(x).distances.numpy()
    result = verify_kmeans_linf(pipe, x, 0.03, mapping=mapping)
    np.testing.assert_array_equal(result.status == ROBUST, sizes > 0.03)
    assert 0 < np.mean(result.status == ROBUST) < 1
    attacked = result.status == ATTACKED
    moved = result.x_adv[attacked].flatten(1).numpy()
    assert np.all(_moved_class(pipe.predict, mapping, flat[attacked], moved))


def test_in_2d_it_agrees_with_a_grid_search():
    """k-means (6 clusters, 3 classes) on the 5 features of a 2 -> 16 -> 16 -> 5 ReLU network
    with its own preprocessing, on [0, 1]^2: an input is proved robust only where no point of
    a fine grid of its box changes the class, every input with such a grid point is attacked,
    and the grid's nearest attacking point lies within a grid step above the minimal
    perturbation."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 5))  # fmt: skip
    model = Model(net, preprocessing={"mean": 0.5, "std": 0.1}).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(50, 2, generator=g)
    with torch.no_grad():
        km = KMeans(6, random_state=0).fit(model(torch.rand(400, 2, generator=g)).numpy())
    mapping = np.array([0, 1, 2, 0, 1, 2])

    def classes(v: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return mapping[km.predict(model(v).double().numpy())]

    eps = 0.05
    result = verify_kmeans_linf(km, x, eps, mapping=mapping, features=model)
    minimal = verify_kmeans_linf(km, x, eps, mapping=mapping, features=model, minimal=True)
    np.testing.assert_array_equal(result.status, minimal.status)
    step = torch.linspace(-eps, eps, 101)
    offsets = torch.stack(torch.meshgrid(step, step, indexing="ij"), -1).reshape(-1, 2)
    own = classes(x)
    for i in range(len(x)):
        box = (x[i] + offsets).clamp(0, 1)
        hits = classes(box) != own[i]
        if hits.any():
            assert result.status[i] == ATTACKED
            nearest = float((box[hits] - x[i]).abs().max(1).values.min())
            assert minimal.distances[i] - 1e-6 <= nearest <= minimal.distances[i] + 2 * eps / 100
        if result.status[i] == ATTACKED:
            for found in (result, minimal):
                z = found.x_adv[i : i + 1]
                assert float((z - x[i]).abs().max()) <= eps + 1e-6
                assert classes(z)[0] != own[i]
    assert set(result.status.tolist()) == {ROBUST, ATTACKED}


def test_through_a_relu_network_it_lies_between_interval_bounds_and_pgd(digits):
    """k-means on a ReLU network's 8-d embedding of the digits: every input interval bounds
    certify is proved robust, none proved robust is broken by PGD, every counterexample is
    confirmed by the network and the k-means, and the programs prove robust inputs that
    interval bounds cannot; linear bounds lie between the two."""
    x, y = digits
    x = x[:80]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    with torch.no_grad():
        km = KMeans(12, random_state=0).fit(net(digits[0]).numpy())
        own_clusters = km.predict(net(x).numpy())
    mapping = majority_vote_mapping(km.predict(net(digits[0]).detach().numpy()), y, 12)
    own = torch.from_numpy(mapping[own_clusters])
    eps = 0.015
    result = verify_kmeans_linf(km, x, eps, mapping=mapping, features=net, time_limit=5)
    certified = kmeans_is_certified(km, x, eps, mapping=mapping, features=net).numpy()
    broken = np.zeros(len(x), dtype=bool)
    for seed in range(2):
        pgd = KMeansPGD(km, mapping, eps=eps, max_iter=60, random_start=True, random_state=seed,
                        features=net)  # fmt: skip
        broken |= pgd(x, own).success.numpy()
    linear = kmeans_is_certified_linear(km, x, eps, mapping=mapping, features=net).numpy()
    robust, attacked = result.status == ROBUST, result.status == ATTACKED
    assert np.all(linear[certified]) and np.all(robust[linear]) and not np.any(robust & broken)
    assert linear.sum() > certified.sum() and robust.sum() > linear.sum()
    assert attacked.sum() >= broken.sum() > 0
    with torch.no_grad():
        moved = mapping[km.predict(net(result.x_adv[attacked]).numpy())]
    assert np.all(moved != own.numpy()[attacked])
    assert float((result.x_adv - x).abs().max()) <= eps + 1e-6


def test_what_it_cannot_verify_is_named(digits):
    x = digits[0][:4]
    km = KMeans(3, random_state=0).fit(np.random.default_rng(0).random((30, 8)))
    smooth = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh())
    with pytest.raises(ValueError, match="unsupported layer Tanh"):
        verify_kmeans_linf(km, x, 0.1, features=smooth)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(64, 9))
    with pytest.raises(
        ValueError, match="k-means takes 8 features per sample, the network gives 9"
    ):
        verify_kmeans_linf(km, x, 0.1, features=wide)
    narrow = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))
    with pytest.raises(ValueError, match="eps"):
        verify_kmeans_linf(km, x, -0.1, features=narrow)
    with pytest.raises(ValueError, match="time_limit"):
        verify_kmeans_linf(km, x, 0.1, features=narrow, time_limit=0)
    with pytest.raises(ValueError, match="mapping"):
        verify_kmeans_linf(km, x, 0.1, mapping=[0, 1], features=narrow)
    with pytest.raises(ValueError, match="bounds"):
        verify_kmeans_linf(km, x + 2, 0.1, features=narrow)
    with pytest.raises(ValueError, match="does not take inputs of shape \\(1, 4, 8\\)"):
        verify_kmeans_linf(km, x[:, :, :4], 0.1, features=narrow)
    with pytest.raises(ValueError, match="k-means takes 8 features per sample, the inputs have 64"):
        verify_kmeans_linf(km, x, 0.1)
    with pytest.raises(ValueError, match="minimal must be True or False"):
        verify_kmeans_linf(km, x, 0.1, features=narrow, minimal="yes")
    assert verify_kmeans_linf(km, x[:0], 0.1, features=narrow).status.shape == (0,)
    batch_norm = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU())
    result = verify_kmeans_linf(km, x, 0.0, features=batch_norm.train())  # verified in eval mode
    assert np.all(result.status == ROBUST) and batch_norm.training
