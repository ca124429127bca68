"""Interval bounds through the activations of networks beyond ReLU: quasi-convex ones (GELU,
SiLU, Mish, Hardswish, leaky ReLUs of any slope) by eq. Q around their minimiser, the other
monotone ones by their ends, as layers and as functions in a user's forward, and 1-d and 3-d
convolutions: the shape eq. Q needs holds, the bounds hold every value and are attained."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.defenses import interval_bounds, is_certified, margin_lower_bounds
from advlab.defenses.interval_bounds import _minimiser, check_certifiable
from advlab.defenses.milp_verification import check_verifiable

QUASI_CONVEX = {
    "gelu": nn.GELU(),
    "gelu_tanh": nn.GELU(approximate="tanh"),
    "silu": nn.SiLU(),
    "mish": nn.Mish(),
    "hardswish": nn.Hardswish(),
    "leaky_negative": nn.LeakyReLU(-0.3),
    "leaky": nn.LeakyReLU(0.2),
}
MONOTONE = {
    "hardsigmoid": nn.Hardsigmoid(),
    "logsigmoid": nn.LogSigmoid(),
    "softsign": nn.Softsign(),
    "celu": nn.CELU(0.5),
    "tanhshrink": nn.Tanhshrink(),
    "softshrink": nn.Softshrink(0.3),
    "hardshrink": nn.Hardshrink(0.3),
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
    maximum are within 2e-4 of them (the bounds are the range; a kink between two grid points
    is up to its slope times the step, 3e-4, above the grid's minimum)."""
    layer = {**QUASI_CONVEX, **MONOTONE}[name]
    g = torch.Generator().manual_seed(0)
    centre = 4 * torch.randn(300, generator=g)
    centre[:100] = -1.0 + 0.5 * torch.randn(100, generator=g)  # around the minimisers
    width = torch.rand(300, generator=g) * 3
    lo, hi = centre - width, centre + width
    low, high = interval_bounds(layer, lo, hi)
    grid = lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, 20001)[None, :]
    values = layer(grid)
    assert bool((values >= low[:, None] - 1e-6).all() and (values <= high[:, None] + 1e-6).all())
    np.testing.assert_allclose(values.min(1).values, low, atol=2e-4)
    np.testing.assert_allclose(values.max(1).values, high, atol=2e-4)


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
    ],
    ids=["sequential", "users_forward", "conv1d", "conv3d"],
)
def test_networks_with_these_layers_are_bounded_soundly(make):
    """Bounds of the point box equal the outputs (``check_certifiable``); the margin bounds lie
    below the clean margins, and no sampled point of an eps-box and no 30-step sign-gradient
    descent on any margin goes below them; ``is_certified`` is what they say."""
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
    assert bool((bound < clean - 1e-4).scatter(1, y[:, None], True).all())  # eps reaches them
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
    gelu = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2)).eval()
    with pytest.raises(ValueError, match=r"unsupported layer GELU.*interval bounds"):
        check_verifiable(gelu, torch.rand(3, 4))
