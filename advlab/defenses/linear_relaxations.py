"""Linear relaxations of smooth activations for linear (CROWN) bounds: sigmoid, tanh, GELU,
SiLU, Mish, softplus, ELU and the like, between affine layers.

For an activation f, twice differentiable on the pieces between its kinks with |f''| <= K
there, and one neuron's pre-activation bounds [l, u], the relaxation is the pair of parallel
lines of the chord's slope s = (f(u) - f(l)) / (u - l),

    s h + t_l <= f(h) <= s h + t_u  for h in [l, u],                                   (eq. R)

    t_l = min_G (f(g) - s g) - K d^2 / 8,   t_u = max_G (f(g) - s g) + K d^2 / 8,

over a grid G of [l, u] of spacing d = (u - l) / (M - 1) that holds the kinks inside it. The
K d^2 / 8 term makes eq. R sound: f - s h has f's curvature, and at an extremum x* inside a
piece (its derivative 0) the grid point nearest x* on that piece, at most d / 2 away, differs
from it by at most K (d / 2)^2 / 2 (Taylor); an extremum at a kink or an end is a grid point.
The same grid bounds f itself for the next layer: [min_G f - K d^2 / 8, max_G f + K d^2 / 8].
Where f itself jumps at a kink (softplus with a small threshold), the pad of the neurons whose
[l, u] holds that kink grows by the jump.
Zhang et al. 2018 ("Efficient neural network robustness certification with general activation
functions", section 3.3) take tangents and chords by the convexity of each region; the
parallel lines of eq. R need only K, so any activation of the table takes them, and their
offsets are within K d^2 / 8 of the tightest lines of that slope.

K per activation is its largest |f''| (``CURVATURE``; derived by hand, e.g. sigmoid's
sqrt(3) / 18 and tanh's 4 / (3 sqrt(3)), Mish's measured: ``tests/test_linear_relaxations.py``
checks every one against autograd's f'' on a fine grid).

Written by hand: the library that does this (auto_LiRPA) does not install on torch 2.13.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GRID = 33  # points of eq. R's grid per neuron (the kinks inside [l, u] come on top)

# K, the largest |f''| of each activation on its smooth pieces (with its parameters; inf where
# there is none: CELU with alpha < 0 curves as exp(x / alpha) / alpha, without bound as x falls)
CURVATURE: dict[str, Any] = {
    "sigmoid": lambda: math.sqrt(3) / 18,
    "tanh": lambda: 4 / (3 * math.sqrt(3)),
    "tanhshrink": lambda: 4 / (3 * math.sqrt(3)),
    "logsigmoid": lambda: 0.25,
    "softsign": lambda: 2.0,
    "softplus": lambda beta=1.0, threshold=20.0: abs(beta) / 4,
    "elu": lambda alpha=1.0: abs(alpha),
    "celu": lambda alpha=1.0: 1 / alpha if alpha > 0 else math.inf,  # (exp(x / alpha) / alpha)
    "selu": lambda: 1.0507009873554805 * 1.6732632423543772,
    "gelu": lambda approximate="none": math.sqrt(2 / math.pi),
    "silu": lambda: 0.5,
    "mish": lambda: 0.64421,  # (measured: autograd's f'' on a 1e-4 grid, 0.644205)
    "hardswish": lambda: 1 / 3,
}
# the size of a jump of f itself at its kink (softplus switches to x at beta x > threshold,
# log1p(exp(-threshold)) / |beta| away from the curve's value there), added to eq. R's pad
JUMPS: dict[str, Any] = {
    "softplus": lambda beta=1.0, threshold=20.0: float(np.logaddexp(0.0, -threshold)) / abs(beta),
}
# where f' jumps (or f'' does, or f: ``JUMPS``): points of every grid that holds them
KINKS: dict[str, Any] = {
    "softplus": lambda beta=1.0, threshold=20.0: [threshold / beta],
    "elu": lambda alpha=1.0: [0.0],
    "celu": lambda alpha=1.0: [0.0],
    "selu": lambda: [0.0],
    "softsign": lambda: [0.0],
    "hardswish": lambda: [-3.0, 3.0],
}
FUNCTIONS: dict[str, Any] = {
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "tanhshrink": F.tanhshrink,
    "logsigmoid": F.logsigmoid, "softsign": F.softsign, "softplus": F.softplus, "elu": F.elu,
    "celu": F.celu, "selu": F.selu, "gelu": F.gelu, "silu": F.silu, "mish": F.mish,
    "hardswish": F.hardswish,
}  # fmt: skip
# the layers, and the functions and methods of a forward, with their parameters' names
LAYERS: dict[type, tuple[str, tuple[str, ...]]] = {
    nn.Sigmoid: ("sigmoid", ()), nn.Tanh: ("tanh", ()), nn.Tanhshrink: ("tanhshrink", ()),
    nn.LogSigmoid: ("logsigmoid", ()), nn.Softsign: ("softsign", ()),
    nn.Softplus: ("softplus", ("beta", "threshold")), nn.ELU: ("elu", ("alpha",)),
    nn.CELU: ("celu", ("alpha",)), nn.SELU: ("selu", ()), nn.GELU: ("gelu", ("approximate",)),
    nn.SiLU: ("silu", ()), nn.Mish: ("mish", ()), nn.Hardswish: ("hardswish", ()),
}  # fmt: skip
CALLS: dict[Any, tuple[str, tuple[str, ...]]] = {
    torch.sigmoid: ("sigmoid", ()), F.sigmoid: ("sigmoid", ()), "sigmoid": ("sigmoid", ()),
    torch.tanh: ("tanh", ()), F.tanh: ("tanh", ()), "tanh": ("tanh", ()),
    F.tanhshrink: ("tanhshrink", ()), F.logsigmoid: ("logsigmoid", ()),
    F.softsign: ("softsign", ()), F.softplus: ("softplus", ("beta", "threshold")),
    F.elu: ("elu", ("alpha",)), F.celu: ("celu", ("alpha",)), F.selu: ("selu", ()),
    F.gelu: ("gelu", ("approximate",)), F.silu: ("silu", ()), F.mish: ("mish", ()),
    F.hardswish: ("hardswish", ()),
}  # fmt: skip


class SmoothActivation(nn.Module):
    """An activation of the table (``name`` with its ``params``) as a step of a chain: its
    forward is the activation; ``relaxation`` and ``interval`` bound it (eq. R)."""

    def __init__(self, name: str, params: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.name, self.params = name, dict(params or {})
        self.curvature = float(CURVATURE[name](**self.params)) * (1 + 1e-6)
        if not math.isfinite(self.curvature):
            raise ValueError(
                f"linear bounds: {name} with {self.params} has no largest |f''| (eq. R needs "
                "one; interval bounds, is_certified, take it)"
            )
        self.kinks = [float(k) for k in KINKS.get(name, lambda **_: [])(**self.params)]
        self.jump = float(JUMPS.get(name, lambda **_: 0.0)(**self.params))
        self._last: tuple[np.ndarray, np.ndarray, tuple] | None = None  # (``_bounds``)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FUNCTIONS[self.name](x, **self.params)

    def relaxation(self, l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, ...]:
        """Eq. R per neuron: (s_l, t_l, s_u, t_u) with s_l h + t_l <= f(h) <= s_u h + t_u on
        [l, u] (here s_l = s_u, the chord's slope)."""
        s, t_l, t_u, _, _ = self._bounds(l, u)
        return s, t_l, s, t_u

    def interval(self, l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of f over each [l_i, u_i]: the grid's least and largest values, padded."""
        _, _, _, low, high = self._bounds(l, u)
        return low, high

    def _bounds(self, l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, ...]:
        """Eq. R's lines and the bounds of f, from one grid of each [l_i, u_i] (the kinks
        inside clipped in) and the pad K d^2 / 8 (with rounding's share); the last bounds'
        kept, since the backward passes of one input ask for each layer's many times."""
        if self._last is not None and self._last[0] is l and self._last[1] is u:
            return self._last[2]
        grid = l[:, None] + (u - l)[:, None] * np.linspace(0.0, 1.0, GRID)[None, :]
        jump: float | np.ndarray = 0.0
        if self.kinks:
            kinks = np.asarray(self.kinks)[None, :]
            grid = np.concatenate([grid, np.clip(kinks, l[:, None], u[:, None])], axis=1)
            jump = self.jump * ((l[:, None] <= kinks) & (kinks <= u[:, None])).any(1)
        with torch.no_grad():
            values = self(torch.from_numpy(grid)).numpy()
        spacing = (u - l) / (GRID - 1)
        pad = self.curvature * spacing**2 / 8 + jump + 1e-12 * (1.0 + np.abs(values).max(1))
        wide = u - l > 1e-12
        s = np.where(wide, (values[:, GRID - 1] - values[:, 0]) / np.where(wide, u - l, 1.0), 0.0)
        gap = values - s[:, None] * grid
        bounds = (s, gap.min(1) - pad, gap.max(1) + pad, values.min(1) - pad, values.max(1) + pad)
        self._last = (l, u, bounds)
        return bounds

    def extra_repr(self) -> str:
        return f"{self.name}, {self.params}" if self.params else self.name


def relu_relaxation(l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear bounds s_l h <= relu(h) <= s_u h + t_u for h in [l, u] (CROWN's ReLU relaxation):
    the chord above an unstable ReLU (s_u = u / (u - l), t_u = -u l / (u - l)), below it the
    line of slope 1 where u > -l and 0 otherwise (the adaptive choice); exact when stable."""
    unstable = (l < 0) & (u > 0)
    width = np.where(unstable, u - l, 1.0)
    s_u = np.where(l >= 0, 1.0, np.where(unstable, u / width, 0.0))
    t_u = np.where(unstable, -u * l / width, 0.0)
    s_l = np.where(l >= 0, 1.0, np.where(unstable & (u > -l), 1.0, 0.0))
    return s_l, s_u, t_u


class MixedActivation(nn.Module):
    """Activations side by side on the neurons of one layer of a chain, ``parts`` of (width,
    SmoothActivation, or None for ReLUs) in the layer's order: a forward with a skip connection
    carries its other values through the layer of a smooth activation as ReLUs (eq. P of
    ``milp_verification``). Each part is bounded as it would be alone: eq. R, or CROWN's ReLU
    relaxation (``relu_relaxation``)."""

    def __init__(self, parts: list[tuple[int, SmoothActivation | None]]) -> None:
        super().__init__()
        self.widths = [int(width) for width, _ in parts]
        self.parts = nn.ModuleList([nn.ReLU() if a is None else a for _, a in parts])
        self.name = next(a.name for _, a in parts if a is not None)  # (named in refusals)
        self._last: tuple[np.ndarray, np.ndarray, tuple] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = x.split(self.widths, dim=1)
        return torch.cat([part(piece) for part, piece in zip(self.parts, pieces, strict=True)], 1)

    def relaxation(self, l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, ...]:
        """(s_l, t_l, s_u, t_u) per neuron, each part's (eq. R, or the ReLUs' with t_l = 0)."""
        return self._bounds(l, u)[:4]

    def interval(self, l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the outputs given the inputs' [l, u], each part's."""
        low, high = self._bounds(l, u)[4:]
        return low, high

    def _bounds(self, l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, ...]:
        """The parts' relaxations and intervals, concatenated (the last kept, as eq. R's)."""
        if self._last is not None and self._last[0] is l and self._last[1] is u:
            return self._last[2]
        cuts = np.cumsum(self.widths)[:-1]
        pieces = []
        for part, a, b in zip(self.parts, np.split(l, cuts), np.split(u, cuts), strict=True):
            if isinstance(part, SmoothActivation):
                pieces.append((*part.relaxation(a, b), *part.interval(a, b)))
            else:
                s_l, s_u, t_u = relu_relaxation(a, b)
                pieces.append((s_l, np.zeros_like(a), s_u, t_u, np.maximum(a, 0.0),
                               np.maximum(b, 0.0)))  # fmt: skip
        bounds = tuple(np.concatenate(column) for column in zip(*pieces, strict=True))
        self._last = (l, u, bounds)
        return bounds


def smooth_layer(layer: nn.Module) -> SmoothActivation | None:
    """A ``LAYERS`` activation as a ``SmoothActivation`` (its parameters read off it), or
    None for another layer."""
    entry = LAYERS.get(type(layer))
    if entry is None:
        return None
    name, names = entry
    return SmoothActivation(name, {p: getattr(layer, p) for p in names})


def smooth_call(target: Any, args: tuple, kwargs: dict) -> SmoothActivation | None:
    """A ``CALLS`` function or method on the chain's value (the first of ``args``; its other
    arguments numbers or strings) as a ``SmoothActivation``, or None where it is none of them
    or an argument is not a constant."""
    entry = CALLS.get(target)
    if entry is None:
        return None
    name, names = entry
    given = {**dict(zip(names, args[1:], strict=False)),
             **{k: v for k, v in kwargs.items() if k != "inplace"}}  # fmt: skip
    if set(given) - set(names) or not all(isinstance(v, int | float | str) for v in given.values()):
        return None
    return SmoothActivation(name, given)
