"""Interval bounds, linear bounds and exact verification on random networks: every layer and
function they take, each activation's parameters drawn over the range torch accepts (negative
slopes, alphas and betas, small and negative thresholds), as layers of a sequence and as
functions of a user's forward, with and without a residual connection. Whatever the draw, no
bound may exceed a margin reached by a sampled point of the box (uniform, vertices, PGD), and
no input proved robust may be broken. The draws reach the certified side as well as the
broken one, so the checks can fail: on the code before f204feb (ELU with alpha < 0 bounded as
monotone, softplus with beta < 0 padded by a negative amount) three of the five tests fail
(networks 6 and 124: interval bounds, 63: linear bounds), and before 0b2f27e one does (network
33: a softplus' jump padded every neuron, so linear bounds certified less than interval ones).
The L2 and k-means tests also fail when eq. C's or eq. V2's radius is scaled by 0.6 or 0.5,
or eq. V's by 0.5."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.evasion import PGD
from advlab.cluster import KMeans
from advlab.defenses import (
    ATTACKED,
    ROBUST,
    check_verifiable,
    is_certified_linear,
    kmeans_is_certified,
    kmeans_is_certified_linear,
    linear_bound_chain,
    margin_lower_bounds,
    verify_kmeans_linf,
    verify_linf,
)
from advlab.defenses.milp_verification import _layer_bounds, _margin_lower
from tests.conftest import Call

SHAPE = (1, 6, 6)
CLASSES = 3


def _activation(r: random.Random) -> tuple[nn.Module, bool]:
    """A random activation layer with random parameters, and whether it is piecewise linear
    (exact verification takes it)."""
    u = r.uniform
    piecewise = [
        lambda: nn.ReLU(), lambda: nn.LeakyReLU(u(-1.5, 1.5)),
        lambda: nn.PReLU(1, init=u(-1, 1)), lambda: nn.Hardtanh(u(-2, 0), u(0.1, 2)),
        lambda: nn.ReLU6(), lambda: nn.Hardsigmoid(), lambda: nn.Softshrink(u(0, 1)),
    ]  # fmt: skip
    smooth = [
        lambda: nn.ELU(u(-2, 2)), lambda: nn.CELU(u(0.2, 2)), lambda: nn.SELU(),
        lambda: nn.Sigmoid(), lambda: nn.Tanh(), lambda: nn.GELU(),
        lambda: nn.GELU(approximate="tanh"), lambda: nn.SiLU(), lambda: nn.Mish(),
        lambda: nn.Softplus(beta=r.choice([-3.0, -1.0, 0.5, 1.0, 4.0]), threshold=u(-2, 5)),
        lambda: nn.Hardswish(), lambda: nn.LogSigmoid(), lambda: nn.Softsign(),
        lambda: nn.Tanhshrink(),
    ]  # fmt: skip
    is_piecewise = r.random() < 0.4
    return r.choice(piecewise if is_piecewise else smooth)(), is_piecewise


def _function(r: random.Random) -> tuple[Call, bool]:
    """A random activation called as a function in a forward, and whether it is piecewise
    linear."""
    a, b = r.uniform(-2, 2), r.uniform(0.2, 2)
    beta, threshold = r.choice([-2.0, -0.5, 1.0, 3.0]), r.uniform(-1, 4)
    piecewise = [
        lambda x: F.leaky_relu(x, a), lambda x: F.hardtanh(x, -b, b), F.relu6,
        lambda x: x.clamp(-b, b), lambda x: x.abs(), torch.relu,
    ]  # fmt: skip
    smooth = [
        lambda x: F.elu(x, a), lambda x: F.softplus(x, beta, threshold), F.gelu, torch.tanh,
        F.silu, F.mish, lambda x: F.celu(x, b), F.selu, lambda x: x.sigmoid(),
    ]  # fmt: skip
    is_piecewise = r.random() < 0.4
    return Call(r.choice(piecewise if is_piecewise else smooth)), is_piecewise


class _Forward(nn.Module):
    """A user's forward: functions between linear layers, optionally a residual one."""

    def __init__(self, r: random.Random) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(36, 8), nn.Linear(8, 8)
        (self.f, pw_f), (self.g, pw_g) = _function(r), _function(r)
        self.residual = r.random() < 0.4
        self.head = nn.Linear(8, CLASSES)
        self.piecewise = pw_f and pw_g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.f(self.first(x.flatten(1)))
        h = h + self.g(self.second(h)) if self.residual else self.g(self.second(h))
        return self.head(h)


def _sequence(r: random.Random) -> tuple[nn.Sequential, bool]:
    """A random sequence: perhaps a convolution, pooling and batch norm (random statistics),
    then one or two hidden linear layers, each followed by a random activation."""
    layers: list[nn.Module] = []
    piecewise = True
    if r.random() < 0.5:
        channels = r.choice([2, 3])
        activation, pw = _activation(r)
        layers += [nn.Conv2d(1, channels, 3, padding=r.choice([0, 1])), activation]
        piecewise &= pw
        if r.random() < 0.5:
            layers.append(r.choice([nn.MaxPool2d(2), nn.AvgPool2d(2), nn.MaxPool2d(3, 2, 1)]))
        if r.random() < 0.3:
            norm = nn.BatchNorm2d(channels)
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.2, 2)
            norm.weight.data.uniform_(-2, 2)
            layers.append(norm)
    net = nn.Sequential(*layers, nn.Flatten())
    width = net(torch.zeros(1, *SHAPE)).shape[1]
    for _ in range(r.choice([1, 2])):
        activation, pw = _activation(r)
        hidden = r.choice([6, 10])
        net.extend([nn.Linear(width, hidden), activation])
        piecewise &= pw
        width = hidden
    net.append(nn.Linear(width, CLASSES))
    return net, piecewise


def _network(seed: int) -> tuple[nn.Module, bool]:
    """Network ``seed`` (weights scaled by a random factor, so that both certified and broken
    inputs occur) and whether exact verification takes it (linear bounds take all)."""
    r = random.Random(seed)
    torch.manual_seed(seed)
    if r.random() < 0.35:
        net: nn.Module = _Forward(r)
        piecewise = net.piecewise
    else:
        net, piecewise = _sequence(r)
    scale = r.uniform(0.5, 2.5)
    for p in net.parameters():
        p.data.mul_(scale)
    return net.eval(), piecewise


def _points(x: torch.Tensor, eps: Any, g: torch.Generator, norm: str = "linf") -> torch.Tensor:
    """4,000 points of the ball around one input, clipped to [0, 1]: in L-inf 3,000 uniform
    points and 1,000 vertices of its box (``eps`` a number or one per feature), in L2 points
    uniform in the ball."""
    if norm == "l2":
        direction = torch.randn(4000, *SHAPE, generator=g, dtype=x.dtype)
        length = eps * torch.rand(4000, 1, 1, 1, generator=g) ** (1 / x.numel())
        return (
            x + direction / direction.flatten(1).norm(dim=1)[:, None, None, None] * length
        ).clamp(0, 1)
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    uniform = torch.rand(3000, *SHAPE, generator=g)
    vertex = (torch.rand(1000, *SHAPE, generator=g) < 0.5).float()
    return torch.cat([lo + uniform * (hi - lo), lo + vertex * (hi - lo)])


def _reached_margins(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Any, seed: int,
                     norm: str = "linf") -> np.ndarray:  # fmt: skip
    """Per input, the least z_y - z_j per class j over ``_points`` of its ball and PGD's
    point: margins the bounds must not exceed."""
    g = torch.Generator().manual_seed(seed)
    adversarial = PGD(net, eps=eps, max_iter=30, norm=norm, random_state=seed)(x, y).x_adv
    reached = []
    with torch.no_grad():
        for i in range(len(x)):
            z = net(torch.cat([_points(x[i], eps, g, norm), adversarial[i : i + 1]])).double()
            reached.append((z[:, y[i] : y[i] + 1] - z).min(0).values.numpy())
    return np.stack(reached)


def _linear_margins(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> np.ndarray:
    """Linear (CROWN) lower bounds of z_y - z_j per input and class (0 at j = y)."""
    chain, activations = linear_bound_chain(net, x, logits=True)
    margins = []
    for i in range(len(x)):
        flat = x[i].reshape(-1).double().numpy()
        lo, hi = np.clip(flat - eps, 0, 1), np.clip(flat + eps, 0, 1)
        bounds = _layer_bounds(chain, lo, hi, "linear", None, activations)
        low = _margin_lower(chain, bounds, lo, hi, int(y[i]), None, activations)
        low[int(y[i])] = 0.0
        margins.append(low)
    return np.stack(margins)


def _exceeds(bound: np.ndarray, reached: np.ndarray) -> bool:
    return bool(np.any(bound > reached + 1e-4 * (1 + np.abs(reached))))


def _certified(margins: np.ndarray, y: torch.Tensor) -> np.ndarray:
    """Whether every margin but the label's own is bounded above 0."""
    others = np.ones_like(margins, dtype=bool)
    others[np.arange(len(y)), y.numpy()] = False
    return np.where(others, margins, np.inf).min(1) > 0


@pytest.mark.parametrize("block", range(4))
def test_no_bound_exceeds_a_margin_a_point_of_the_box_reaches(block):
    """50 networks per block, 4 inputs each at eps 0.01, 0.05 or 0.15: interval and linear
    margins never exceed a reached margin, and linear bounds (residual forwards included, eq. P)
    certify every input interval bounds do. Both bounds certify some inputs and leave others
    (the draws discriminate)."""
    certified = {"interval": 0, "linear": 0}
    pairs = 0
    for seed in range(50 * block, 50 * block + 50):
        net, _ = _network(seed)
        x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            y = net(x).argmax(1)
        eps = (0.01, 0.05, 0.15)[seed % 3]
        reached = _reached_margins(net, x, y, eps, seed)
        interval = margin_lower_bounds(net, x, y, eps).detach().double().numpy()
        assert not _exceeds(interval, reached), f"network {seed}: interval bounds\n{net}"
        pairs += len(x)
        certified["interval"] += int(_certified(interval, y).sum())
        linear = _linear_margins(net, x, y, eps)
        assert not _exceeds(linear, reached), f"network {seed}: linear bounds\n{net}"
        by_interval, by_linear = _certified(interval, y), _certified(linear, y)
        assert not (by_interval & ~by_linear).any(), f"network {seed}"
        certified["linear"] += int(by_linear.sum())
    assert 0 < certified["interval"] <= certified["linear"] < pairs


def test_no_input_proved_robust_by_the_programs_is_broken():
    """The random networks exact verification takes (piecewise-linear activations, max and
    average pooling, batch norm, a user's forward of such functions, residual ones included):
    they are exactly the piecewise-linear draws; no input proved robust at their
    eps is broken by a point of its box, every counterexample is misclassified within eps,
    and both statuses occur."""
    statuses: list[int] = []
    for seed in range(200):
        net, piecewise = _network(seed)
        x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(seed))
        if not piecewise:
            with pytest.raises(ValueError, match="exact verification"):
                check_verifiable(net, x, logits=True)
            continue
        with torch.no_grad():
            y = net(x).argmax(1)
        eps = (0.01, 0.05, 0.15)[seed % 3]
        result = verify_linf(net, x, y, eps, time_limit=20)
        reached = _reached_margins(net, x, y, eps, seed)
        reached[np.arange(len(x)), y.numpy()] = np.inf
        broken = reached.min(1) < 0
        assert not (broken & (result.status == ROBUST)).any(), f"network {seed}\n{net}"
        attacked = torch.from_numpy(result.status == ATTACKED)
        with torch.no_grad():
            assert bool((net(result.x_adv).argmax(1) != y)[attacked].all())
        assert float((result.x_adv - x).abs().amax()) <= eps + 1e-6
        statuses += result.status.tolist()
    assert {ROBUST, ATTACKED} <= set(statuses)


def test_l2_and_per_feature_bounds_hold_every_point_of_their_balls():
    """100 networks, 4 inputs each: interval margins over L2 balls (eps 0.05, 0.3 or 1.0) and
    over boxes of one eps per feature (uniform in [0, 0.1]) never exceed a margin a point of
    the ball or PGD reaches; linear certificates hold no broken input. Both norms certify some
    inputs and sampling breaks others."""
    certified, broken = {"l2": 0, "per_feature": 0}, 0
    for seed in range(100):
        net, _ = _network(seed)
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(4, *SHAPE, generator=g)
        with torch.no_grad():
            y = net(x).argmax(1)
        radius, per_feature = (0.05, 0.3, 1.0)[seed % 3], 0.1 * torch.rand(SHAPE, generator=g)
        for norm, eps in (("l2", radius), ("per_feature", per_feature)):
            kind = "l2" if norm == "l2" else "linf"
            reached = _reached_margins(net, x, y, eps, seed, kind)
            bound = margin_lower_bounds(net, x, y, eps, norm=kind).detach().double().numpy()
            assert not _exceeds(bound, reached), f"network {seed}: {norm} interval bounds\n{net}"
            reached[np.arange(len(x)), y.numpy()] = np.inf
            broken += int((reached.min(1) < 0).sum())
            linear = is_certified_linear(net, x, y, eps, norm=kind).numpy()
            assert not (linear & (reached.min(1) < 0)).any(), f"network {seed}: {norm}\n{net}"
            certified[norm] += int(linear.sum())
    assert min(certified.values()) > 0 and broken > 0


def _moved(kmeans: KMeans, mapping: np.ndarray, net: nn.Module, x: torch.Tensor, eps: float,
           g: torch.Generator, norm: str) -> np.ndarray:  # fmt: skip
    """Whether some of ``_points`` of each input's ball lands in a cluster of another class."""
    moved = []
    with torch.no_grad():
        for one in x:
            points = torch.cat([one[None], _points(one, eps, g, norm)])
            classes = mapping[kmeans.predict(net(points).numpy())]
            moved.append(bool((classes != classes[0]).any()))
    return np.array(moved)


def test_kmeans_certificates_on_random_features_hold_every_point_of_their_balls():
    """k-means (6 clusters, mapped to 3 classes) on 4-d features of 80 random sequences (one
    in four affine), fitted on 200 random images: no input certified by interval or linear bounds (L-inf and
    L2) or proved robust by the programs (piecewise-linear features) has a point of its ball
    in a cluster of another class; linear certificates hold every interval one, and the
    programs prove every linear one. Each certifies some inputs and sampling breaks others."""
    counts = dict.fromkeys(("interval", "linear", "exact", "l2", "broken"), 0)
    for seed in range(80):
        r = random.Random(seed)
        torch.manual_seed(seed)
        net, piecewise = _sequence(r)
        net[-1] = nn.Linear(net[-1].in_features, 4)
        if seed % 4 == 0:  # (an affine embedding: the L2 ball reaches the clusters, eq. V2)
            net, piecewise = nn.Sequential(nn.Flatten(), nn.Linear(36, 4)), True
        for p in net.parameters():
            p.data.mul_(r.uniform(0.5, 2.5))
        net.eval()
        g = torch.Generator().manual_seed(seed)
        images = torch.rand(200, *SHAPE, generator=g)
        with torch.no_grad():
            kmeans = KMeans(6, random_state=seed).fit(net(images).numpy())
        mapping, x = np.array([0, 1, 2, 0, 1, 2]), images[:4]
        eps = (0.01, 0.05, 0.15)[seed % 3]
        radius = 10 * eps
        broken = _moved(kmeans, mapping, net, x, eps, g, "linf")
        broken_l2 = _moved(kmeans, mapping, net, x, radius, g, "l2")
        given = {"mapping": mapping, "features": net}
        interval = kmeans_is_certified(kmeans, x, eps, **given).numpy()
        linear = kmeans_is_certified_linear(kmeans, x, eps, **given).numpy()
        l2 = kmeans_is_certified_linear(kmeans, x, radius, norm="l2", **given).numpy()
        l2 |= kmeans_is_certified(kmeans, x, radius, norm="l2", **given).numpy()
        assert not (interval & broken).any() and not (linear & broken).any(), f"{seed}\n{net}"
        assert not (l2 & broken_l2).any() and not (interval & ~linear).any(), f"{seed}\n{net}"
        if piecewise:
            robust = verify_kmeans_linf(kmeans, x, eps, time_limit=20, **given).status == ROBUST
            assert not (robust & broken).any() and not (linear & ~robust).any(), f"{seed}\n{net}"
            counts["exact"] += int(robust.sum())
        for name, value in (("interval", interval), ("linear", linear), ("l2", l2),
                            ("broken", broken)):  # fmt: skip
            counts[name] += int(value.sum())
    assert min(counts.values()) > 0, counts
