"""Linear (CROWN) bounds through smooth activations (eq. R of ``linear_relaxations``): each
curvature constant is the activation's largest |f''|, the parallel lines hold every value and
are as tight as their pad allows, and networks of them (layers and functions of a forward) are
bounded soundly and more tightly than by interval bounds, k-means on their features too;
exact verification still refuses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.evasion import PGD, KMeansPGD
from advlab.cluster import KMeans, majority_vote_mapping
from advlab.data import load_dataset
from advlab.defenses import (
    certified_radius,
    check_verifiable,
    is_certified,
    is_certified_linear,
    kmeans_certified_radius_through,
    kmeans_is_certified,
    kmeans_is_certified_linear,
    linear_bound_chain,
)
from advlab.defenses.linear_relaxations import GRID, SmoothActivation, smooth_layer
from advlab.defenses.milp_verification import _layer_bounds, _margin_lower
from tests.conftest import trained_on_digits

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid(),
    "tanh": nn.Tanh(),
    "tanhshrink": nn.Tanhshrink(),
    "logsigmoid": nn.LogSigmoid(),
    "softsign": nn.Softsign(),
    "softplus": nn.Softplus(),
    "softplus_sharp": nn.Softplus(beta=3.0, threshold=2.0),
    "softplus_negative": nn.Softplus(beta=-2.0, threshold=3.0),  # (|beta| / 4, its jump up)
    "elu": nn.ELU(),
    "elu_alpha": nn.ELU(alpha=0.4),
    "elu_negative": nn.ELU(alpha=-0.7),
    "celu": nn.CELU(alpha=0.5),
    "selu": nn.SELU(),
    "gelu": nn.GELU(),
    "gelu_tanh": nn.GELU(approximate="tanh"),
    "silu": nn.SiLU(),
    "mish": nn.Mish(),
    "hardswish": nn.Hardswish(),
}


def _activation(name: str) -> SmoothActivation:
    activation = smooth_layer(ACTIVATIONS[name])
    assert activation is not None
    return activation


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_each_curvature_constant_is_the_largest_second_derivative(name):
    """K against autograd's f'' on [-30, 30] (step 1e-4, kinks excluded): no |f''| above K,
    and K within 1 % of the largest (the derivations are right, not merely safe)."""
    activation = _activation(name)
    grid = torch.linspace(-30, 30, 600_001, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(activation(grid).sum(), grid, create_graph=True)
    (curve,) = torch.autograd.grad(slope.sum(), grid)
    away = torch.ones_like(grid, dtype=torch.bool)
    for kink in activation.kinks:
        away &= (grid.detach() - kink).abs() > 1e-3
    largest = float(curve[away].abs().max())
    assert largest <= activation.curvature
    assert largest >= 0.99 * activation.curvature


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_the_lines_hold_every_value_and_are_tight_to_their_pad(name):
    """Eq. R on 400 intervals (around 0 and the kinks, wide and narrow, and points): on 20,001
    points of each and its kinks, s_l h + t_l <= f(h) <= s_u h + t_u, both lines come within
    their pad K d^2 / 8 (and f's jump where [l, u] holds it) of f, and the interval bounds hold f and are attained within the same
    pad."""
    activation = _activation(name)
    g = torch.Generator().manual_seed(0)
    centre = 3 * torch.randn(400, generator=g, dtype=torch.float64)
    centre[:100] = 0.3 * torch.randn(100, generator=g, dtype=torch.float64)
    width = 6 * torch.rand(400, generator=g, dtype=torch.float64)
    width[300:350], width[350:] = 1e-3 * width[300:350], 0.0
    l, u = (centre - width).numpy(), (centre + width).numpy()
    s_l, t_l, s_u, t_u = activation.relaxation(l, u)
    low, high = activation.interval(l, u)
    points = l[:, None] + (u - l)[:, None] * np.linspace(0, 1, 20_001)[None, :]
    kinks = np.asarray(activation.kinks)[None, :]
    clipped = np.clip(kinks, l[:, None], u[:, None])
    points = np.concatenate([points, clipped], axis=1)  # (the kinks, where f - s h may peak)
    with torch.no_grad():
        values = activation(torch.from_numpy(points)).numpy()
    holds_kink = ((l[:, None] <= kinks) & (kinks <= u[:, None])).any(1)  # (f may jump there)
    pad = activation.curvature * ((u - l) / (GRID - 1)) ** 2 / 8 + activation.jump * holds_kink
    pad += 1e-9
    below, above = values - s_l[:, None] * points, values - s_u[:, None] * points
    assert np.all(below >= t_l[:, None] - 1e-12) and np.all(above <= t_u[:, None] + 1e-12)
    assert np.all(below.min(1) - t_l <= pad) and np.all(t_u - above.max(1) <= pad)
    assert np.all(values >= low[:, None] - 1e-12) and np.all(values <= high[:, None] + 1e-12)
    assert np.all(values.min(1) - low <= pad) and np.all(high - values.max(1) <= pad)


class _SmoothForward(nn.Module):
    """Smooth functions in a user's forward: GELU, tanh, softplus with its beta, sigmoid as a
    method."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc, self.head = nn.Conv2d(1, 4, 3), nn.Linear(144, 32), nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.fc(F.gelu(self.conv(x)).flatten(1)))
        return self.head(F.softplus(x, beta=2.0).sigmoid())


NETWORKS = {
    "sigmoid_tanh": lambda: nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.Sigmoid(),
        nn.Linear(32, 32),
        nn.Tanh(),
        nn.Linear(32, 4),
    ),
    "gelu_silu_mish": lambda: nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.GELU(),
        nn.Linear(32, 32),
        nn.SiLU(),
        nn.Linear(32, 32),
        nn.Mish(),
        nn.Linear(32, 4),
    ),
    "elu_hardswish_relu": lambda: nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ELU(0.5),
        nn.Linear(32, 32),
        nn.Hardswish(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 4),
    ),
    "users_forward": _SmoothForward,
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_networks_of_smooth_activations_are_bounded_soundly_and_tighter_than_intervals(name):
    """On each network: every hidden layer's linear bounds hold its values at 2,000 points of
    one input's box; at eps 0.01 and 0.03 no PGD example breaks a certified input, interval
    certificates imply linear ones, linear ones certify more somewhere; the linear radius is
    at least the interval one and below eps wherever PGD succeeds at eps; and exact
    verification names the smooth activation and points to the linear bounds."""
    net, x, y = trained_on_digits(NETWORKS[name], n=60)
    chain, activations = linear_bound_chain(net, x, logits=True)
    assert any(a is not None for a in activations)
    eps = 0.03
    flat = x[0].reshape(-1).double().numpy()
    lo, hi = np.clip(flat - eps, 0, 1), np.clip(flat + eps, 0, 1)
    bounds = _layer_bounds(chain, lo, hi, "linear", None, activations)
    g = torch.Generator().manual_seed(1)
    v = torch.from_numpy(lo + (hi - lo) * torch.rand(2000, len(lo), generator=g).double().numpy())
    v = v.numpy()
    for k, (l, u) in enumerate(bounds):
        v = v @ chain[k][0].T + chain[k][1]
        assert np.all(v >= l - 1e-9) and np.all(v <= u + 1e-9)
        activation = activations[k]
        v = np.maximum(v, 0.0) if activation is None else activation(torch.from_numpy(v)).numpy()
    logits = v @ chain[-1][0].T + chain[-1][1]
    label = int(y[0])
    margins = logits[:, label : label + 1] - logits
    low = _margin_lower(chain, bounds, lo, hi, label, None, activations)
    others = np.arange(len(low)) != label
    assert np.all(margins[:, others] >= low[None, others] - 1e-9)
    more = False
    for eps in (0.01, 0.03):
        linear, interval = is_certified_linear(net, x, y, eps), is_certified(net, x, y, eps)
        broken = PGD(net, eps=eps, max_iter=40, random_state=0)(x, y).success
        assert not (linear & broken).any() and not (interval & ~linear).any()
        more |= bool((linear & ~interval).any())
    assert more
    radius = {
        m: certified_radius(net, x, y, eps_max=0.05, method=m) for m in ("interval", "linear")
    }
    assert np.all(np.asarray(radius["interval"]) <= np.asarray(radius["linear"]) + 1e-4)
    broken = PGD(net, eps=0.02, max_iter=40, random_state=0)(x, y).success.numpy()
    assert np.all(np.asarray(radius["linear"])[broken] < 0.02)
    with pytest.raises(ValueError, match=r"exact verification: unsupported layer .*linear bounds"):
        check_verifiable(net, x)


def test_kmeans_on_a_smooth_networks_features_is_certified_by_linear_bounds():
    """k-means (12 clusters) on a tanh and GELU network's 8-d embedding of 300 digits: on 80
    of them at eps 0.015, linear bounds certify every input interval bounds certify and more,
    and none that PGD (two random starts) moves to another class; the linear radii are at least
    the interval ones."""
    data = load_dataset("digits", "train")
    images, labels = torch.from_numpy(data.images[:300]), data.labels[:300]
    x = images[:80]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 16), nn.GELU(),
                        nn.Linear(16, 8)).eval()  # fmt: skip
    with torch.no_grad():
        km = KMeans(12, random_state=0).fit(net(images).numpy())
        mapping = majority_vote_mapping(km.predict(net(images).numpy()), labels, 12)
        own = torch.from_numpy(mapping[km.predict(net(x).numpy())])
    eps = 0.015
    interval = kmeans_is_certified(km, x, eps, mapping=mapping, features=net).numpy()
    linear = kmeans_is_certified_linear(km, x, eps, mapping=mapping, features=net).numpy()
    broken = np.zeros(len(x), dtype=bool)
    for seed in range(2):
        pgd = KMeansPGD(km, mapping, eps=eps, max_iter=60, random_start=True, random_state=seed,
                        features=net)  # fmt: skip
        broken |= pgd(x, own).success.numpy()
    assert np.all(linear[interval]) and linear.sum() > interval.sum()
    assert broken.any() and not np.any(linear & broken)
    radius = {m: kmeans_certified_radius_through(km, x, 0.05, mapping=mapping, features=net,
                                                 method=m) for m in ("interval", "linear")}  # fmt: skip
    assert np.all(radius["interval"] <= radius["linear"] + 1e-4)
    assert np.any(radius["linear"] > radius["interval"] + 1e-3)


def test_an_activation_without_a_largest_curvature_is_refused_by_name():
    """CELU with alpha < 0 curves as exp(x / alpha) / alpha below 0, without bound: linear
    bounds refuse it, as a layer and as a function of a forward, and name it; interval bounds
    take it (it rises)."""

    class _Forward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.head = nn.Linear(64, 16), nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(F.celu(self.fc(x.flatten(1)), alpha=-0.5))

    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    layered = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.CELU(-0.5), nn.Linear(16, 3))
    for net in (layered, _Forward()):
        y = net(x).argmax(1)
        with pytest.raises(ValueError, match=r"linear bounds: celu with \{'alpha': -0.5\}"):
            is_certified_linear(net, x, y, 0.01)
        assert is_certified(net, x, y, 0.0).all()
