"""Certified radii by bisection on the interval and linear certificates: sound (the certificate
holds at the radius, which never exceeds the exact minimal perturbation), tight (it fails a
tolerance above it, and without a network it is the Voronoi radius), ordered (interval <=
linear), and in per-feature units."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from advlab.attacks.evasion import KMeansMinimalAttack, kmeans_certified_radius
from advlab.cluster import KMeans, majority_vote_mapping
from advlab.defenses import (
    ATTACKED,
    certified_radius,
    is_certified,
    is_certified_linear,
    kmeans_certified_radius_through,
    kmeans_is_certified_linear,
    verify_kmeans_linf,
    verify_linf,
)
from advlab.defenses.certified_radius import bisect_radius
from tests.test_milp_verification import _in_2d

EPS_MAX, TOL = 0.2, 1e-3


def test_a_classifiers_radius_is_certified_tight_and_below_the_exact_minimum():
    """The 2-D network of the MILP tests: the linear radius is certified by
    ``is_certified_linear`` and not a tolerance above it, never exceeds the exact minimal
    perturbation of ``verify_linf``, and is at least the interval radius; misclassified inputs
    (under another label) get 0."""
    net, x, y, _ = _in_2d()
    linear = certified_radius(net, x, y, EPS_MAX, tol=TOL)
    interval = certified_radius(net, x, y, EPS_MAX, method="interval", tol=TOL)
    exact = verify_linf(net, x, y, EPS_MAX, minimal=True)
    sizes = np.where(exact.status == ATTACKED, exact.distances, EPS_MAX)
    assert np.all(linear <= sizes + 1e-9) and np.all(interval <= linear + TOL * EPS_MAX)
    assert np.median(interval) < np.median(linear) < np.median(sizes)
    inside = linear < EPS_MAX
    for radius, certify in ((linear, is_certified_linear), (interval, is_certified)):
        for i in np.flatnonzero(inside):
            if radius[i] > 0:
                assert bool(certify(net, x[i : i + 1], y[i : i + 1], float(radius[i]))[0])
            above = float(radius[i]) + 1.01 * TOL * EPS_MAX
            assert not bool(certify(net, x[i : i + 1], y[i : i + 1], above)[0])
    wrong = (y + 1) % 3
    assert np.all(certified_radius(net, x, wrong, EPS_MAX) == 0.0)


def _digits_kmeans() -> tuple[KMeans, np.ndarray, torch.Tensor]:
    X, y = load_digits(return_X_y=True)
    km = KMeans(20, random_state=0).fit(X[:500] / 16)
    return km, majority_vote_mapping(km.labels_, y[:500], 20), torch.from_numpy(X[500:560] / 16)


def test_a_kmeans_radius_without_a_network_is_the_voronoi_radius():
    """A plain k-means on the digits: per cluster, the linear radius is the boxed Voronoi
    radius to the tolerance (capped at eps_max); per class it is at least the Voronoi radius
    (another cluster of the own class may stay ahead) and at most the exact minimal
    perturbation."""
    km, mapping, x = _digits_kmeans()
    eps_max = 0.5
    voronoi = np.minimum(kmeans_certified_radius(km, x.numpy(), "linf", bounds=(0, 1)), eps_max)
    ours = kmeans_certified_radius_through(km, x, eps_max, tol=TOL)
    np.testing.assert_allclose(ours, voronoi, atol=TOL * eps_max)
    assert np.all(ours <= voronoi + 1e-12)
    per_class = kmeans_certified_radius_through(km, x, eps_max, mapping, tol=TOL)
    voronoi_class = kmeans_certified_radius(km, x.numpy(), "linf", mapping=mapping, bounds=(0, 1))
    exact = KMeansMinimalAttack(km, mapping, "linf", "other-class", exact=True)(x).distances
    assert np.all(per_class >= np.minimum(voronoi_class, eps_max) - TOL * eps_max)
    assert np.all(per_class <= exact.numpy() + 1e-9)


def test_a_kmeans_radius_through_a_relu_network():
    """k-means (k = 12) on an 8-d ReLU embedding of the digits: the linear radius is certified
    by ``kmeans_is_certified_linear``, at least the interval one, and never above the exact
    minimal perturbation of ``verify_kmeans_linf``."""
    X, y = load_digits(return_X_y=True)
    x = torch.from_numpy(X[:60] / 16).float().reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    with torch.no_grad():
        km = KMeans(12, random_state=0).fit(net(x).numpy())
    mapping = majority_vote_mapping(km.labels_, y[:60], 12)
    eps_max = 0.03
    linear = kmeans_certified_radius_through(km, x, eps_max, mapping, features=net, tol=TOL)
    interval = kmeans_certified_radius_through(km, x, eps_max, mapping, features=net,
                                               method="interval", tol=TOL)  # fmt: skip
    exact = verify_kmeans_linf(km, x, eps_max, mapping, features=net, minimal=True)
    sizes = np.where(exact.status == ATTACKED, exact.distances, eps_max)
    assert np.all(linear <= sizes + 1e-9) and np.all(interval <= linear + TOL * eps_max)
    assert np.median(interval) < np.median(linear)
    for i in np.flatnonzero(linear > 0)[:20]:
        assert bool(kmeans_is_certified_linear(km, x[i : i + 1], float(linear[i]), mapping,
                                               features=net)[0])  # fmt: skip


def test_per_feature_units():
    """Units of 2 on every feature halve the radius (to the tolerance); freezing a feature
    (unit 0) never lowers it."""
    net, x, y, _ = _in_2d()
    plain = certified_radius(net, x, y, EPS_MAX, tol=TOL)
    doubled = certified_radius(net, x, y, EPS_MAX / 2, scale=[2.0, 2.0], tol=TOL)
    np.testing.assert_allclose(doubled, plain / 2, atol=TOL * EPS_MAX)
    frozen = certified_radius(net, x, y, EPS_MAX, scale=torch.tensor([1.0, 0.0]), tol=TOL)
    assert np.all(frozen >= plain - TOL * EPS_MAX) and np.any(frozen > plain + 0.01)


def test_the_bisection_probes_a_batch_together_as_one_input_at_a_time():
    """A certificate that holds up to a threshold per input (and, for input 3, also at one
    isolated eps above it: not monotone): batches of 1, 7 and all inputs give the same radii,
    each one a proven eps within the tolerance below the threshold (eps_max where it holds
    there), and a batch of all inputs asks the certificate log2(1 / tol) + 1 times, not once
    per input and probe."""
    thresholds = np.random.default_rng(0).uniform(0.0, 1.2, 20)
    thresholds[:2] = (0.0, 1.0)

    def certificate(index, eps):
        calls.append(len(index))
        assert index.shape == eps.shape and eps.dtype == np.float64
        return (eps <= thresholds[index]) | ((index == 3) & (eps == 0.75))

    radii = {}
    for batch_size in (1, 7, 20):
        calls: list[int] = []
        radii[batch_size] = bisect_radius(certificate, 20, 1.0, TOL, "test", batch_size)
        if batch_size == 20:
            assert len(calls) == int(np.ceil(np.log2(1 / TOL))) + 1
    np.testing.assert_array_equal(radii[1], radii[7])
    np.testing.assert_array_equal(radii[1], radii[20])
    proven = certificate(np.arange(20), radii[1]) | (radii[1] == 0)
    assert proven.all()
    capped = np.minimum(thresholds, 1.0)
    assert np.all(radii[1] <= capped) and np.all(radii[1] > capped - TOL)
    assert radii[1][1] == 1.0 and radii[1][0] == 0.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_interval_radii_are_the_same_whatever_the_batch(norm):
    """Interval radii of a convolutional classifier (per-feature units) and of a k-means on
    a ReLU network's features: batches of 1 and of 13 inputs (eps_i folded into the units)
    give the same radii."""
    X, _ = load_digits(return_X_y=True)
    x = torch.from_numpy(X[:40] / 16).float().reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(256, 10)).eval()  # fmt: skip
    labels = net(x).argmax(1)
    units = torch.rand(1, 8, 8) + 0.5
    eps_max = 0.2 if norm == "linf" else 2.0
    one, many = (certified_radius(net, x, labels, eps_max, "interval", units, norm=norm,
                                  batch_size=b) for b in (1, 13))  # fmt: skip
    np.testing.assert_array_equal(one, many)
    assert np.median(one) > 0
    features = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU()).eval()
    with torch.no_grad():
        km = KMeans(8, random_state=0).fit(features(x).numpy())
    one, many = (kmeans_certified_radius_through(km, x, eps_max, None, features, method=
                 "interval", norm=norm, batch_size=b) for b in (1, 13))  # fmt: skip
    np.testing.assert_array_equal(one, many)
    assert np.any(one > 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"method": "exact"}, "method='exact'"),
        ({"eps_max": 0.0}, "eps_max must be > 0"),
        ({"tol": 1.5}, "tol must be <= 1"),
        ({"scale": [0.0, 0.0]}, "scale is 0 for every feature"),
        ({"scale": [1.0, 1.0, 1.0]}, r"scale has shape \(3,\)"),
    ],
)
def test_bad_searches_are_named(kwargs, message):
    net, x, y, _ = _in_2d()
    with pytest.raises(ValueError, match=message):
        certified_radius(net, x, y, **{"eps_max": EPS_MAX, **kwargs})
