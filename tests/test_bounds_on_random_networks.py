"""Interval bounds, linear bounds and exact verification on random networks: every layer and
function they take, each activation's parameters drawn over the range torch accepts (negative
slopes, alphas and betas, small and negative thresholds), as layers of a sequence and as
functions of a user's forward, with and without a residual connection. Whatever the draw, no
bound may exceed a margin reached by a sampled point of the box (uniform, vertices, PGD), and
no input proved robust may be broken. The draws reach the certified side as well as the
broken one, so the checks can fail: on the code before f204feb (ELU with alpha < 0 bounded as
monotone, softplus with beta < 0 padded by a negative amount) three of the five tests fail
(networks 6 and 124: interval bounds, 63: linear bounds), and before 0b2f27e one does (network
33: a softplus' jump padded every neuron, so linear bounds certified less than interval ones)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.evasion import PGD
from advlab.defenses import (
    ATTACKED,
    ROBUST,
    check_verifiable,
    linear_bound_chain,
    margin_lower_bounds,
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


def _network(seed: int) -> tuple[nn.Module, bool, bool]:
    """Network ``seed`` (weights scaled by a random factor, so that both certified and broken
    inputs occur), whether exact verification takes it and whether linear bounds do."""
    r = random.Random(seed)
    torch.manual_seed(seed)
    if r.random() < 0.35:
        net: nn.Module = _Forward(r)
        piecewise, chain = net.piecewise and not net.residual, not net.residual
    else:
        net, piecewise = _sequence(r)
        chain = True
    scale = r.uniform(0.5, 2.5)
    for p in net.parameters():
        p.data.mul_(scale)
    return net.eval(), piecewise, chain


def _reached_margins(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int):
    """Per input, the least z_y - z_j per class j over 3,000 uniform points, 1,000 vertices of
    its box and PGD's point: margins the bounds must not exceed."""
    g = torch.Generator().manual_seed(seed)
    adversarial = PGD(net, eps=eps, max_iter=30, random_state=seed)(x, y).x_adv
    reached = []
    with torch.no_grad():
        for i in range(len(x)):
            lo, hi = (x[i] - eps).clamp(0, 1), (x[i] + eps).clamp(0, 1)
            uniform = torch.rand(3000, *SHAPE, generator=g)
            vertex = (torch.rand(1000, *SHAPE, generator=g) < 0.5).float()
            points = torch.cat([lo + uniform * (hi - lo), lo + vertex * (hi - lo),
                                adversarial[i : i + 1]])  # fmt: skip
            z = net(points).double()
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
    margins never exceed a reached margin; linear bounds are refused only where the forward
    adds two varying values, and certify every input interval bounds do. Both bounds certify
    some inputs and leave others (the draws discriminate)."""
    certified = {"interval": 0, "linear": 0}
    pairs = 0
    for seed in range(50 * block, 50 * block + 50):
        net, _, chain = _network(seed)
        x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            y = net(x).argmax(1)
        eps = (0.01, 0.05, 0.15)[seed % 3]
        reached = _reached_margins(net, x, y, eps, seed)
        interval = margin_lower_bounds(net, x, y, eps).detach().double().numpy()
        assert not _exceeds(interval, reached), f"network {seed}: interval bounds\n{net}"
        pairs += len(x)
        certified["interval"] += int(_certified(interval, y).sum())
        if not chain:
            with pytest.raises(ValueError, match="two varying values"):
                linear_bound_chain(net, x, logits=True)
            continue
        linear = _linear_margins(net, x, y, eps)
        assert not _exceeds(linear, reached), f"network {seed}: linear bounds\n{net}"
        by_interval, by_linear = _certified(interval, y), _certified(linear, y)
        assert not (by_interval & ~by_linear).any(), f"network {seed}"
        certified["linear"] += int(by_linear.sum())
    assert 0 < certified["interval"] <= certified["linear"] < pairs


def test_no_input_proved_robust_by_the_programs_is_broken():
    """The random networks exact verification takes (piecewise-linear activations, max and
    average pooling, batch norm, a user's forward of such functions): they are exactly those
    of piecewise-linear draws without a residual connection; no input proved robust at their
    eps is broken by a point of its box, every counterexample is misclassified within eps,
    and both statuses occur."""
    statuses: list[int] = []
    for seed in range(200):
        net, piecewise, _ = _network(seed)
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
