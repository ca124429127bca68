"""Interval bounds through the activations of networks beyond ReLU: quasi-convex ones (GELU,
SiLU, Mish, Hardswish, leaky ReLUs of any slope, ELU of any alpha, abs) by eq. Q around their
minimiser, the other monotone ones by their ends (softplus of either sign of beta by its pieces), softmax and log-softmax by eq. S, layer and group normalisation by
eq. N, as layers and as functions in a user's forward, and 1-d and 3-d convolutions: the shape eq. Q needs holds, the bounds hold
every value and are attained; a classifier's trailing softmax is left out of its margins (and
of exact verification), a k-means' softmax features are not."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.cluster import KMeans
from advlab.defenses import (
    ATTACKED,
    ROBUST,
    certified_radius,
    interval_bounds,
    is_certified,
    is_certified_linear,
    kmeans_is_certified,
    margin_lower_bounds,
    verify_linf,
)
from advlab.defenses.interval_bounds import _minimiser, check_certifiable
from advlab.defenses.milp_verification import check_verifiable
from tests.conftest import Call

QUASI_CONVEX = {
    "gelu": nn.GELU(),
    "gelu_tanh": nn.GELU(approximate="tanh"),
    "silu": nn.SiLU(),
    "mish": nn.Mish(),
    "hardswish": nn.Hardswish(),
    "leaky_negative": nn.LeakyReLU(-0.3),
    "leaky": nn.LeakyReLU(0.2),
    "abs": Call(torch.abs),
    "abs_method": Call(lambda x: x.abs()),
    "rrelu": nn.RReLU(0.1, 0.3).eval(),  # (a leaky ReLU of the mean slope in eval mode)
    "rrelu_negative": nn.RReLU(-0.6, -0.2).eval(),
    "f_rrelu": Call(lambda x: F.rrelu(x, -0.5, 0.1)),
    "elu": nn.ELU(),
    "elu_negative": nn.ELU(-0.7),  # (falls to 0 before it rises)
    "f_elu_negative": Call(lambda x: F.elu(x, -0.7)),
}
MONOTONE = {
    "hardsigmoid": nn.Hardsigmoid(),
    "logsigmoid": nn.LogSigmoid(),
    "softsign": nn.Softsign(),
    "celu": nn.CELU(0.5),
    "tanhshrink": nn.Tanhshrink(),
    "softshrink": nn.Softshrink(0.3),
    "hardshrink": nn.Hardshrink(0.3),
    "celu_negative": nn.CELU(-0.5),  # (rises, however steeply)
    # softplus falls or rises by log1p(exp(-threshold)) / |beta| at its switch to x
    "softplus_sharp": nn.Softplus(beta=3.0, threshold=2.0),
    "f_softplus_sharp": Call(lambda x: F.softplus(x, 3.0, 2.0)),
    "softplus_negative": nn.Softplus(beta=-2.0, threshold=3.0),
    "softplus_negative_threshold": nn.Softplus(beta=-0.5, threshold=-1.0),
    "f_softplus_negative": Call(lambda x: F.softplus(x, beta=-1.0, threshold=0.5)),
    # x above the threshold, else the value: it rises or falls there
    "threshold": nn.Threshold(0.2, 2.0),
    "threshold_low": nn.Threshold(0.2, -1.0),
    "f_threshold": Call(lambda x: F.threshold(x, -0.5, 0.3)),
    "f_threshold_keywords": Call(lambda x: F.threshold(x, threshold=0.5, value=-0.3)),
}


@pytest.mark.parametrize(
    ("name", "approximate"),
    [("gelu", "none"), ("gelu", "tanh"), ("silu", "none"), ("mish", "none"), ("hardswish", "none")],
)
def test_each_quasi_convex_activation_falls_to_its_minimiser_and_rises_after(name, approximate):
    """In float64 on a grid of [-30, 30] (step 1e-4): non-increasing up to x*, non-decreasing
    after it, and its value at x* no larger than the grid's smallest."""
    fn = {"gelu": functools.partial(F.gelu, approximate=approximate), "silu": F.silu,
          "mish": F.mish, "hardswish": F.hardswish}[name]  # fmt: skip
    x_star = _minimiser(name, approximate)
    grid = torch.linspace(-30, 30, 600_001, dtype=torch.float64)
    values = fn(grid)
    left, right = values[grid <= x_star], values[grid >= x_star]
    assert bool((left[1:] <= left[:-1] + 1e-15).all())
    assert bool((right[1:] >= right[:-1] - 1e-15).all())
    assert float(fn(torch.tensor(x_star, dtype=torch.float64))) <= float(values.min()) + 1e-15


@pytest.mark.parametrize("name", [*QUASI_CONVEX, *MONOTONE])
def test_activation_bounds_hold_every_value_and_are_attained(name):
    """Random intervals, some around the minimiser, some on either side of it: every value on
    a grid of 20,001 points of each interval lies within the bounds, and the grid's minimum and
    maximum are within 3e-4 of them (the bounds are the range; a kink or softplus' fall
    between two grid points is up to the slope times the step, 3e-4, from the grid's
    extremes)."""
    layer = {**QUASI_CONVEX, **MONOTONE}[name]
    g = torch.Generator().manual_seed(0)
    centre = 4 * torch.randn(300, generator=g)
    centre[:100] = -1.0 + 0.5 * torch.randn(100, generator=g)  # around the minimisers
    width = torch.rand(300, generator=g) * 3
    lo, hi = centre - width, centre + width
    low, high = interval_bounds(layer, lo, hi)
    grid = lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, 20001)[None, :]
    values = layer(torch.minimum(grid, hi[:, None]))  # (not past u by rounding: CELU(-0.5) is
    # steep enough there for that to matter)
    assert bool((values >= low[:, None] - 1e-6).all() and (values <= high[:, None] + 1e-6).all())
    np.testing.assert_allclose(values.min(1).values, low, atol=3e-4)
    np.testing.assert_allclose(values.max(1).values, high, atol=3e-4)


class _UsersForward(nn.Module):
    """The same activations called as functions in a forward of the user's."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 24), nn.Linear(24, 24), nn.Linear(24, 24)
        self.slopes = nn.Parameter(torch.linspace(-0.5, 0.5, 24))
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.fc1(x.flatten(1)), approximate="tanh")
        x = F.mish(self.fc2(F.silu(x))) + F.hardswish(x)
        x = F.prelu(self.fc3(F.leaky_relu(x, -0.2)), self.slopes)
        return self.head(F.logsigmoid(x) + F.softsign(x) + F.hardsigmoid(x))


def _resampling() -> nn.Module:
    """Padding (zeros, reflected, a constant), a pixel shuffle and upsampling (nearest and
    bilinear) between convolutions: linear maps with non-negative weights."""
    torch.manual_seed(3)
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(1, 4, 3), nn.ReLU(),
                         nn.PixelShuffle(2), nn.Upsample(scale_factor=0.5, mode="bilinear"),
                         nn.ZeroPad2d(1), nn.ConstantPad2d(1, 0.3), nn.Conv2d(1, 2, 3),
                         nn.Upsample(scale_factor=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(288, 5))  # fmt: skip


class _FunctionalResampling(nn.Module):
    """The same operations as functions in a forward of the user's."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.head = nn.Conv2d(1, 4, 3), nn.Linear(36, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate")))
        x = F.interpolate(F.pixel_shuffle(x, 2), scale_factor=0.75, mode="bilinear")
        return self.head(F.pad(x, (0, 0, 0, 0), value=0.2).flatten(1))


class _Transposed(nn.Module):
    """A decoder's upsampling in a user's forward: F.conv_transpose2d with the module's own
    weights (stride 2, padding, output padding), between strided convolutions."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.down = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.weight = nn.Parameter(0.3 * torch.randn(4, 2, 3, 3))
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.down(x))
        x = F.conv_transpose2d(x, self.weight, None, 2, 1, 1)
        return self.head(F.relu(x).flatten(1))


class _ConvNeXtBlock(nn.Module):
    """A ConvNeXt block (Liu et al. 2022) behind a stem: a depthwise convolution, layer norm
    over the channels (channels last), an inverted bottleneck with GELU, a layer scale and the
    skip connection; then global average pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.stem = nn.Conv2d(1, 8, 2)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.norm = nn.LayerNorm(8)
        self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 8)
        self.gamma = nn.Parameter(torch.full((8,), 0.5))
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.down(F.gelu(self.up(self.norm(self.depthwise(x).permute(0, 2, 3, 1)))))
        x = x + (self.gamma * y).permute(0, 3, 1, 2)
        return self.head(F.layer_norm(x.mean((2, 3)), (8,)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(
            nn.Flatten(),
            nn.Linear(16, 24),
            nn.GELU(),
            nn.Linear(24, 24),
            nn.SiLU(),
            nn.Linear(24, 24),
            nn.Mish(),
            nn.Linear(24, 24),
            nn.PReLU(24, -0.25),
            nn.Linear(24, 5),
        ),
        _UsersForward,
        lambda: nn.Sequential(
            nn.Flatten(2),
            nn.Conv1d(1, 4, 3, padding=1, padding_mode="reflect"),
            nn.BatchNorm1d(4),
            nn.Hardswish(),
            nn.MaxPool1d(2),
            nn.Flatten(),
            nn.Dropout1d(0.2),
            nn.Linear(32, 5),
        ),
        lambda: nn.Sequential(
            nn.Flatten(),
            nn.Unflatten(1, (1, 2, 2, 4)),
            nn.Conv3d(1, 3, 2),
            nn.BatchNorm3d(3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(9, 5),
        ),
        lambda: _ConvNeXtBlock(),
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.GroupNorm(2, 4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64, 5),
        ),
        _resampling,
        _FunctionalResampling,
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2),
            nn.FeatureAlphaDropout(0.2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8, 5),
        ),
        _Transposed,
    ],
    ids=[
        "sequential",
        "users_forward",
        "conv1d",
        "conv3d",
        "convnext_block",
        "group_norm",
        "resampling",
        "functional_resampling",
        "conv_transpose",
        "f_conv_transpose",
    ],
)
def test_networks_with_these_layers_are_bounded_soundly(make):
    """Bounds of the point box equal the outputs (``check_certifiable``); the margin bounds lie
    below the clean margins (of at least half the inputs: eps moves them), and no sampled point
    of an eps-box and no 30-step sign-gradient descent on any margin goes below them;
    ``is_certified`` is what they say."""
    net = make().eval()
    with torch.no_grad():
        for bn in [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]:
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(-1.5, 1.5)
    g = torch.Generator().manual_seed(1)
    x, eps = torch.rand(16, 1, 4, 4, generator=g), 0.05
    check_certifiable(net, x)
    with torch.no_grad():
        y = net(x).argmax(1)
    bound = margin_lower_bounds(net, x, y, eps).detach()
    with torch.no_grad():
        z = net(x)
    clean = (z.gather(1, y[:, None]) - z).scatter(1, y[:, None], 1.0)  # (> 0 where j != y)
    assert bool((bound[torch.arange(16), y] == 0).all())
    reached = (bound < clean - 1e-4).scatter(1, y[:, None], True).all(1)  # eps moves them
    assert float(reached.float().mean()) >= 0.5  # (not where every ReLU stays off)
    with torch.no_grad():
        for _ in range(50):
            xs = (x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1)
            z = net(xs)
            assert bool((z.gather(1, y[:, None]) - z >= bound - 1e-5).all())
    for j in range(5):
        xa = x.clone()
        for _ in range(30):
            xa.requires_grad_(True)
            z = net(xa)
            (grad,) = torch.autograd.grad((z.gather(1, y[:, None])[:, 0] - z[:, j]).sum(), xa)
            xa = (xa.detach() - 0.01 * grad.sign()).clamp(x - eps, x + eps).clamp(0, 1)
        with torch.no_grad():
            z = net(xa)
        assert bool((z.gather(1, y[:, None])[:, 0] - z[:, j] >= bound[:, j] - 1e-5).all())
    masked = bound.scatter(1, y[:, None], float("inf"))
    assert torch.equal(is_certified(net, x, y, eps), (masked > 0).all(1))


def test_exact_verification_takes_1d_and_3d_convolutions_and_names_other_activations():
    conv1d = nn.Sequential(nn.Flatten(2), nn.Conv1d(1, 3, 3), nn.ReLU(), nn.AvgPool1d(2),
                           nn.Flatten(), nn.Linear(21, 4)).eval()  # fmt: skip
    check_verifiable(conv1d, torch.rand(3, 1, 16))
    transposed = nn.Sequential(nn.Flatten(2), nn.Conv1d(1, 3, 3, stride=2), nn.ReLU(),
                               nn.ConvTranspose1d(3, 2, 4, stride=3, padding=1), nn.Flatten(),
                               nn.Linear(40, 4)).eval()  # fmt: skip
    check_verifiable(transposed, torch.rand(3, 1, 16))  # (the chain computes the network)
    check_verifiable(_Transposed().eval(), torch.rand(3, 1, 4, 4))
    gelu = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2)).eval()
    with pytest.raises(ValueError, match=r"unsupported layer GELU.*interval bounds"):
        check_verifiable(gelu, torch.rand(3, 4))


@pytest.mark.parametrize("log", [False, True])
def test_softmax_bounds_hold_every_point_and_are_attained_at_their_vertex(log):
    """Eq. S over random boxes of 6 logits (some of width 40, at +-100): every sampled point's
    (log-)softmax lies within the bounds, each bound is the value at its vertex (z_j at one end,
    every other z_k at the other; to float32's rounding of logits near 100), and none is NaN
    or infinite."""
    g = torch.Generator().manual_seed(2)
    centre = 10 * torch.randn(200, 6, generator=g)
    centre[:20] += 100 * torch.sign(torch.randn(20, 1, generator=g))
    width = torch.rand(200, 6, generator=g) * torch.tensor([0.1, 1.0, 3.0, 10.0, 40.0, 1.0])
    lo, hi = centre - width, centre + width
    layer = nn.LogSoftmax(dim=1) if log else nn.Softmax(dim=-1)
    low, high = interval_bounds(layer, lo, hi)
    assert bool(torch.isfinite(low).all() and torch.isfinite(high).all())
    for _ in range(200):
        z = layer(lo + (hi - lo) * torch.rand(lo.shape, generator=g))
        assert bool((z >= low - 1e-6).all() and (z <= high + 1e-6).all())
    for j in range(6):
        own = torch.zeros(6, dtype=torch.bool)
        own[j] = True
        lowest = layer(torch.where(own, lo, hi).double())[:, j]
        highest = layer(torch.where(own, hi, lo).double())[:, j]
        np.testing.assert_allclose(low[:, j], lowest, rtol=1e-5, atol=5e-5)
        np.testing.assert_allclose(high[:, j], highest, rtol=1e-5, atol=5e-5)


class _EndsInSoftmax(nn.Module):
    """The PyTorch MNIST example's shape on 4x4 inputs: its forward ends in
    ``F.log_softmax(x, dim=1)`` (or ``x.softmax(-1)``, or the logits themselves)."""

    def __init__(self, end: str) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.conv, self.fc1, self.fc2 = nn.Conv2d(1, 4, 3), nn.Linear(16, 12), nn.Linear(12, 5)
        self.end = end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(torch.flatten(F.relu(self.conv(x)), 1)))
        x = self.fc2(x)
        if self.end == "log_softmax":
            return F.log_softmax(x, dim=1)
        return x.softmax(-1) if self.end == "softmax" else x


def test_a_classifiers_margins_are_its_logits_through_a_trailing_softmax():
    """Margin bounds, certificates and radii of a network ending in a (log-)softmax layer or
    a forward ending in one are those of its logits; its output bounds are eq. S's (sound,
    ``check_certifiable``); exact verification and linear bounds of a sequence ending in
    LogSoftmax or Softmax equal those of the sequence without it."""
    g = torch.Generator().manual_seed(4)
    x, eps = torch.rand(20, 1, 4, 4, generator=g), 0.03
    logits = _EndsInSoftmax("logits").eval()
    y = logits(x).argmax(1)
    reference = margin_lower_bounds(logits, x, y, eps)
    assert bool((reference.scatter(1, y[:, None], 1.0) < 0).any())  # some not certified
    for end in ("log_softmax", "softmax"):
        net = _EndsInSoftmax(end).eval()
        check_certifiable(net, x)
        assert torch.equal(margin_lower_bounds(net, x, y, eps), reference)
        np.testing.assert_array_equal(
            certified_radius(net, x, y, 0.2, "interval"),
            certified_radius(logits, x, y, 0.2, "interval"),
        )
        lo, hi = interval_bounds(net, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
        with torch.no_grad():
            for _ in range(50):
                out = net((x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1))
                assert bool((out >= lo - 1e-6).all() and (out <= hi + 1e-6).all())
    body = [nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 5)]
    plain = nn.Sequential(*body).eval()
    y = plain(x).argmax(1)
    expected = verify_linf(plain, x, y, 0.08, minimal=True)
    assert set(expected.status.tolist()) == {ROBUST, ATTACKED}
    for tail in (nn.LogSoftmax(dim=1), nn.Softmax(dim=-1)):
        net = nn.Sequential(*body, tail).eval()
        check_verifiable(net, x, logits=True)
        result = verify_linf(net, x, y, 0.08, minimal=True)
        np.testing.assert_array_equal(result.status, expected.status)
        np.testing.assert_allclose(result.distances, expected.distances, atol=1e-6)
        assert torch.equal(
            is_certified_linear(net, x, y, 0.05), is_certified_linear(plain, x, y, 0.05)
        )
        assert torch.equal(
            margin_lower_bounds(net, x, y, 0.05), margin_lower_bounds(plain, x, y, 0.05)
        )


def test_kmeans_on_softmax_features_bounds_the_softmax_itself():
    """k-means clusters a network's softmax outputs: its certificate bounds them (eq. S; the
    softmax is not left out), and no sampled point of a certified input's box changes its
    cluster; exact verification refuses the softmax."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(200, 4, generator=g)
    torch.manual_seed(5)
    features = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=1)).eval()
    with torch.no_grad():
        km = KMeans(4, random_state=0).fit(features(x).numpy())
        own = km.predict(features(x).numpy())
    eps = 0.05
    certified = kmeans_is_certified(km, x, eps, features=features)
    assert 0 < int(certified.sum()) < len(x)
    with torch.no_grad():
        for _ in range(100):
            moved = (x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1)
            assert bool(
                (
                    km.predict(features(moved).numpy())[certified.numpy()] == own[certified.numpy()]
                ).all()
            )
    with pytest.raises(ValueError, match="unsupported layer Softmax"):
        check_verifiable(features, x)


@pytest.mark.parametrize(
    "layer",
    [nn.LayerNorm((2, 3)), nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True),
     nn.InstanceNorm2d(4, affine=True, track_running_stats=True), nn.RMSNorm((2, 3)),
     nn.RMSNorm(3, eps=0.1)],
    ids=["layer", "group", "instance", "instance_running", "rms", "rms_eps"],
)  # fmt: skip
def test_normalisation_bounds_hold_every_vertex_and_narrow_with_the_box(layer):
    """Eq. N on random boxes (gamma of both signs): every sampled point and vertex of the box
    lies within the bounds, the point box gives the layer's output, F.layer_norm,
    F.group_norm, F.instance_norm and F.rms_norm in a forward give the layer's bounds, and on boxes of width 2e-3 the bounds
    are under 3 times as wide as the sampled range (not the loose 1 / sqrt(eps) scale)."""
    torch.manual_seed(7)
    with torch.no_grad():
        layer.weight.uniform_(-2, 2)
        if getattr(layer, "bias", None) is not None:  # (RMSNorm has none)
            layer.bias.uniform_(-1, 1)
        if getattr(layer, "track_running_stats", False):  # (an instance norm's, used in eval)
            layer.running_mean.uniform_(-1, 1)
            layer.running_var.uniform_(0.5, 2)
            layer.eval()
    shape = (40, 4, 2, 3)
    centre = 2 * torch.randn(shape)
    for half in (0.3, 1e-3):
        lo, hi = centre - half * torch.rand(shape), centre + half * torch.rand(shape)
        low, high = (b.detach() for b in interval_bounds(layer, lo, hi))
        values = [layer(lo + (hi - lo) * torch.rand(shape)) for _ in range(500)]
        values += [layer(torch.where(torch.rand(shape) < 0.5, lo, hi)) for _ in range(500)]
        stacked = torch.stack(values).detach()
        assert bool((stacked >= low - 1e-5).all() and (stacked <= high + 1e-5).all())
        if half < 0.01:
            spread = stacked.amax(0) - stacked.amin(0)
            assert float(((high - low) / spread.clamp_min(1e-6)).median()) < 3
    point = [b.detach() for b in interval_bounds(layer, centre, centre)]
    np.testing.assert_allclose(point[0], layer(centre).detach(), atol=1e-5)
    np.testing.assert_allclose(point[1], layer(centre).detach(), atol=1e-5)

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight, self.bias, self.eps = layer.weight, getattr(layer, "bias", None), layer.eps
            self.by_layer = isinstance(layer, nn.LayerNorm)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.by_layer:
                return F.layer_norm(x, (2, 3), self.weight, self.bias, eps=self.eps)
            if isinstance(layer, nn.RMSNorm):
                return F.rms_norm(x, layer.normalized_shape, self.weight, self.eps)
            if isinstance(layer, nn.InstanceNorm2d):
                running = layer.track_running_stats
                return F.instance_norm(x, layer.running_mean, layer.running_var, self.weight,
                                       self.bias, not running, eps=self.eps)  # fmt: skip
            return F.group_norm(x, 2, self.weight, self.bias, self.eps)

    own = interval_bounds(Functional(), lo, hi)
    assert torch.equal(own[0], interval_bounds(layer, lo, hi)[0])
    assert torch.equal(own[1], interval_bounds(layer, lo, hi)[1])


def test_bicubic_upsampling_is_refused_by_interval_bounds_and_verified_exactly():
    """Bicubic upsampling has negative weights: interval bounds refuse it (as a layer and as
    F.interpolate); exact verification, for which it is affine like the other resamplings,
    takes it."""
    net = nn.Sequential(nn.Upsample(scale_factor=2, mode="bicubic"), nn.Flatten(),
                        nn.Linear(64, 3)).eval()  # fmt: skip
    x = torch.rand(4, 1, 4, 4)
    with pytest.raises(ValueError, match="unsupported layer Upsample"):
        check_certifiable(net, x)

    class Bicubic(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=2, mode="bicubic").sum((1, 2, 3))[:, None]

    with pytest.raises(ValueError, match="unsupported operation 'interpolate'"):
        interval_bounds(Bicubic(), x, x + 0.1)
    check_verifiable(net, x)
    check_verifiable(_resampling().eval(), torch.rand(4, 1, 4, 4))


@pytest.mark.parametrize(
    ("layer", "kind", "dim"),
    [(nn.Softmin(dim=1), "softmin", 1), (Call(lambda x: F.softmin(x, dim=-1)), "softmin", -1),
     (nn.Softmax2d(), "softmax", -3), (nn.GLU(dim=1), "glu", 1),
     (Call(lambda x: F.glu(x, -1)), "glu", -1)],
    ids=["softmin", "f_softmin", "softmax2d", "glu", "f_glu"],
)  # fmt: skip
def test_softmin_softmax2d_and_glu_bounds_hold_every_point_and_are_attained(layer, kind, dim):
    """On 20 boxes of shape (4, 3, 4): the bounds hold the layer at 3,000 points and 1,000
    vertices of each box, and each bound is the layer's value at some vertex (softmin, eq. S
    on -x: coordinate j at one end and the rest at the other; GLU: a corner of (a_i, b_i)),
    to 1e-5."""
    g = torch.Generator().manual_seed(0)
    lo = 2 * torch.randn(20, 4, 3, 4, generator=g)
    hi = lo + 2 * torch.rand(20, 4, 3, 4, generator=g)
    low, high = interval_bounds(layer, lo, hi)
    for i in range(20):
        points = torch.cat([torch.rand(3000, 4, 3, 4, generator=g),
                            (torch.rand(1000, 4, 3, 4, generator=g) < 0.5).float()])  # fmt: skip
        values = layer(lo[i] + points * (hi[i] - lo[i]))
        assert bool((values >= low[i] - 1e-6).all() and (values <= high[i] + 1e-6).all())
    if kind == "glu":
        halves = [
            (lo.chunk(2, dim)[0], hi.chunk(2, dim)[0]),
            (lo.chunk(2, dim)[1], hi.chunk(2, dim)[1]),
        ]
        vertices = [torch.cat([a, b], dim) for a in halves[0] for b in halves[1]]
        values = torch.stack([layer(v) for v in vertices])
        reached_low, reached_high = values.amin(0), values.amax(0)
    else:
        n = lo.shape[dim]
        reached_low, reached_high = torch.empty_like(low), torch.empty_like(high)
        for j in range(n):
            own = torch.zeros(n, dtype=torch.bool)
            own[j] = True
            shape = [1] * lo.ndim
            shape[dim] = n
            own = own.reshape(shape)
            rising = kind == "softmax"  # (softmax rises in its own coordinate, softmin falls)
            at_low = torch.where(own, lo if rising else hi, hi if rising else lo)
            at_high = torch.where(own, hi if rising else lo, lo if rising else hi)
            reached_low.narrow(dim, j, 1).copy_(layer(at_low).narrow(dim, j, 1))
            reached_high.narrow(dim, j, 1).copy_(layer(at_high).narrow(dim, j, 1))
    np.testing.assert_allclose(low, reached_low, atol=1e-5)
    np.testing.assert_allclose(high, reached_high, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")  # (the defaults, dim=None)
def test_interval_bounds_take_every_activation_layer_of_torch_but_attention():
    """Every class of ``torch.nn.modules.activation`` but MultiheadAttention, built with its
    defaults (Threshold: 0.1, 20.0), in eval mode: interval bounds take it, and hold its
    values at 2,000 points of a random box of shape (4, 3, 4)."""
    import torch.nn.modules.activation as activations

    names = [name for name in activations.__all__ if name != "MultiheadAttention"]
    assert len(names) == 28
    g = torch.Generator().manual_seed(0)
    lo = 2 * torch.randn(1, 4, 3, 4, generator=g)
    hi = lo + torch.rand(1, 4, 3, 4, generator=g)
    points = lo + torch.rand(2000, 4, 3, 4, generator=g) * (hi - lo)
    for name in names:
        layer = getattr(nn, name)(*((0.1, 20.0) if name == "Threshold" else ())).eval()
        low, high = interval_bounds(layer, lo, hi)
        with torch.no_grad():
            values = layer(points)
        assert bool((values >= low - 1e-6).all() and (values <= high + 1e-6).all()), name


@pytest.mark.parametrize(
    "layer",
    [nn.LocalResponseNorm(3), nn.LocalResponseNorm(4, alpha=0.5, beta=0.6, k=0.5),
     nn.LocalResponseNorm(2, alpha=2.0, beta=-0.3, k=2.0),
     Call(lambda x: F.local_response_norm(x, 5, 1.0, 0.75, 1.0))],
    ids=["default", "even_window", "negative_beta", "f_local_response_norm"],
)  # fmt: skip
def test_local_response_norm_bounds_hold_every_point_and_are_its_value_at_a_point(layer):
    """Local response normalisation (AlexNet's) over boxes of shape (6, 4, 5) and (6, 7): the
    bounds of a box that is one point are the layer's value there; over 3 boxes of width up to
    1.5 they hold the layer at 3,000 points and 1,000 vertices of each (to float32 rounding);
    k = 0 is refused (0 / 0 at 0)."""
    g = torch.Generator().manual_seed(0)
    for shape in ((3, 6, 4, 5), (3, 6, 7)):
        x = 2 * torch.randn(*shape, generator=g)
        low, high = interval_bounds(layer, x, x)
        np.testing.assert_allclose(low, layer(x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(high, layer(x), rtol=1e-5, atol=1e-6)
        hi = x + 1.5 * torch.rand(*shape, generator=g)
        low, high = interval_bounds(layer, x, hi)
        for i in range(3):
            points = torch.cat([torch.rand(3000, *shape[1:], generator=g),
                                (torch.rand(1000, *shape[1:], generator=g) < 0.5).float()])  # fmt: skip
            values = layer(x[i] + points * (hi[i] - x[i]))
            slack = 1e-6 * (1 + values.abs())
            assert bool((values >= low[i] - slack).all() and (values <= high[i] + slack).all())
    with pytest.raises(ValueError, match="LocalResponseNorm with k = 0"):
        interval_bounds(nn.LocalResponseNorm(3, k=0.0), x, x)


@pytest.mark.parametrize(
    "layer",
    [nn.ConvTranspose1d(2, 3, 3, stride=2, padding=1, output_padding=1),
     nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
     nn.ConvTranspose2d(2, 3, 2, dilation=2), nn.ConvTranspose3d(2, 2, 2, stride=2)],
    ids=["1d", "2d_groups", "2d_dilation", "3d"],
)  # fmt: skip
def test_transposed_convolution_bounds_are_exact(layer):
    """A transposed convolution is affine, so its interval bounds are exact: m' = layer(m),
    r' = |J| r with J its Jacobian (here from autograd, flattened), on random boxes."""
    shape = {nn.ConvTranspose1d: (2, 5), nn.ConvTranspose2d: (2, 4, 4),
             nn.ConvTranspose3d: (2, 3, 3, 3)}[type(layer)]  # fmt: skip
    g = torch.Generator().manual_seed(0)
    lo = torch.randn(1, *shape, generator=g, dtype=torch.float64)
    hi = lo + torch.rand(1, *shape, generator=g, dtype=torch.float64)
    layer = layer.double()
    low, high = interval_bounds(layer, lo, hi)
    jacobian = torch.autograd.functional.jacobian(lambda t: layer(t).flatten(), (lo + hi) / 2)
    radius = jacobian.reshape(low.numel(), -1).abs() @ ((hi - lo) / 2).flatten()
    middle = layer((lo + hi) / 2).flatten().detach()
    np.testing.assert_allclose(low.detach().flatten(), middle - radius, atol=1e-10)
    np.testing.assert_allclose(high.detach().flatten(), middle + radius, atol=1e-10)
