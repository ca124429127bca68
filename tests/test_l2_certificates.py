"""L2 certificates by linear bounds (``is_certified_linear(..., norm="l2")`` and
``certified_radius(..., norm="l2")``, eq. C of ``advlab.defenses.milp_verification``): exact on a
linear classifier, sound against a dense grid of a 2-D network's inputs and against L2 attacks,
and in per-feature units the certificate of the rescaled network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from advlab.attacks.evasion import PGD, CarliniWagnerL2, KMeansPGD, kmeans_certified_radius
from advlab.cluster import KMeans, majority_vote_mapping
from advlab.defenses import (
    certified_radius,
    is_certified,
    is_certified_linear,
    kmeans_certified_radius_through,
    kmeans_is_certified,
    kmeans_is_certified_linear,
)
from advlab.models import Model
from tests.test_milp_verification import _in_2d, _net

TOL = 1e-3


def _linear_classifier() -> tuple[Model, torch.Tensor, torch.Tensor, np.ndarray]:
    """A 6 -> 4 linear classifier on unbounded rows, 40 rows and their predicted labels, and
    each row's exact L2 distance to another class: min_j (z_y - z_j) / ||w_y - w_j||_2."""
    torch.manual_seed(0)
    layer = nn.Linear(6, 4).double()
    model = Model(nn.Sequential(layer), bounds=(-np.inf, np.inf))
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    w = layer.weight.detach()
    gaps = z.gather(1, y[:, None]) - z  # (N, classes)
    norms = (w[y][:, None, :] - w[None, :, :]).norm(dim=2)
    exact = torch.where(gaps > 0, gaps / norms.clamp(min=1e-300), torch.inf).amin(1)
    return model, x, y, exact.numpy()


def test_on_a_linear_classifier_the_l2_certificate_is_exact():
    """Without hidden layers and bounds the L2 certificate is eq. C itself: it holds 1 % below
    each row's distance to another class and fails 1 % above, and the bisection's radius is
    that distance to the tolerance (the box that holds the ball certifies less)."""
    model, x, y, exact = _linear_classifier()
    assert bool(is_certified_linear(model, x, y, 0.0, norm="l2").all())
    for i in range(len(x)):
        row, label = x[i : i + 1], y[i : i + 1]
        assert bool(is_certified_linear(model, row, label, 0.99 * exact[i], norm="l2")[0])
        assert not bool(is_certified_linear(model, row, label, 1.01 * exact[i], norm="l2")[0])
    eps_max = float(exact.max()) * 1.1
    radius = certified_radius(model, x, y, eps_max, norm="l2", tol=TOL)
    np.testing.assert_allclose(radius, exact, atol=TOL * eps_max)
    assert np.all(radius <= exact)
    boxed = certified_radius(model, x, y, eps_max, tol=TOL)  # the L-inf cube of the same eps
    assert np.all(boxed <= radius + TOL * eps_max) and np.median(boxed) < np.median(radius)


def _grid(points: int) -> torch.Tensor:
    step = torch.linspace(0, 1, points, dtype=torch.float64)
    return torch.stack(torch.meshgrid(step, step, indexing="ij"), -1).reshape(-1, 2)


def test_on_a_2d_network_the_l2_radius_never_reaches_another_class_of_a_dense_grid():
    """The 2-D ReLU network of the MILP tests on [0, 1]^2: no input's L2 radius exceeds its
    distance to the nearest point of a 401 x 401 grid that the network puts in another class,
    the median radius is over 70 % of that distance (the bounds bite), and every radius is at
    least the L-inf radius (the L2 ball of r lies inside the L-inf box of r; the box alone
    would give the L-inf radius), the median one larger."""
    net, x, y, _ = _in_2d()
    radius = certified_radius(net, x, y, 0.5, norm="l2", tol=TOL)
    grid = _grid(401).float()
    with torch.no_grad():
        labels = net(grid).argmax(1)
    nearest = np.array([float((grid[labels != y[i]] - x[i]).double().norm(dim=1).min())
                        for i in range(len(x))])  # fmt: skip
    assert np.all(radius <= nearest + 1e-9)
    assert np.median(radius / nearest) > 0.7
    linf = certified_radius(net, x, y, 0.5, tol=TOL)
    assert np.all(radius >= linf - TOL * 0.5) and np.median(radius) > np.median(linf)


@pytest.mark.parametrize(("method", "at_least"), [("linear", 20), ("interval", 2)])
def test_l2_attacks_never_break_a_certified_input(method, at_least):
    """A 5 -> 16 -> 16 -> 3 ReLU network on [0, 1]^5: at eps = 0.1 no input that the L2
    certificate (linear or interval bounds) proves is broken by L2 PGD (50 steps, 5
    restarts), both decide some inputs (interval bounds more than their L-inf cube of the
    same eps, which certifies none), and every radius is below the distance C&W finds."""
    net = Model(_net([5, 16, 16, 3], seed=0), preprocessing={"mean": 0.5, "std": 0.1})
    x = torch.rand(60, 5, generator=torch.Generator().manual_seed(3))
    y = net(x).argmax(1)
    if method == "linear":
        certified = is_certified_linear(net, x, y, 0.1, norm="l2")
    else:
        certified = is_certified(net, x, y, 0.1, norm="l2")
        assert not bool(is_certified(net, x, y, 0.1).any())
    broken = torch.zeros(len(x), dtype=torch.bool)
    for seed in range(5):
        broken |= PGD(net, eps=0.1, max_iter=50, norm="l2", random_state=seed)(x, y).success
    assert not bool((certified & broken).any())
    assert int(certified.sum()) > at_least and int(broken.sum()) > 10
    radius = certified_radius(net, x, y, 1.0, method, norm="l2", tol=TOL)
    cw = CarliniWagnerL2(net, steps=200)(x, y)
    found = cw.success.numpy()
    assert found.sum() > 0.8 * len(x)
    assert np.all(radius[found] <= cw.distances.numpy()[found] + 1e-6)


def test_l2_units_are_the_certificate_of_the_rescaled_network():
    """With units s the ellipsoid ||delta / s||_2 <= eps on f is the L2 ball on
    g(x') = f(s x') (a diagonal first layer) at x' = x / s, bounds [0, 1 / s]: the same
    certificates and radii (to the bisection's tolerance); a frozen feature never lowers a
    radius."""
    net, x, y, _ = _in_2d()  # (its preprocessing: (x - 0.5) / 0.1)
    units = torch.tensor([0.5, 2.0])
    first = nn.Linear(2, 2)  # x' -> (s x' - 0.5) / 0.1, the preprocessing of s x'
    first.weight.data, first.bias.data = torch.diag(units / 0.1), torch.full((2,), -5.0)
    inner = Model(nn.Sequential(first, net.module), bounds=(0.0, 1 / units))
    z = x / units
    for eps in (0.05, 0.2):
        ours = is_certified_linear(net, x, y, eps, norm="l2", units=units)
        theirs = is_certified_linear(inner, z, y, eps, norm="l2")
        assert torch.equal(ours, theirs)
    mine = certified_radius(net, x, y, 0.5, norm="l2", scale=units, tol=TOL)
    np.testing.assert_allclose(mine, certified_radius(inner, z, y, 0.5, norm="l2", tol=TOL),
                               atol=1.01 * TOL * 0.5)  # fmt: skip
    frozen = certified_radius(net, x, y, 0.5, norm="l2", scale=[1.0, 0.0], tol=TOL)
    plain = certified_radius(net, x, y, 0.5, norm="l2", tol=TOL)
    assert np.all(frozen >= plain - TOL * 0.5)


def _digits() -> tuple[torch.Tensor, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return torch.from_numpy(X[:60] / 16).float().reshape(-1, 1, 8, 8), y[:60]


def test_a_kmeans_l2_radius_without_a_network_is_the_l2_voronoi_radius():
    """A plain k-means on unbounded inputs: the score differences are affine, so eq. C is exact
    and the linear L2 radius per cluster is the L2 Voronoi radius (eq. R of kmeans_minimal) to
    the bisection's tolerance, and never above it."""
    x, _ = _digits()
    km = KMeans(12, random_state=0).fit(x.reshape(60, -1).numpy())
    flat = x.reshape(60, -1)
    voronoi = kmeans_certified_radius(km, flat.numpy(), "l2")
    eps_max = float(voronoi.max()) * 1.1
    ours = kmeans_certified_radius_through(km, flat, eps_max, bounds=(-np.inf, np.inf),
                                           norm="l2", tol=TOL)  # fmt: skip
    np.testing.assert_allclose(ours, voronoi, atol=TOL * eps_max)
    assert np.all(ours <= voronoi + 1e-9)
    boxed = kmeans_certified_radius_through(
        km, flat, eps_max, bounds=(0.0, 1.0), norm="l2", tol=TOL
    )
    assert np.all(boxed >= ours - TOL * eps_max)  # (the box can only help)


@pytest.mark.parametrize("method", ["linear", "interval"])
def test_a_kmeans_l2_certificate_through_a_relu_network_holds_against_l2_pgd(method):
    """k-means (k = 12) on an 8-d ReLU embedding of the digits: every input's L2 radius by
    linear or interval bounds is certified by ``kmeans_is_certified_linear(norm="l2")`` or
    ``kmeans_is_certified(norm="l2")``, L2 PGD through the network (40 steps, 3 restarts) at
    that radius breaks none of them, the radii are at least the L-inf ones (the L2 ball of r
    lies inside the L-inf box of r), and in balls 1.5 times as large (4 times the looser
    interval radii) PGD breaks some (the attack bites)."""
    x, y = _digits()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    with torch.no_grad():
        km = KMeans(12, random_state=0).fit(net(x).numpy())
    mapping = majority_vote_mapping(km.labels_, y, 12)
    search = {"features": net, "method": method, "tol": TOL}
    l2 = kmeans_certified_radius_through(km, x, 0.5, mapping, norm="l2", **search)
    linf = kmeans_certified_radius_through(km, x, 0.5, mapping, **search)
    assert np.all(l2 >= linf - TOL * 0.5) and np.median(l2) > np.median(linf) > 0
    own = torch.from_numpy(mapping[km.predict(net(x).detach().numpy())])
    certify = kmeans_is_certified_linear if method == "linear" else kmeans_is_certified
    for i in np.flatnonzero(l2 > 0)[:15]:
        row = x[i : i + 1]
        assert bool(certify(km, row, float(l2[i]), mapping, features=net, norm="l2")[0])
        for seed in range(3):
            attack = KMeansPGD(km, mapping, eps=float(l2[i]), max_iter=40, norm="l2",
                               random_start=True, random_state=seed, features=net)  # fmt: skip
            assert not bool(attack(row, own[i : i + 1]).success[0])
    factor = 1.5 if method == "linear" else 4.0
    wider = [bool(KMeansPGD(km, mapping, eps=factor * float(l2[i]), max_iter=40, norm="l2",
                            features=net)(x[i : i + 1], own[i : i + 1]).success[0])
             for i in np.flatnonzero(l2 > 0)[:15]]  # fmt: skip
    assert any(wider)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda n, x, y: is_certified(n, x, y, [0.1, 0.2], norm="l2"),
         "an L2 budget is one number"),
        (lambda n, x, y: certified_radius(n, x, y, 0.1, method="interval", norm="l-2"),
         "norm='l-2'"),
        (lambda n, x, y: is_certified_linear(n, x, y, [0.1, 0.2], norm="l2"),
         "an L2 budget is one number"),
        (lambda n, x, y: is_certified_linear(n, x, y, 0.1, norm="l1"), "norm='l1'"),
        (lambda n, x, y: is_certified_linear(n, x, y, 0.1, norm="l2", units=[1.0, 1.0, 1.0]),
         "units has shape (3,)"),
        (lambda n, x, y: certified_radius(n, x, y, 0.1, norm="L2"), "norm='L2'"),
    ],
)  # fmt: skip
def test_bad_l2_certificate_arguments_are_named(call, message):
    net, x, y, _ = _in_2d()
    with pytest.raises(ValueError, match=message.replace("(", "\\(").replace(")", "\\)")):
        call(net, x, y)
