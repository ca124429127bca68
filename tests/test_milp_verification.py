"""Exact L-inf verification by mixed-integer programming: against brute force in 2-D, against
PGD and interval bounds on a deeper network, and its refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.evasion import PGD
from advlab.defenses import (
    ATTACKED,
    ROBUST,
    UNKNOWN,
    certified_radius,
    check_verifiable,
    is_certified,
    is_certified_linear,
    verify_linf,
)
from advlab.defenses.milp_verification import affine_relu_chain
from advlab.models import Model
from tests.conftest import Call, trained_on_digits


def _net(widths: list[int], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in itertools.pairwise(widths[:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers).eval()


def _in_2d() -> tuple[Model, torch.Tensor, torch.Tensor, float]:
    """A 2 -> 12 -> 12 -> 3 network with preprocessing, 60 inputs of [0, 1]^2, their
    predicted labels, and eps."""
    net = Model(_net([2, 12, 12, 3], seed=0), preprocessing={"mean": 0.5, "std": 0.1})
    x = torch.rand(60, 2, generator=torch.Generator().manual_seed(1))
    return net, x, net(x).argmax(1), 0.05


def _grid(eps: float, points: int) -> torch.Tensor:
    """The offsets of a points x points grid of [-eps, eps]^2."""
    step = torch.linspace(-eps, eps, points)
    return torch.stack(torch.meshgrid(step, step, indexing="ij"), -1).reshape(-1, 2)


def test_verification_in_2d_agrees_with_a_grid_search():
    """A 2 -> 12 -> 12 -> 3 network on [0, 1]^2 (inputs standardised, so that its boundaries
    cross the box): an input is proved robust only where no point of a fine grid of its box
    changes the class, and every input with such a grid point is attacked, by a counterexample
    inside the box that the network confirms."""
    net, x, y, eps = _in_2d()
    result = verify_linf(net, x, y, eps)
    offsets = _grid(eps, 81)
    for i in range(len(x)):
        box = (x[i] + offsets).clamp(0, 1)
        grid_attacked = bool((net(box).argmax(1) != y[i]).any())
        if grid_attacked:
            assert result.status[i] == ATTACKED
        if result.status[i] == ATTACKED:
            z = result.x_adv[i : i + 1]
            assert float((z - x[i]).abs().max()) <= eps + 1e-6
            assert int(net(z).argmax()) != int(y[i])
    assert set(result.status.tolist()) == {ROBUST, ATTACKED}  # both outcomes occur


def test_the_minimal_perturbation_in_2d_is_the_grids_nearest_attacking_point():
    """``minimal=True`` on the network of the grid test: the same statuses, and for every input
    with an attacking grid point the grid's nearest one lies between the minimal distance and
    one grid step above it; each counterexample changes the class within eps, and its size is
    the reported distance to within a hair."""
    net, x, y, eps = _in_2d()
    plain = verify_linf(net, x, y, eps)
    least = verify_linf(net, x, y, eps, minimal=True)
    np.testing.assert_array_equal(plain.status, least.status)
    offsets = _grid(eps, 161)
    attacked = np.flatnonzero(least.status == ATTACKED)
    for i in attacked:
        box = (x[i] + offsets).clamp(0, 1)
        hits = (net(box).argmax(1) != y[i]).numpy()
        nearest = float((box[hits] - x[i]).abs().max(1).values.min())
        assert least.distances[i] - 1e-6 <= nearest <= least.distances[i] + 2 * eps / 160
        z = least.x_adv[i : i + 1]
        size = float((z - x[i]).abs().max())
        assert int(net(z).argmax()) != int(y[i]) and least.distances[i] - 1e-6 <= size <= eps + 1e-6
        assert plain.distances[i] <= eps + 1e-6
    assert len(attacked) > 5
    assert np.all(np.isinf(least.distances[least.status == ROBUST]))


def test_verification_is_between_interval_bounds_and_pgd_and_finds_what_pgd_misses():
    """A 30 -> 40 -> 40 -> 5 network with preprocessing: every input interval bounds certify is
    proved robust, no input proved robust is broken by PGD, every counterexample is confirmed,
    and the program finds counterexamples that 20 steps of PGD miss."""
    net = _net([30, 40, 40, 5], seed=3)
    model = Model(net, preprocessing={"mean": 0.5, "std": 0.25})
    g = torch.Generator().manual_seed(2)
    x = torch.rand(40, 30, generator=g)
    y = model(x).argmax(1)
    eps = 0.01
    result = verify_linf(model, x, y, eps)
    certified = is_certified(model, x, y, eps).numpy()
    pgd = PGD(model, eps=eps, max_iter=20, random_state=0)(x, y).success.numpy()
    robust, attacked = result.status == ROBUST, result.status == ATTACKED
    assert np.all(robust[certified]) and not np.any(robust & pgd)
    assert np.all(model(result.x_adv[attacked]).argmax(1).numpy() != y[attacked].numpy())
    assert float((result.x_adv - x).abs().max()) <= eps + 1e-6
    assert np.any(attacked & ~pgd) and np.any(robust & ~certified)
    assert not np.any(result.status == UNKNOWN)


def test_misclassified_inputs_and_a_time_limit():
    net = _net([4, 8, 3], seed=5)
    x = torch.rand(6, 4)
    wrong = (net(x).argmax(1) + 1) % 3
    assert np.all(verify_linf(net, x, wrong, 0.01).status == ATTACKED)
    big = _net([30, 200, 200, 10], seed=6)  # every ReLU unstable at 0.5: programs too hard
    x = torch.rand(2, 30, generator=torch.Generator().manual_seed(0))
    tiny = verify_linf(big, x, big(x).argmax(1), 0.5, time_limit=1e-3)
    assert np.all(tiny.status == UNKNOWN)


def test_what_it_cannot_verify_is_named():
    pooled = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(ValueError, match="max pooling that returns its indices"):
        check_verifiable(pooled.eval(), torch.rand(2, 1, 8, 8))
    squashed = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="unsupported layer Tanh"):
        check_verifiable(squashed.eval(), torch.rand(2, 1, 8, 8))
    swapped = _net([4, 3, 2], seed=0)
    swapped.forward = lambda v: -nn.Sequential.forward(swapped, v)  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="do not compute the model's output"):
        check_verifiable(swapped, torch.rand(3, 4))
    with pytest.raises(ValueError, match="eps"):
        verify_linf(_net([4, 3, 2], seed=0), torch.rand(3, 4), torch.zeros(3, dtype=torch.long), -1)
    with pytest.raises(ValueError, match="y must lie in \\[0, 2\\)"):  # a label past the outputs
        verify_linf(_net([4, 3, 2], seed=0), torch.rand(3, 4), torch.tensor([0, 1, 2]), 0.1)


def test_linear_layer_bounds_contain_the_exact_ranges_and_tighten_interval_bounds():
    """On a conv -> conv -> dense ReLU network, at L-inf 0.05 and 0.1, the linear (CROWN)
    pre-activation bounds of every hidden layer contain each neuron's exact range over the box
    (its minimum and maximum, by a mixed-integer program per neuron), lie inside the interval
    bounds, and are narrower from the second hidden layer on; the margin bounds are below the
    exact smallest margins."""
    from advlab.defenses.milp_verification import _layer_bounds, _margin_lower, _Program

    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3)).eval()  # fmt: skip
    x = torch.rand(3, 1, 7, 7, generator=torch.Generator().manual_seed(5))
    chain = check_verifiable(net, x)

    def exact_range(k: int, box: tuple, bounds: list, rows: np.ndarray, const: np.ndarray):
        """min and max of rows . a_{k-1} + const over the box (a_{-1} = x), exactly."""
        program = _Program([*chain[:k], (rows, const)], bounds[:k], *box)
        low, high = [], []
        for row, b in zip(rows, const, strict=True):
            g = np.zeros(program.n)
            g[program.penultimate] = row
            low.append(program.solve(g, None, relax=False, time_limit=60).fun + b)
            high.append(-program.solve(-g, None, relax=False, time_limit=60).fun + b)
        return np.array(low), np.array(high)

    for eps, flat in itertools.product((0.05, 0.1), x.reshape(len(x), -1).double().numpy()):
        lo, hi = np.clip(flat - eps, 0, 1), np.clip(flat + eps, 0, 1)
        linear, interval = (_layer_bounds(chain, lo, hi, m) for m in ("linear", "interval"))
        layers = zip(chain[:-1], linear, interval, strict=True)
        for k, ((a, c), (l, u), (il, iu)) in enumerate(layers):
            low, high = exact_range(k, (lo, hi), interval, a, c)
            assert np.all(l <= low + 1e-7) and np.all(u >= high - 1e-7)
            assert np.all(l >= il - 1e-7) and np.all(u <= iu + 1e-7)
            if k:
                assert np.sum(u - l) < 0.9 * np.sum(iu - il)
        a, c = chain[-1]
        y = int(net(torch.from_numpy(flat).float().reshape(1, 1, 7, 7)).argmax())
        smallest, _ = exact_range(len(chain) - 1, (lo, hi), interval, a[y] - a, c[y] - c)
        low = _margin_lower(chain, linear, lo, hi, y)
        others = np.arange(len(c)) != y
        assert np.all(low[others] <= smallest[others] + 1e-7)


def test_linear_and_interval_layer_bounds_give_the_same_statuses_with_fewer_binaries():
    """The layer bounds change how hard the programs are, not their answers: on the 30 -> 40 ->
    40 -> 5 network both give the same status per input; the linear bounds leave fewer
    binaries in total, and prove some inputs without any program."""
    model = Model(_net([30, 40, 40, 5], seed=3), preprocessing={"mean": 0.5, "std": 0.25})
    x = torch.rand(40, 30, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    linear = verify_linf(model, x, y, 0.01)
    interval = verify_linf(model, x, y, 0.01, layer_bounds="interval")
    np.testing.assert_array_equal(linear.status, interval.status)
    assert linear.unstable.sum() < interval.unstable.sum()
    assert np.any((linear.status == ROBUST) & (linear.unstable == 0))
    with pytest.raises(ValueError, match="layer_bounds='crown'"):
        verify_linf(model, x, y, 0.01, layer_bounds="crown")


def test_linear_certificates_lie_between_interval_bounds_and_exact_verification():
    """On the 30 -> 40 -> 40 -> 5 network with preprocessing, at L-inf 0.01 and 0.02, every
    input interval bounds certify is certified by the linear bounds, and every input those
    certify is proved robust by the programs; both inclusions are strict at 0.02 (the check
    tells the three apart). Misclassified inputs are never certified."""
    model = Model(_net([30, 40, 40, 5], seed=3), preprocessing={"mean": 0.5, "std": 0.25})
    x = torch.rand(40, 30, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    for eps in (0.01, 0.02):
        interval = is_certified(model, x, y, eps).numpy()
        linear = is_certified_linear(model, x, y, eps).numpy()
        exact = verify_linf(model, x, y, eps).status == ROBUST
        assert np.all(linear[interval]) and np.all(exact[linear])
    assert interval.sum() < linear.sum() < exact.sum()
    assert not is_certified_linear(model, x, (y + 1) % 5, 0.0).any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_certificates_and_programs_take_a_network_of_any_float_dtype(dtype):
    """A user's ``.double()``, half or bfloat16 network, float32 inputs: interval, linear and
    exact verification give the answers of its weights in float32 (for double, which failed
    with 'mat1 and mat2 must have the same dtype', the float32 network's; a half or bfloat16
    network is bounded through a float32 copy of its weights, exact since both formats fit in
    float32: in its own dtype interval bounds were rounded to 8 or 11 significant bits, bounds
    no longer, and exact verification refused it as 'not the sequence of its modules'), and
    certified training runs."""
    import copy

    from advlab.defenses import margin_lower_bounds, train_ibp

    net = _net([30, 40, 40, 5], seed=3).to(dtype)
    ours_model = Model(net, preprocessing={"mean": 0.5, "std": 0.25})
    ref_model = Model(copy.deepcopy(net).float(), preprocessing={"mean": 0.5, "std": 0.25})
    g = torch.Generator().manual_seed(2)
    x = torch.rand(40, 30, generator=g)
    y = ref_model(x).argmax(1)
    eps = 0.01
    if dtype != torch.float64:  # (the same float32 computation: the same bounds, bit for bit)
        torch.testing.assert_close(margin_lower_bounds(ours_model, x, y, eps),
                                   margin_lower_bounds(ref_model, x, y, eps), rtol=0, atol=0)  # fmt: skip
    for certificate in (is_certified, is_certified_linear):
        assert torch.equal(certificate(ours_model, x, y, eps), certificate(ref_model, x, y, eps))
        assert bool(certificate(ours_model, x, y, eps).any())
    ours, ref = (verify_linf(m, x[:10], y[:10], eps) for m in (ours_model, ref_model))
    assert np.array_equal(ours.status, ref.status)
    assert ours.x_adv.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert next(net.parameters()).dtype == dtype  # (the user's network is left as it was)
    history = train_ibp(copy.deepcopy(net), x, y, eps, epochs=1, ramp_epochs=0)
    assert np.isfinite(history.loss).all()


class _UsersChain(nn.Module):
    """A forward written as users write them: functional ReLUs, average pooling, views by
    the batch's own size (``x.size(0)``, ``x.shape[0]``), dropout, a constant scale and shift, F.linear with its own parameter,
    and a final log-softmax."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.conv1, self.fc1 = nn.Conv2d(1, 4, 3), nn.Linear(16, 12)
        self.w = nn.Parameter(torch.randn(5, 12) / 3)
        self.dropout = nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        x = x.reshape(x.shape[0], 1, -1)
        x = self.dropout(x.view(x.size(0), -1))
        x = torch.relu(self.fc1(x)) * 2.0
        return F.log_softmax(F.linear(x, self.w) - 0.5, dim=1)


def test_a_users_forward_that_is_a_chain_is_verified_as_its_sequence():
    """``_UsersChain`` traced: the chain, the exact verification (statuses and minimal
    distances, some inputs attacked) and the linear certificates equal those of the same
    weights as an ``nn.Sequential`` (the scale folded into the last layer); an ELU is named
    (skip connections: ``tests/test_skip_connections.py``)."""
    net = _UsersChain().eval()
    last = nn.Linear(12, 5)
    with torch.no_grad():
        last.weight.copy_(2.0 * net.w)
        last.bias.fill_(-0.5)
    sequence = nn.Sequential(net.conv1, nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), net.fc1,
                             nn.ReLU(), last).eval()  # fmt: skip
    x = torch.rand(24, 1, 6, 6, generator=torch.Generator().manual_seed(12))
    y = sequence(x).argmax(1)
    ours, theirs = (affine_relu_chain(m, (1, 6, 6), logits=True) for m in (net, sequence))
    assert len(ours) == len(theirs) == 3
    for (a, c), (b, d) in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
        np.testing.assert_allclose(c, d, atol=1e-12)
    expected = verify_linf(sequence, x, y, 0.05, minimal=True)
    result = verify_linf(net, x, y, 0.05, minimal=True)
    assert set(expected.status.tolist()) == {ROBUST, ATTACKED}
    np.testing.assert_array_equal(result.status, expected.status)
    np.testing.assert_allclose(result.distances, expected.distances, atol=1e-6)
    assert torch.equal(
        is_certified_linear(net, x, y, 0.03), is_certified_linear(sequence, x, y, 0.03)
    )

    class Smooth(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(F.elu(x))

    with pytest.raises(ValueError, match=r"unsupported layer elu; .* linear bounds also take"):
        check_verifiable(Smooth(), torch.rand(3, 16))

    class EarlyShape(nn.Module):
        def __init__(self, read) -> None:
            super().__init__()
            self.a, self.b, self.read = nn.Conv2d(1, 2, 3), nn.Linear(8, 3), read

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shape = self.read(x)  # read off the input, used after the convolution
            return self.b(F.relu(self.a(x)).view(*shape))

    torch.manual_seed(0)
    images = torch.rand(5, 1, 4, 4)
    for read in (
        lambda x: (x.size(0), -1),
        lambda x: (x.shape[0], 8),
        lambda x: (x.size()[0] * 1, -1),
        lambda x: (x.size(0), x.size(1) * 8),  # (beyond the batch size: as a skip, eq. P)
    ):
        early = EarlyShape(read).eval()  # the batch size of an earlier value: as the value's own
        plain = nn.Sequential(early.a, nn.ReLU(), nn.Flatten(), early.b)
        labels = plain(images).argmax(1)
        check_verifiable(early, images)
        assert np.array_equal(verify_linf(early, images, labels, 0.05).status,
                              verify_linf(plain, images, labels, 0.05).status)  # fmt: skip
        assert torch.equal(is_certified_linear(early, images, labels, 0.05),
                           is_certified_linear(plain, images, labels, 0.05))  # fmt: skip

    class Squared(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * x

    with pytest.raises(ValueError, match="not affine in its inputs, 'mul'"):
        check_verifiable(Squared(), torch.rand(3, 4))


class _PyTorchExample(nn.Module):
    """PyTorch's MNIST example network, shrunk to 8x8 inputs: two convolutions with ReLUs,
    max pooling (a module its forward calls), a hidden layer and a log-softmax."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(13)
        self.conv1, self.conv2 = nn.Conv2d(1, 3, 3), nn.Conv2d(3, 4, 3)
        self.fc1, self.fc2 = nn.Linear(16, 12), nn.Linear(12, 4)

        self.pool = nn.MaxPool2d(2)  # (called as a module of the forward)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv2(F.relu(self.conv1(x)))))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(x), dim=1)


class _FunctionalPool(nn.Module):
    """F.max_pool2d in a forward, over a convolution's values of either sign."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 3, 3), nn.Linear(27, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.max_pool2d(self.conv(x), 2).flatten(1))


def _verified_soundly(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """The chain computes the network (``check_verifiable``); at eps 0.02 and 0.05 no PGD
    example breaks an input proved robust, every counterexample is misclassified within eps,
    interval and linear certificates hold only where the programs prove robustness; both
    statuses occur."""
    check_verifiable(net, x, logits=True)
    statuses = []
    for eps in (0.02, 0.05):
        result = verify_linf(net, x, y, eps, time_limit=10)
        statuses += result.status.tolist()
        robust, attacked = result.status == ROBUST, result.status == ATTACKED
        broken = PGD(net, eps=eps, max_iter=40, random_state=0)(x, y).success.numpy()
        assert not (broken & robust).any()
        with torch.no_grad():
            moved = net(result.x_adv).argmax(1) != y
        assert bool(moved[torch.from_numpy(attacked)].all())
        assert float((result.x_adv - x).abs().amax()) <= eps + 1e-6
        for certified in (is_certified_linear(net, x, y, eps), is_certified(net, x, y, eps)):
            assert not (certified.numpy() & ~robust).any()
    assert {ROBUST, ATTACKED} <= set(statuses)


@pytest.mark.parametrize(
    "pool",
    [
        nn.MaxPool2d(2, 2, 1), nn.MaxPool2d(3, 2, 1), nn.MaxPool2d((3, 2), 1, (1, 1)),
        nn.MaxPool2d(4, 3, 2), nn.MaxPool2d(2, dilation=2), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.MaxPool2d(3, 2, 1, dilation=(1, 2), ceil_mode=True), nn.MaxPool1d(3, 2, 1),
        nn.MaxPool1d(5, 1, 2), nn.MaxPool1d(2, 2, 0, ceil_mode=True),
        nn.MaxPool1d(2, 2, 1, ceil_mode=True), nn.MaxPool3d(2, 1),
        nn.AdaptiveMaxPool2d(1), nn.AdaptiveMaxPool2d((3, 4)), nn.AdaptiveMaxPool2d((None, 4)),
        nn.AdaptiveMaxPool1d(3), nn.AdaptiveMaxPool3d((1, 2, 2)),
    ],
    ids=lambda pool: repr(pool).replace(" ", ""),
)  # fmt: skip
def test_max_pooling_of_every_kind_is_rewritten_exactly(pool):
    """Max pooling with padding (-inf: left out of the windows), dilation and ceil mode, in 1-3
    dimensions, and adaptive max pooling (windows of uneven sizes, filled with repeats), as eq.
    M's ReLU network computes the pooling exactly in float64, on values of either sign."""
    dims = 1 if "1d" in type(pool).__name__ else 3 if "3d" in type(pool).__name__ else 2
    shape = {1: (2, 7), 2: (2, 7, 6), 3: (2, 3, 5, 4)}[dims]
    x = torch.randn(30, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    chain = affine_relu_chain(pool, shape)
    replayed = x.reshape(30, -1).numpy()
    for k, (a, c) in enumerate(chain):
        replayed = replayed @ a.T + c
        replayed = np.maximum(replayed, 0.0) if k < len(chain) - 1 else replayed
    np.testing.assert_allclose(replayed, pool(x).reshape(30, -1).numpy(), rtol=0, atol=1e-12)


class _PaddedPool(nn.Module):
    """F.max_pool2d with padding (3 x 3 to 2 x 2), then F.adaptive_max_pool2d to 1 x 2, in a
    forward, over a convolution's values of either sign."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 3, 3, stride=2), nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv(x), 3, stride=2, padding=1)
        return self.head(F.adaptive_max_pool2d(x, (1, 2)).flatten(1))


@pytest.mark.parametrize(
    "make",
    [
        _PyTorchExample,
        _FunctionalPool,
        _PaddedPool,
        lambda: nn.Sequential(
            nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(), nn.Linear(12, 4)
        ),
        lambda: nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 24),
            nn.Unflatten(1, (1, 24)),
            nn.MaxPool1d(3),
            nn.Flatten(),
            nn.Linear(8, 4),
        ),
    ],
    ids=[
        "pytorch_example",
        "functional",
        "functional_padded",
        "maxpool_3_stride_2",
        "maxpool1d_odd",
    ],
)
def test_max_pooling_is_verified_as_a_relu_network(make):
    """Max pooling as pairwise maxima through ReLUs (eq. M; windows of 4, 9 and 3, the last of
    values of either sign), on networks
    trained on 500 digits (4 classes): the chain computes the network (``check_verifiable``),
    no PGD example breaks an input proved robust, every counterexample is misclassified
    within eps, interval and linear certificates hold only where the programs prove
    robustness, and both statuses occur."""
    _verified_soundly(*trained_on_digits(make))


class _Prelu(nn.Module):
    """F.prelu with the module's own slopes, one per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.slopes = nn.Parameter(torch.tensor([0.25, -0.5, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self.slopes)


PIECEWISE_LINEAR = {
    "leaky": nn.LeakyReLU(0.1),
    "leaky_negative": nn.LeakyReLU(-0.3),
    "prelu_per_channel": nn.PReLU(3, init=0.3),
    "prelu_one": nn.PReLU(init=-0.2),
    "rrelu": nn.RReLU(-0.4, 0.2),  # (in eval mode: leaky, of slope -0.1)
    "hardtanh": nn.Hardtanh(-0.5, 1.5),
    "relu6": nn.ReLU6(),
    "hardsigmoid": nn.Hardsigmoid(),
    "softshrink": nn.Softshrink(0.25),
    "f_leaky": Call(lambda x: F.leaky_relu(x, 0.2)),
    "f_prelu": _Prelu(),
    "f_rrelu": Call(lambda x: F.rrelu(x, 0.1, 0.3)),
    "f_hardtanh": Call(lambda x: F.hardtanh(x, max_val=2.0)),
    "f_relu6": Call(F.relu6),
    "f_hardsigmoid": Call(F.hardsigmoid),
    "f_softshrink": Call(lambda x: F.softshrink(x, 0.5)),
    "abs": Call(torch.abs),
    "abs_method": Call(lambda x: x.abs()),
    "clamp": Call(lambda x: x.clamp(-1, 2)),
    "clamp_min": Call(lambda x: torch.clamp(x, min=0.5)),
    "clamp_max": Call(lambda x: x.clamp(max=-0.5)),
    "clip": Call(lambda x: torch.clip(x, -2.0, 0.0)),
    "clamp_min_method": Call(lambda x: x.clamp_min(1.0)),
    "clamp_max_method": Call(lambda x: x.clamp_max(3.0)),
}


@pytest.mark.parametrize("name", list(PIECEWISE_LINEAR))
@pytest.mark.parametrize("shape", [(3, 4, 4), (3,)], ids=["image", "flat"])
def test_piecewise_linear_activations_are_rewritten_as_relu_networks_exactly(name, shape):
    """Eq. H: each continuous piecewise-linear activation, as a layer and as a function of a
    forward, becomes hinges through ReLUs whose chain computes it in float64 to rounding, on
    values from -8 to 8 with every kink among them (per-channel PReLU slopes on images and on
    flat vectors of 3 channels)."""
    layer = PIECEWISE_LINEAR[name].double().eval()
    g = torch.Generator().manual_seed(0)
    x = 16 * torch.rand(40, *shape, generator=g, dtype=torch.float64) - 8
    kinks = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 1.5, 2.0, -2.0, 3.0, -3.0, 6.0, 0.25, -0.25])
    x.view(40, -1)[:, : len(kinks)] = kinks.double()[: x[0].numel()]
    chain = affine_relu_chain(layer, shape)
    flat = x.reshape(40, -1).numpy()
    replayed = flat
    for k, (a, c) in enumerate(chain):
        replayed = replayed @ a.T + c
        replayed = np.maximum(replayed, 0.0) if k < len(chain) - 1 else replayed
    with torch.no_grad():
        expected = layer(x).reshape(40, -1).numpy()
    np.testing.assert_allclose(replayed, expected, rtol=0, atol=1e-12)


class _PiecewiseForward(nn.Module):
    """A user's forward of piecewise-linear functions between its layers: PReLU with its own
    slopes, a leaky ReLU, a soft shrink, clamps, hardtanh, abs, ReLU6 and a hard sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc, self.head = nn.Conv2d(1, 3, 3), nn.Linear(108, 16), nn.Linear(16, 4)
        self.slopes = nn.Parameter(torch.tensor([0.1, -0.2, 0.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.softshrink(F.leaky_relu(F.prelu(self.conv(x), self.slopes), 0.2), 0.05)
        x = F.hardtanh(self.fc(x.clamp(-1.0, 2.0).flatten(1)), -3.0, 3.0).abs()
        return self.head(F.hardsigmoid(F.relu6(x).clamp_max(5.0)))


@pytest.mark.parametrize(
    "make",
    [
        _PiecewiseForward,
        lambda: nn.Sequential(
            nn.Conv2d(1, 3, 3),
            nn.PReLU(3),
            nn.Flatten(),
            nn.Linear(108, 16),
            nn.LeakyReLU(0.1),
            nn.Linear(16, 16),
            nn.Hardtanh(-1.0, 1.0),
            nn.Linear(16, 4),
        ),
        lambda: nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 16),
            nn.ReLU6(),
            nn.Linear(16, 16),
            nn.Softshrink(0.1),
            nn.Hardsigmoid(),
            nn.Linear(16, 4),
        ),
    ],
    ids=["users_forward", "prelu_leaky_hardtanh", "relu6_softshrink_hardsigmoid"],
)
def test_piecewise_linear_networks_are_verified(make):
    """Networks of piecewise-linear activations trained on 500 digits (4 classes): the chain
    computes the network, no PGD example breaks an input proved robust, every counterexample is
    misclassified within eps, interval and linear certificates hold only where the programs
    prove robustness, and both statuses occur."""
    _verified_soundly(*trained_on_digits(make))


def test_piecewise_linear_functions_it_cannot_rewrite_are_named():
    """A clamp whose limit is a tensor, a clamp with its min above its max, the hard shrink
    (not continuous) and RReLU in training mode (random slopes) are refused by name."""
    limits = Call(lambda x: x.clamp(min=torch.zeros(3)))
    with pytest.raises(ValueError, match="parameters vary or are not numbers, 'clamp'"):
        check_verifiable(limits, torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"min 1\.0 above max 0\.0"):
        check_verifiable(Call(lambda x: x.clamp(1.0, 0.0)), torch.rand(2, 3))
    with pytest.raises(ValueError, match="unsupported layer Hardshrink"):
        check_verifiable(nn.Hardshrink(), torch.rand(2, 3))
    with pytest.raises(ValueError, match="RReLU in training mode is random"):
        check_verifiable(nn.RReLU().train(), torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"F\.rrelu with training=True"):
        check_verifiable(Call(lambda x: F.rrelu(x, training=True)), torch.rand(2, 3))


def test_certified_radii_of_a_piecewise_linear_network_lie_below_its_exact_minimal_attack():
    """A leaky-ReLU and hardtanh network trained on 500 digits: on 8 held-out digits, the
    interval radius <= the linear (CROWN) radius <= the exact minimal L-inf perturbation
    (``verify_linf(minimal=True)``) wherever the programs find one within 0.06, and the linear
    radius is above the interval one somewhere."""
    net, x, y = trained_on_digits(
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.LeakyReLU(0.1),
                              nn.Linear(16, 16), nn.Hardtanh(-1.0, 1.0), nn.Linear(16, 4)),
        n=8,
    )  # fmt: skip
    eps_max, slack = 0.06, 1e-3 * 0.06  # (the bisection's tolerance)
    exact = verify_linf(net, x, y, eps_max, minimal=True, time_limit=10)
    interval = np.asarray(certified_radius(net, x, y, eps_max=eps_max, method="interval"))
    linear = np.asarray(certified_radius(net, x, y, eps_max=eps_max, method="linear"))
    attacked = exact.status == ATTACKED
    assert attacked.any() and not (exact.status == UNKNOWN).any()
    assert np.all(interval <= linear + slack) and np.any(linear > interval + 0.005)
    assert np.all(linear[attacked] <= exact.distances[attacked] + slack)
