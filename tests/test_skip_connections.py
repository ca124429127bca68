"""Exact verification and linear bounds through a forward with skip connections (eq. P of
``milp_verification._Dag``): residual blocks, concatenations and branches of different depths
become one chain whose ReLU layers carry the values used later as relu(v) - relu(-v). The
chains compute their models; on a residual network whose skipped values are non-negative the
verdicts, minimal distances and linear certificates equal those of the same function written
as a sequence; through two skips and a concatenation in 2-D the programs' minimal distances
are a grid's; k-means on such features is certified soundly; operations that are not affine
are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.evasion import KMeansPGD
from advlab.cluster import KMeans
from advlab.defenses import (
    ATTACKED,
    ROBUST,
    check_verifiable,
    is_certified,
    is_certified_linear,
    kmeans_is_certified,
    kmeans_is_certified_linear,
    linear_bound_chain,
    verify_kmeans_linf,
    verify_linf,
)
from advlab.defenses.linear_relaxations import MixedActivation
from advlab.defenses.milp_verification import _replay
from tests.conftest import trained_on_digits


class _BasicBlock(nn.Module):
    """ResNet's basic block: conv-BN-ReLU-conv-BN, plus the input (or its 1x1 convolution and
    BN where the stride or channels change), then a ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))  # fmt: skip
        for norm in self.modules():
            if isinstance(norm, nn.BatchNorm2d):
                norm.running_mean.uniform_(-0.5, 0.5)
                norm.running_var.uniform_(0.5, 2.0)
                norm.weight.data.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _Dense(nn.Module):
    """A DenseNet-like forward: each layer's LeakyReLU output concatenated to its input."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(36, 6), nn.Linear(42, 6), nn.Linear(48, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.size(0), -1)
        x = torch.cat([x, F.leaky_relu(self.a(x), 0.2)], 1)
        x = torch.cat([x, F.hardtanh(self.b(x))], dim=1)
        return self.head(x)


class _Branches(nn.Module):
    """Branches of depths 0, 1 and 2 from one value, weighed and summed (the depth-0 one a
    second call of the same layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(36, 5), nn.Linear(36, 5), nn.Linear(5, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        deep = self.c(torch.relu(self.b(x))).clamp(min=-0.5)
        return self.head(torch.relu(self.a(x)) - 0.5 * deep + self.a(x) / 2)


class _SmoothResidual(nn.Module):
    """tanh, then a residual ELU layer: linear bounds only."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(36, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x.flatten(1)))
        return self.head(h + F.elu(self.b(h)))


class _PooledResidual(nn.Module):
    """A convolution, ReLU and 2x2 max pooling (eq. M: two rounds), plus the input average
    pooled (carried through the three layers), then a hardtanh head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(18, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(F.relu(self.conv(x)), 2) + F.avg_pool2d(x, 2)
        return self.head(F.hardtanh(pooled).flatten(1))


def _resnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), _BasicBlock(3, 3), _BasicBlock(3, 4, stride=2),
        nn.Flatten(), nn.Linear(36, 3),
    )  # fmt: skip


# each network and its number of activation layers (the levels of eq. P)
NETWORKS = {
    "resnet": (_resnet, 5),
    "dense": (_Dense, 2),
    "branches": (_Branches, 2),
    "smooth residual": (_SmoothResidual, 2),
    "pooled residual": (_PooledResidual, 4),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_a_forward_with_skip_connections_is_a_chain_that_computes_it(name):
    """Each network's chain has one activation layer per level and computes its logits on
    inputs and on points of either sign to float64's precision (float64 networks; the ResNet's
    carried block inputs, ReLUs' outputs, take one neuron each); linear and
    interval bounds of its margins are sound at sampled points of the box."""
    make, levels = NETWORKS[name]
    torch.manual_seed(0)
    net = make().double().eval()
    x = torch.rand(5, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    chain, activations = linear_bound_chain(net, x)
    assert len(chain) == levels + 1 and len(activations) == levels
    smooth = name == "smooth residual"
    assert any(isinstance(a, MixedActivation) for a in activations) == smooth
    for points in (x, 2 * x - 1):
        with torch.no_grad():
            expected = net(points).numpy()
        replayed = _replay(chain, points.reshape(5, -1).numpy(), activations)
        np.testing.assert_allclose(replayed, expected, rtol=0, atol=1e-10)
    if not smooth:
        assert len(check_verifiable(net, x)) == levels + 1
    if name == "resnet":  # (the first block's input, a ReLU's output, takes one neuron; the
        # second's strided shortcut, of either sign, two)
        assert [len(c) for _, c in chain[:-1]] == [108, 108 + 108, 108, 36 + 2 * 36, 36]
    y = net(x).argmax(1)
    for eps in (0.01, 0.05):
        linear = is_certified_linear(net, x, y, eps)
        assert (is_certified(net, x, y, eps) <= linear).all()  # (at least IBP's)
        g = torch.Generator().manual_seed(2)
        for i in np.flatnonzero(linear.numpy()):
            points = (x[i] + eps * (2 * torch.rand(2000, *x.shape[1:], generator=g,
                                                   dtype=x.dtype) - 1)).clamp(0, 1)  # fmt: skip
            with torch.no_grad():
                assert (net(points).argmax(1) == y[i]).all(), f"input {i}, eps {eps}"


class _ResidualMLP(nn.Module):
    """x + second(relu(first(x))), a ReLU and a head: on inputs >= 0, x = relu(x)."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second, self.head = nn.Linear(64, 16), nn.Linear(16, 64), nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.head(F.relu(x + self.second(F.relu(self.first(x)))))


def _as_sequence(net: _ResidualMLP) -> nn.Sequential:
    """The same function on inputs >= 0 as a sequence: [first; I] -> ReLU -> [second, I]."""
    first, second = nn.Linear(64, 80), nn.Linear(80, 64)
    with torch.no_grad():
        first.weight.copy_(torch.cat([net.first.weight, torch.eye(64)]))
        first.bias.copy_(torch.cat([net.first.bias, torch.zeros(64)]))
        second.weight.copy_(torch.cat([net.second.weight, torch.eye(64)], 1))
        second.bias.copy_(net.second.bias)
    return nn.Sequential(nn.Flatten(), first, nn.ReLU(), second, nn.ReLU(), net.head).eval()


def test_a_residual_network_is_verified_as_the_same_function_written_as_a_sequence():
    """A residual MLP trained on the 8x8 digits: the statuses and minimal L-inf distances of
    the programs, and the linear certificates, equal those of its sequence (the skipped
    inputs, in [0, 1], pass their ReLUs unchanged there); both statuses occur."""
    net, x, y = trained_on_digits(_ResidualMLP, n=24)
    sequence = _as_sequence(net)
    with torch.no_grad():
        torch.testing.assert_close(sequence(x), net(x), rtol=0, atol=1e-5)
    ours, theirs = (verify_linf(m, x, y, 0.06, minimal=True) for m in (net, sequence))
    assert set(theirs.status.tolist()) == {ROBUST, ATTACKED}
    np.testing.assert_array_equal(ours.status, theirs.status)
    np.testing.assert_allclose(ours.distances, theirs.distances, rtol=1e-5, atol=1e-6)
    for eps in (0.02, 0.05):
        linear = is_certified_linear(net, x, y, eps)
        assert torch.equal(linear, is_certified_linear(sequence, x, y, eps))
        assert 0 < int(linear.sum()) < len(x)


class _TwoSkips(nn.Module):
    """A 2-D input through a LeakyReLU layer, a residual ReLU layer and a concatenation."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.a, self.b, self.head = nn.Linear(2, 8), nn.Linear(8, 2), nn.Linear(10, 3)
        with torch.no_grad():  # (steeper: three classes in the unit square)
            self.a.weight.mul_(6.0)
            self.a.bias.mul_(3.0)
            self.head.weight.mul_(4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.a(x), 0.1)
        r = x - self.b(torch.relu(h))
        return self.head(torch.cat([r, h], 1))


def test_minimal_distances_through_two_skips_are_a_grids():
    """In 2-D, each input's exact minimal L-inf perturbation (``minimal=True``) is within a
    grid step of the nearest point of another class on a 401 x 401 grid of its box, and the
    inputs the programs prove robust have no such point; both statuses occur."""
    net = _TwoSkips().double().eval()
    x = 0.3 + 0.4 * torch.rand(
        12, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
    )
    y = net(x).argmax(1)
    eps = 0.1
    result = verify_linf(net, x, y, eps, minimal=True)
    assert set(result.status.tolist()) == {ROBUST, ATTACKED}
    step = torch.linspace(-eps, eps, 401, dtype=torch.float64)
    offsets = torch.stack(torch.meshgrid(step, step, indexing="ij"), -1).reshape(-1, 2)
    for i in range(len(x)):
        with torch.no_grad():
            other = net(x[i] + offsets).argmax(1) != y[i]
        if result.status[i] == ROBUST:
            assert not other.any(), f"input {i}"
            continue
        nearest = float(offsets[other].abs().max(1).values.min())
        assert abs(result.distances[i] - nearest) <= 2 * eps / 400 + 1e-9, f"input {i}"


def test_operations_that_are_not_affine_are_named_in_a_forward_with_a_skip():
    """Batch norm in training mode inside a block, a product or quotient of two varying
    values, and a sum over an axis are refused by name."""

    class Product(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.relu(self.a(x))

    class Quotient(Product):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.a(x)) / (x + 2)

    class Summed(Product):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.a(x)).sum(1, keepdim=True) + x

    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match="BatchNorm2d in training mode"):
        check_verifiable(_resnet().train(), torch.rand(3, 1, 6, 6))
    with pytest.raises(ValueError, match=r"not affine in its inputs, 'mul' .*skip connection"):
        check_verifiable(Product(), x)
    with pytest.raises(ValueError, match="not affine in its inputs, 'truediv'"):
        check_verifiable(Quotient(), x)
    with pytest.raises(ValueError, match="the operation 'sum'"):
        linear_bound_chain(Summed(), x)


@pytest.mark.parametrize("make", [_Dense, _SmoothResidual], ids=["dense", "smooth residual"])
def test_kmeans_on_the_features_of_a_forward_with_skips_is_certified_soundly(make):
    """k-means (6 clusters, 3 classes) on the features of a forward with skip connections:
    at eps 0.05, linear certificates hold every interval one and PGD breaks none of them; the
    programs (piecewise-linear features) prove every linear certificate and PGD breaks no
    input they prove robust; each side occurs."""
    torch.manual_seed(0)
    net = make().eval()
    images = torch.rand(200, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = net(images).numpy()
    kmeans, mapping = KMeans(6, random_state=0).fit(features), np.array([0, 1, 2, 0, 1, 2])
    x, own = images[:20], torch.from_numpy(mapping[kmeans.predict(features[:20])])
    given = {"mapping": mapping, "features": net}
    interval = kmeans_is_certified(kmeans, x, 0.05, **given).numpy()
    linear = kmeans_is_certified_linear(kmeans, x, 0.05, **given).numpy()
    broken = KMeansPGD(kmeans, mapping, eps=0.05, max_iter=40, random_start=True, random_state=0,
                       features=net)(x, own).success.numpy()  # fmt: skip
    assert not (interval & ~linear).any() and not (linear & broken).any()
    assert linear.any() and broken.any()
    if make is _Dense:
        robust = verify_kmeans_linf(kmeans, x, 0.05, time_limit=10, **given).status == ROBUST
        assert not (linear & ~robust).any() and not (robust & broken).any()
        assert robust.sum() > linear.sum()
