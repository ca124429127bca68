"""Exact L-inf verification of ReLU networks by mixed-integer linear programming (Tjeng, Xiao &
Tedrake 2019, "Evaluating robustness of neural networks with mixed integer programming").

For the box B = {x' : ||x' - x||_inf <= eps} ∩ [lo, hi]^D and a network that alternates affine
maps and ReLUs, a_0 = x', h_k = A_k a_{k-1} + c_k, a_k = relu(h_k), z = A_L a_{L-1} + c_L, the
input x of class y is robust iff for every j != y no x' in B reaches z_j - z_y >= 0. Each ReLU
whose pre-activation bounds (interval bounds, exact for the first layer) straddle 0, l < 0 < u,
is encoded exactly with a binary delta (Tjeng et al. eq. 5):

    a >= 0,  a >= h,  a <= u delta,  a <= h - l (1 - delta),  delta in {0, 1};

stable ones are a = h (l >= 0) or a = 0 (u <= 0). The bounds l, u of the deeper layers are, by
default, linear bounds (CROWN, Zhang et al. 2018, "Efficient neural network robustness
certification with general activation functions", Theorem 3.2, with its adaptive lower slope)
intersected with interval bounds: far fewer ReLUs straddle 0, so there are fewer binaries and
the big-M rows are tighter. The same linear bounds on z_y - z_j prove many classes out of reach
before any program. For each remaining j the linear relaxation (delta in [0, 1]) is solved
first: a maximum of z_j - z_y below 0 proves j out of reach. Otherwise the
mixed-integer program {x' in B, z_j - z_y >= 0} is solved by HiGHS (``scipy.optimize.milp``):
infeasible proves it too; a solution is a counterexample, kept only when the model's own
forward pass confirms it. Classes are tried in decreasing order of their relaxed maximum.

With ``minimal=True`` each class's program minimises t subject to z_j - z_y >= 0 and
-t <= x' - x <= t instead (bounded by eps and by the best t so far), which gives the exact
minimal L-inf adversarial perturbation within eps (Tjeng et al. section 4.1).

A per-feature budget eps_d (``check_budget``) makes B the box |x'_d - x_d| <= eps_d, and the
minimal programs' rows -t eps_d <= x'_d - x_d <= t eps_d: t is then the size of the
perturbation in units of the budget, the weighted norm max_d |x'_d - x_d| / eps_d (1 at the
budget's edge; a feature with eps_d = 0 does not move).

The linear bounds also certify L2 balls (``is_certified_linear(..., norm="l2")``): over
S = {x' : ||(x' - x) / s||_2 <= eps} ∩ [lo, hi]^D (s: per-feature units, 1 by default) a linear
function lam . x' + c is bounded below by the larger of its minimum over the box that holds S,
[x - eps s, x + eps s] ∩ [lo, hi]^D, and its minimum over the ellipsoid alone,

    min_{||(x' - x) / s||_2 <= eps} lam . x' + c = lam . x + c - eps ||lam * s||_2      (eq. C)

(Cauchy-Schwarz; each is a lower bound over S, so their maximum is one). Eq. C bounds the first
layer's pre-activations and ends every backward pass; the exact programs stay L-inf.

Each input ends ``ROBUST`` (proved), ``ATTACKED`` (a confirmed counterexample, or misclassified
already) or ``UNKNOWN`` (a program hit ``time_limit``, or a solution the forward pass does not
confirm, on the boundary within rounding). The cost grows with the number of unstable ReLUs:
small networks at small budgets are verified in well under a second per input; large ones end
``UNKNOWN``. The programs take the weights in float64; a half or bfloat16 network is
verified, and its counterexamples confirmed, through a float32 copy of its weights
(``at_least_float32``).

The network comes as affine layers and ReLUs (``AFFINE``), a module of the user's whose
``forward`` computes with them (traced with ``torch.fx``; skip connections, concatenations and
branches carried through each layer of activations: ``_Dag``, eq. P), a trailing
softmax left out for a classifier (``logit_layers``), max pooling rewritten as a ReLU
network (``_MaxPool``, eq. M: pairwise maxima), and continuous piecewise-linear
activations (LeakyReLU, PReLU, RReLU, Hardtanh, ReLU6, Hardsigmoid, Softshrink, abs, clamps with
constant limits; ``PIECEWISE_LINEAR``, ``PIECEWISE_CALLS``) rewritten as sums of hinges
(``_hinge_steps``, eq. H); ``check_verifiable`` checks that the chain computes the network.

Written by hand around scipy's MILP solver: the verifiers that do this (MIPVerify in Julia,
auto_LiRPA / alpha-beta-CROWN) do not install on torch 2.13.
"""

from __future__ import annotations

import copy
import itertools
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.fx
import torch.nn.functional as F
from scipy.optimize import Bounds, LinearConstraint, milp
from torch import nn

from advlab.attacks.evasion.base import weighted_norm
from advlab.defenses.interval_bounds import (
    AFFINE_FUNCTIONS,
    BATCH_NORM,
    CONVOLUTION,
    DROPOUT,
    PADDING,
    RESHAPING_FUNCTIONS,
    RESHAPING_METHODS,
    SHAPE_METHODS,
    TRANSPOSED,
    UPSAMPLING,
    Standardise,
    _constant,
    _layers,
    _trace,
    check_ball,
    check_not_batch_dependent,
    logit_layers,
)
from advlab.defenses.linear_relaxations import (
    MixedActivation,
    SmoothActivation,
    relu_relaxation,
    smooth_call,
    smooth_layer,
)
from advlab.models.wrapper import as_model, at_least_float32, model_dtype
from advlab.models.zoo import Normalize
from advlab.utils.progress import progress
from advlab.utils.validation import (
    BudgetLike,
    check_images,
    check_input_budget,
    check_label_tensor,
    check_number,
    flat_bounds,
    flat_budget,
)

ROBUST, ATTACKED, UNKNOWN = 1, 0, -1
# the activation after a hidden affine map of a chain that is not a ReLU (linear bounds only)
Activation = SmoothActivation | MixedActivation
Activations = list[Activation | None] | None  # after each hidden layer; None: ReLUs

# layers that are affine maps (in eval mode); ReLU separates them
AFFINE = (nn.Linear, *CONVOLUTION, *TRANSPOSED, *BATCH_NORM, Normalize, Standardise, nn.Flatten,
          nn.Unflatten, nn.Identity, *DROPOUT, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
          nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, *PADDING,
          *UPSAMPLING)  # fmt: skip


@dataclass
class Verification:
    """The outcome of ``verify_linf`` per input.

    Attributes
    ----------
    status : ndarray of int8, shape (N,)
        ``ROBUST`` (1), ``ATTACKED`` (0) or ``UNKNOWN`` (-1).
    x_adv : torch.Tensor of shape (N, ...)
        The counterexample where one was found, the input itself elsewhere.
    unstable : ndarray of int, shape (N,)
        The binaries (unstable ReLUs) of each input's program; 0 where no program was needed
        (misclassified, or proved by linear bounds alone).
    distances : ndarray of float, shape (N,)
        The L-inf size of each counterexample (for a per-feature budget, in its units:
        max_d |x'_d - x_d| / eps_d, at most 1); with ``minimal=True`` the exact minimal
        perturbation (the distance to the nearest boundary point, to the solver's tolerance;
        the counterexample lies a hair past it). 0 where misclassified, inf where ``ROBUST``,
        nan where ``UNKNOWN``.
    """

    status: np.ndarray
    x_adv: torch.Tensor
    unstable: np.ndarray
    distances: np.ndarray


def affine_relu_chain(
    model: nn.Module, shape: tuple[int, ...], logits: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The network as dense affine maps (A_k, c_k) in float64 with a ReLU between consecutive
    ones (inputs flattened), found by applying each affine segment to the basis vectors; with
    ``logits`` a classifier's up to its logits (a trailing softmax or log-softmax over the
    classes left out: ``logit_layers``).

    Raises ``ValueError`` naming a layer that is neither affine (``AFFINE``) nor a ReLU.
    """
    return affine_activation_chain(model, shape, logits, smooth=False)[0]


def affine_activation_chain(
    model: nn.Module, shape: tuple[int, ...], logits: bool = False, smooth: bool = True
) -> tuple[Chain, list[Activation | None]]:
    """``affine_relu_chain`` with, where ``smooth``, the smooth activations of
    ``linear_relaxations`` between the affine maps too: the chain and the activation after
    each hidden affine map (None for a ReLU)."""
    segments: list[list[nn.Module]] = [[]]
    activations: list[Activation | None] = []
    layers = logit_layers(_layers(model)) if logits else _layers(model)
    steps = [step for each in layers for step in _steps(each)]
    if any(isinstance(step, (_MaxPool, _Dag)) for step in steps):
        steps = _with_shaped_steps(steps, shape)
    for layer in steps:
        activation = (
            layer if isinstance(layer, (SmoothActivation, MixedActivation)) else smooth_layer(layer)
        )
        if isinstance(layer, nn.ReLU) or (smooth and activation is not None):
            segments.append([])
            activations.append(activation)
        elif isinstance(layer, (*AFFINE, *REWRITTEN)):
            segments[-1].append(layer)
        else:
            name = (
                layer.name
                if isinstance(layer, (SmoothActivation, MixedActivation))
                else type(layer).__name__
            )
            raise ValueError(
                f"{'linear bounds' if smooth else 'exact verification'}: unsupported layer "
                f"{name}; {'they take' if smooth else 'it verifies'} networks of affine layers "
                "(Linear, Conv1d-3d, ConvTranspose1d-3d, BatchNorm, average pooling, flatten, your "
                "preprocessing), ReLU, max pooling and piecewise-linear activations "
                "(LeakyReLU, PReLU, RReLU, Hardtanh, ReLU6, Hardsigmoid, Softshrink)"
                + (", and smooth ones (sigmoid, tanh, GELU, SiLU, Mish, softplus, ELU, ...)"
                   if smooth else "; linear bounds also take smooth activations (sigmoid, "
                   "tanh, GELU, ...)")
                + " (interval bounds, is_certified, take other activations and layers)"
            )  # fmt: skip
    chain = []
    for segment in segments:
        d = int(np.prod(shape))
        basis = torch.cat([torch.zeros(1, d), torch.eye(d)]).double().reshape(d + 1, *shape)
        with torch.no_grad():
            out = nn.Sequential(*map(_on_cpu, segment))(basis)
        shape = tuple(out.shape[1:])
        flat = out.reshape(d + 1, -1)
        chain.append(((flat[1:] - flat[0]).T.numpy(), flat[0].numpy()))
    return chain, activations


def _steps(layer: nn.Module) -> list[nn.Module]:
    """``layer`` as the chain's steps: itself, max pooling (``_MaxPool``: ReLU layers once the
    chain knows its input's shape), or for a module of the user's (not torch's, not affine)
    its ``torch.fx`` graph (``_Dag``: eq. P's steps once the chain knows its input's shape);
    ``ValueError`` for a layer that is random or reads its batch."""
    check_not_batch_dependent(layer, "exact verification")
    pool = _max_pool(layer)
    if pool is not None:
        return [pool]
    if isinstance(layer, PIECEWISE_LINEAR):
        return _hinge_steps(*_layer_hinges(layer))
    if isinstance(layer, (nn.ReLU, *AFFINE)) or type(layer).__module__.startswith("torch.nn"):
        return [layer]
    return [_Dag(_trace(layer))]


def _max_pool(layer: nn.Module) -> _MaxPool | None:
    """A max pooling layer (1-3 d, adaptive too) as a ``_MaxPool``, None for another layer."""
    for kinds, adaptive in ((MAX_POOLS, False), (ADAPTIVE_MAX_POOLS, True)):
        if isinstance(layer, kinds):
            dims = kinds.index(type(layer)) + 1
            if layer.return_indices:
                raise ValueError("exact verification: max pooling that returns its indices")
            if adaptive:
                return _MaxPool(dims, output_size=layer.output_size)
            return _MaxPool(dims, layer.kernel_size, layer.stride, layer.padding,
                            layer.dilation, layer.ceil_mode)  # fmt: skip
    return None


# ---- piecewise-linear activations as ReLU networks: f(x) = b + sum_i c_i relu(w_i x + t_i) ----

# activations that are continuous and piecewise linear, rewritten as sums of hinges (eq. H;
# RReLU in eval mode: leaky, of slope (lower + upper) / 2)
PIECEWISE_LINEAR = (nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.Hardtanh, nn.Hardsigmoid, nn.Softshrink)
Hinges = tuple[list[float], list[float], list[Any], float]  # (w, t, c, b) of eq. H


def _leaky_hinges(slope: Any) -> Hinges:
    """leaky(x) = relu(x) - a relu(-x) (a: the slope below 0, a number or one per channel)."""
    return [1.0, -1.0], [0.0, 0.0], [1.0, -slope], 0.0


def _clamp_hinges(low: float | None, high: float | None) -> Hinges:
    """clamp(x, m, M) = m + relu(x - m) - relu(x - M); with one limit m + relu(x - m) or
    M - relu(M - x)."""
    if low is not None and high is not None:
        if low > high:
            raise ValueError(f"exact verification: a clamp with min {low} above max {high}")
        return [1.0, 1.0], [-low, -high], [1.0, -1.0], low
    if low is not None:
        return [1.0], [-low], [1.0], low
    if high is not None:
        return [-1.0], [high], [-1.0], high
    return [1.0, -1.0], [0.0, 0.0], [1.0, -1.0], 0.0  # (no limits: x = relu(x) - relu(-x))


HARDSIGMOID = [1.0, 1.0], [3.0, -3.0], [1 / 6, -1 / 6], 0.0  # (clamp(x, -3, 3) + 3) / 6
ABS = [1.0, -1.0], [0.0, 0.0], [1.0, 1.0], 0.0  # |x| = relu(x) + relu(-x)


def _softshrink_hinges(lambd: float) -> Hinges:
    """softshrink(x) = relu(x - lambda) - relu(-x - lambda)."""
    return [1.0, -1.0], [-lambd, -lambd], [1.0, -1.0], 0.0


def _layer_hinges(layer: nn.Module) -> Hinges:
    """Eq. H's hinges of a ``PIECEWISE_LINEAR`` layer (PReLU: its learned slopes)."""
    if isinstance(layer, nn.PReLU):
        return _leaky_hinges(layer.weight.detach())
    if isinstance(layer, nn.LeakyReLU):
        return _leaky_hinges(layer.negative_slope)
    if isinstance(layer, nn.RReLU):  # (in eval mode: ``_steps`` refuses training mode)
        return _leaky_hinges((layer.lower + layer.upper) / 2)
    if isinstance(layer, nn.Hardtanh):  # (ReLU6 too)
        return _clamp_hinges(layer.min_val, layer.max_val)
    if isinstance(layer, nn.Softshrink):
        return _softshrink_hinges(layer.lambd)
    return HARDSIGMOID


def _hinge_steps(slopes: list[float], shifts: list[float], weights: list[Any],
                 bias: float) -> list[nn.Module]:  # fmt: skip
    """A continuous piecewise-linear activation as the chain's steps: the K hinges' inputs
    (an affine map, ``_Hinges``), a ReLU, and their weighted sum (``_SumHinges``), with

        f(x) = b + sum_i c_i relu(w_i x + t_i)                                         (eq. H)

    (c_i a number, or one per channel for PReLU): the same function, a ReLU network exact
    verification and linear bounds take."""
    return [_Hinges(slopes, shifts), nn.ReLU(), _SumHinges(weights, bias)]


def _per_channel(p: torch.Tensor, sample_dims: int) -> torch.Tensor:
    """(K, C) parameters shaped to broadcast against (K, *sample) values whose channels are
    the first sample axis (PReLU's rule; C = 1 broadcasts everywhere)."""
    return p.reshape(p.shape[0], *p.shape[1 : sample_dims + 1], *([1] * (sample_dims - 1)))


class _Hinges(nn.Module):
    """(N, *S) -> (N, K, *S): eq. H's hinge inputs w_i x + t_i."""

    slopes: torch.Tensor
    shifts: torch.Tensor

    def __init__(self, slopes: list[float], shifts: list[float]) -> None:
        super().__init__()
        self.register_buffer("slopes", torch.tensor(slopes)[:, None])
        self.register_buffer("shifts", torch.tensor(shifts)[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = x.ndim - 1
        return _per_channel(self.slopes, dims) * x[:, None] + _per_channel(self.shifts, dims)


class _SumHinges(nn.Module):
    """(N, K, *S) -> (N, *S): eq. H's b + sum_i c_i r_i after the ReLU."""

    weights: torch.Tensor

    def __init__(self, weights: list[Any], bias: float) -> None:
        super().__init__()
        rows = [torch.as_tensor(c, dtype=torch.float64).reshape(-1) for c in weights]
        width = max(len(r) for r in rows)
        self.register_buffer("weights", torch.stack([r.expand(width) for r in rows]))
        self.bias = float(bias)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        weights = _per_channel(self.weights.to(r.dtype), r.ndim - 2)
        return self.bias + (weights * r).sum(1)


# ---- max pooling as a ReLU network: max(a, b) = relu(a - b) + relu(b) - relu(-b) ----


MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
ADAPTIVE_MAX_POOLS = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
MAX_POOL_CALLS = (F.max_pool1d, F.max_pool2d, F.max_pool3d)
ADAPTIVE_MAX_POOL_CALLS = (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)


class _MaxPool(nn.Module):
    """Max pooling (1-3 d, adaptive too; any padding, dilation, ceil mode) in the chain before
    its input's shape is known: its forward is the pooling, and ``steps`` gives eq. M's ReLU
    steps for an input shape (``_with_pooling_steps`` puts them in its place)."""

    def __init__(self, dims: int, kernel: Any = None, stride: Any = None, padding: Any = 0,
                 dilation: Any = 1, ceil_mode: Any = False, output_size: Any = None) -> None:  # fmt: skip
        super().__init__()
        self.dims, self.output_size, self.ceil_mode = dims, output_size, bool(ceil_mode)
        if output_size is None:
            self.kernel = _pair(kernel, dims)
            self.stride = self.kernel if stride is None or stride == [] else _pair(stride, dims)
            self.padding, self.dilation = _pair(padding, dims), _pair(dilation, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.output_size is not None:
            return ADAPTIVE_MAX_POOL_CALLS[self.dims - 1](x, self.output_size)
        return MAX_POOL_CALLS[self.dims - 1](x, self.kernel, self.stride, self.padding,
                                             self.dilation, self.ceil_mode)  # fmt: skip

    def _windows(self, axis: int, size: int) -> list[list[int]]:
        """The input positions of each window along one spatial axis of ``size``: for max
        pooling those of i s - p + j d (j < k) inside the input (padding is -inf, which no
        maximum takes), for adaptive pooling floor(i L / n) to ceil((i + 1) L / n)."""
        if self.output_size is not None:
            out = _pair(self.output_size, self.dims)[axis]
            out = size if out is None else out
            return [list(range(i * size // out, -(-(i + 1) * size // out))) for i in range(out)]
        k, s, p, d = (self.kernel[axis], self.stride[axis], self.padding[axis],
                      self.dilation[axis])  # fmt: skip
        reach = size + 2 * p - d * (k - 1) - 1
        out = (-(-reach // s) if self.ceil_mode else reach // s) + 1
        if self.ceil_mode and (out - 1) * s >= size + p:  # (torch's rule: start inside)
            out -= 1
        return [[q for j in range(k) if 0 <= (q := i * s - p + j * d) < size] for i in range(out)]

    def steps(self, spatial: tuple[int, ...]) -> list[nn.Module]:
        """Eq. M's steps for inputs of this spatial shape: each window's inputs gathered on an
        axis (``_Gather``; a window of fewer than K repeats its first, which leaves its
        maximum), then rounds of pairwise maxima, each an affine map (``_PairUp``), a ReLU
        and an affine map (``_Combine``), with

            max(a, b) = relu(a - b) + relu(b) - relu(-b)                               (eq. M)

        (b itself passes a ReLU as relu(b) - relu(-b)), ceil(log2 K) rounds in all: the same
        function, a ReLU network exact verification and linear bounds take."""
        per_axis = [self._windows(axis, size) for axis, size in enumerate(spatial)]
        out = tuple(len(windows) for windows in per_axis)
        gathered = []
        for at in np.ndindex(*out):
            points = itertools.product(*(per_axis[axis][i] for axis, i in enumerate(at)))
            gathered.append([int(np.ravel_multi_index(point, spatial)) for point in points])
        if not all(gathered):
            raise ValueError("max pooling: a window holds no input (padding past the kernel)")
        k = max(map(len, gathered))
        index = torch.tensor([g + g[:1] * (k - len(g)) for g in gathered])
        steps: list[nn.Module] = [_Gather(index.T.reshape(k, *out))]
        while k > 1:
            steps += [_PairUp(), nn.ReLU(), _Combine(k)]
            k = (k + 1) // 2
        return [*steps, _Squeeze()]


def _with_shaped_steps(steps: list[nn.Module], shape: tuple[int, ...]) -> list[nn.Module]:
    """``steps`` with each ``_MaxPool`` replaced by its eq. M steps and each ``_Dag`` by its
    eq. P steps for the shape it gets (a zero input of ``shape`` run through the steps before
    it, copied to the CPU in eval mode) and whether its input is known to be >= 0 (after a
    ReLU, and steps that keep that: ``KEEP_SIGN``)."""
    probe = torch.zeros(1, *shape, dtype=torch.float64)
    resolved: list[nn.Module] = []
    non_negative = False
    with torch.no_grad():
        for step in steps:
            if isinstance(step, _MaxPool):
                new = step.steps(tuple(probe.shape[2:]))
            elif isinstance(step, _Dag):
                new = step.steps(tuple(probe.shape[1:]), non_negative)
            else:
                new = [step]
            resolved += new
            non_negative = isinstance(step, nn.ReLU) or (
                getattr(new[-1], "output_non_negative", False)
                if isinstance(step, _Dag)
                else non_negative and isinstance(step, KEEP_SIGN)
            )
            for each in new:  # (a forward's segments share its graph's copy: not copied again)
                probe = _on_cpu(each).eval()(probe)
    return resolved


# steps after which a value >= 0 stays >= 0 (reshaping, identities, max and average pooling)
KEEP_SIGN = (_MaxPool, nn.Flatten, nn.Unflatten, nn.Identity, *DROPOUT, nn.AvgPool1d,
             nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
             nn.AdaptiveAvgPool3d)  # fmt: skip


def _pair(value: Any, dims: int) -> tuple[Any, ...]:
    """A pooling parameter as one value per spatial dimension."""
    return tuple(value) if isinstance(value, tuple | list) else (value,) * dims


class _Gather(nn.Module):
    """(N, C, *S) -> (N, C, K, *S_out): the inputs at ``index`` (K, *S_out), positions in the
    flattened spatial axes."""

    index: torch.Tensor

    def __init__(self, index: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("index", index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)[:, :, self.index]


class _PairUp(nn.Module):
    """Eq. M's inputs: the window's K values (axis 2) in pairs (a, b) as a - b, b, -b, and an
    unpaired last value u as u, -u."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x.shape[2] // 2
        a, b, u = x[:, :, 0 : 2 * p : 2], x[:, :, 1 : 2 * p : 2], x[:, :, 2 * p :]
        return torch.cat([a - b, b, -b, u, -u], dim=2)


class _Combine(nn.Module):
    """Eq. M's sums after the ReLU: relu(a - b) + relu(b) - relu(-b) per pair, relu(u) -
    relu(-u) for an unpaired value: the pairs' maxima, ceil(K / 2) values on axis 2."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.p, self.odd = k // 2, k % 2

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p, odd = self.p, self.odd
        pairs = r[:, :, :p] + r[:, :, p : 2 * p] - r[:, :, 2 * p : 3 * p]
        single = r[:, :, 3 * p : 3 * p + odd] - r[:, :, 3 * p + odd : 3 * p + 2 * odd]
        return torch.cat([pairs, single], dim=2)


class _Squeeze(nn.Module):
    """(N, C, 1, *S_out) -> (N, C, *S_out): the window's maximum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 0]


# operations of a user's forward that are affine in their first argument (the others constant)
AFFINE_CALLS = {*RESHAPING_FUNCTIONS, *AFFINE_FUNCTIONS, F.avg_pool1d, F.avg_pool2d,
                F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
                F.adaptive_avg_pool3d, F.pad, F.pixel_shuffle, F.pixel_unshuffle, F.interpolate,
                operator.getitem, operator.mul, operator.truediv, operator.neg, torch.mul,
                torch.div}  # fmt: skip
# (sums and differences, of a constant or of other values: ``JOINING``)
RELU_CALLS = {F.relu, torch.relu, "relu"}


# piecewise-linear functions of a forward (``PIECEWISE_LINEAR``'s, abs and clamps): their
# parameters' names and defaults after the input
_CLAMP = (("min", None), ("max", None))
PIECEWISE_CALLS: dict[Any, tuple[tuple[str, Any], ...]] = {
    F.leaky_relu: (("negative_slope", 0.01),),
    F.rrelu: (("lower", 1 / 8), ("upper", 1 / 3), ("training", False)),
    F.hardtanh: (("min_val", -1.0), ("max_val", 1.0)),
    F.relu6: (),
    F.hardsigmoid: (),
    F.softshrink: (("lambd", 0.5),),
    F.prelu: (("weight", None),),
    torch.abs: (),
    "abs": (),
    torch.clamp: _CLAMP,
    torch.clip: _CLAMP,
    "clamp": _CLAMP,
    "clip": _CLAMP,
    "clamp_min": (("min", None),),
    "clamp_max": (("max", None),),
}


def _call_hinges(graph: torch.fx.GraphModule, node: torch.fx.Node) -> Hinges | None:
    """Eq. H's hinges of a ``PIECEWISE_CALLS`` node on the chain's value (its first argument),
    or None where a parameter is another varying value or a clamp's limit is not a number."""
    names = PIECEWISE_CALLS[node.target]
    given = {**dict(names), **dict(zip([n for n, _ in names], node.args[1:], strict=False)),
             **{k: v for k, v in node.kwargs.items() if k != "inplace"}}  # fmt: skip
    for name, arg in given.items():
        if isinstance(arg, torch.fx.Node):
            if arg.op != "get_attr":
                return None
            given[name] = _constant(graph, arg).detach()
    if node.target in (F.leaky_relu, F.prelu):
        return _leaky_hinges(given.get("negative_slope", given.get("weight")))
    if node.target is F.rrelu:
        if given["training"]:
            raise ValueError(f"exact verification: F.rrelu with training=True (node "
                             f"{node.name}) draws its slopes at random")  # fmt: skip
        return _leaky_hinges((float(given["lower"]) + float(given["upper"])) / 2)
    if node.target in (torch.abs, "abs"):
        return ABS
    if node.target is F.hardsigmoid:
        return HARDSIGMOID
    if node.target is F.softshrink:
        return _softshrink_hinges(float(given["lambd"]))
    if node.target is F.relu6:
        return _clamp_hinges(0.0, 6.0)
    low, high = given.get("min", given.get("min_val")), given.get("max", given.get("max_val"))
    if not all(v is None or isinstance(v, int | float) for v in (low, high)):
        return None
    return _clamp_hinges(*(None if v is None else float(v) for v in (low, high)))


def _reads_sizes(node: torch.fx.Node) -> bool:
    """Whether ``node`` reads only sizes of values: v.size(...), v.dim(), v.shape, v.ndim,
    and indexing or arithmetic of those numbers (``x.view(x.shape[0], -1)``); eq. P's
    segments read them off the values, or off empty tensors of their shapes."""
    if node.op not in ("call_function", "call_method"):
        return False
    if (node.op == "call_method" and node.target in SHAPE_METHODS) or (
        node.target is getattr and node.args[1] in ("shape", "ndim")
    ):
        return True
    inputs = node.all_input_nodes
    return bool(inputs) and all(_reads_sizes(a) for a in inputs)


def _call(op: str, target: Any, args: tuple, kwargs: dict) -> Any:
    """A graph node's call on loaded arguments: a method of its first argument, or a function."""
    if op == "call_method":
        return getattr(args[0], str(target))(*args[1:], **kwargs)
    return target(*args, **kwargs)


def _is_static(node: torch.fx.Node) -> bool:
    """Whether ``node`` is a constant of the module or reads only sizes of values."""
    return node.op == "get_attr" or _reads_sizes(node)


# ---- a user's forward as a chain: each layer of activations carries the values used later ----

IDENTITY: Hinges = [1.0, -1.0], [0.0, 0.0], [1.0, -1.0], 0.0  # v = relu(v) - relu(-v)
RELU: Hinges = [1.0], [0.0], [1.0], 0.0
# operations affine in all their arguments together (a skip connection's sum, a concatenation)
JOINING = {operator.add, operator.sub, torch.add, torch.sub, torch.cat, torch.concat, torch.stack}


class _Dag(nn.Module):
    """A user's forward (its ``torch.fx`` graph) in the chain before its input's shape is
    known: its forward is the graph's, and ``steps`` gives eq. P's steps for an input shape."""

    def __init__(self, graph: torch.fx.GraphModule) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def steps(self, shape: tuple[int, ...], non_negative: bool = False) -> list[nn.Module]:
        """The forward as a chain for inputs of ``shape``, known to be >= 0 where
        ``non_negative`` (eq. P): segments of its affine operations, each ending in the inputs
        of the next layer of activations, which holds

            the activations whose inputs are ready (a ReLU or eq. H's hinges, a round of eq.
            M's max pooling, a smooth activation), and every value a later segment reads, as
            v = relu(v) - relu(-v), or v = relu(v) where v >= 0                        (eq. P)

        (the identity through a ReLU layer; the layer of a smooth activation takes these as
        ReLUs beside it, ``MixedActivation``). A value's level is the number of activation
        layers on its longest path from the input; segment j computes the affine operations of
        level j from the values of level j and those carried to it. A forward that is one chain
        carries nothing. A value is known to be >= 0 where it is eq. H's b + sum_i c_i relu(...)
        with b and every c_i >= 0 (a ReLU's or abs' output: a residual block's input, mostly),
        or is the input where ``non_negative``, and is carried by one neuron, stable. Exact verification and linear bounds take the
        chain as any other; another carried value costs two neurons (two binaries in the
        programs where its bounds straddle 0)."""
        return _dag_steps(self.graph, shape, non_negative)


@dataclass(frozen=True)
class _Part:
    """One value through a layer of eq. P: ``node`` is read after the layer, from ``source``
    before it: the source's encoder gives the layer's inputs (``shape``, a sample's), and the
    activation (ReLUs, or a smooth one where ``smooth``) and the decoder give the value; a
    carried value's encoder and decoder are the hinges ``carried`` (eq. H)."""

    node: str
    source: str
    shape: tuple[int, ...]
    smooth: bool
    carried: Hinges | None = None


Round = tuple[str, nn.Module, nn.Module, SmoothActivation | None]  # (value, encoder, decoder, f)


@dataclass
class _Plan:
    """Eq. P's plan of a graph: each varying value's level (those computed from the input), the
    last segment that reads each, and the activations' own parts, with their encoders and
    decoders and their smooth activations."""

    level: dict[str, int] = field(default_factory=dict)
    need: dict[str, int] = field(default_factory=dict)
    parts: list[_Part] = field(default_factory=list)
    coders: dict[str, tuple[nn.Module, nn.Module]] = field(default_factory=dict)
    smooth: dict[str, SmoothActivation] = field(default_factory=dict)
    non_negative: set[str] = field(default_factory=set)  # (b + sum_i c_i relu(...), b, c >= 0)

    def read(self, name: str, segment: int) -> None:
        """Note that ``segment`` reads the value ``name``."""
        self.need[name] = max(self.need.get(name, 0), segment)


def _dag_steps(traced: torch.fx.GraphModule, shape: tuple[int, ...],
               non_negative: bool = False) -> list[nn.Module]:  # fmt: skip
    """Eq. P's steps of the graph ``traced`` for inputs of ``shape`` (known to be >= 0 where
    ``non_negative``; the last step's ``output_non_negative`` says whether its output is);
    ``ValueError`` naming an operation it cannot take."""
    for node in traced.graph.nodes:  # (the user's layers, before an eval-mode copy)
        if node.op == "call_module":
            check_not_batch_dependent(traced.get_submodule(str(node.target)), "exact verification")
    graph: Any = _on_cpu(traced).eval()  # (one float64 copy, which every segment shares)
    shapes = _value_shapes(graph, shape)
    nodes = _needed(graph)
    plan = _plan(graph, nodes, shapes, non_negative)
    output = nodes[-1].args[0]
    if not isinstance(output, torch.fx.Node) or output.name not in plan.level:
        raise ValueError("exact verification: the forward's output is not one value computed "
                         "from its input")  # fmt: skip
    last = plan.level[output.name]
    layers: list[list[_Part]] = [[] for _ in range(last + 2)]  # (layer j: after segment j - 1)
    for part in plan.parts:
        layers[plan.level[part.node]].append(part)
    for name, level in plan.level.items():  # (in the graph's order: the carried values)
        carried = RELU if name in plan.non_negative else IDENTITY
        for j in range(level + 1, plan.need.get(name, 0) + 1):
            layers[j].append(_Part(name, name, (len(carried[0]), *shapes[name]), False, carried))
    varying = {name: shapes[name] for name in plan.level}
    steps: list[nn.Module] = []
    for j in range(last + 1):
        affine = [n.name for n in nodes if plan.level.get(n.name) == j and n.op != "placeholder"
                  and n.name not in plan.coders]  # fmt: skip
        segment = _DagSegment(graph, varying, layers[j] if j else [], affine, layers[j + 1],
                              plan.coders, output.name if j == last else None)  # fmt: skip
        steps.append(segment)
        if j < last:
            steps.append(_layer_activation(layers[j + 1], plan.smooth))
    segment.output_non_negative = output.name in plan.non_negative
    return steps


def _plan(graph: torch.fx.GraphModule, nodes: list[torch.fx.Node], shapes: dict[str, tuple],
          non_negative: bool) -> _Plan:  # fmt: skip
    """Levels and reads of the ``nodes`` of ``graph`` (``shapes`` gains those of the values
    inside max pooling): an affine node is at its inputs' highest level and read there; an
    activation's rounds each one level above their input, read the segment before."""
    plan = _Plan()
    for node in nodes:
        inputs = [a for a in node.all_input_nodes if a.name in plan.level]
        if node.op == "placeholder":
            plan.level[node.name] = 0
            if non_negative:
                plan.non_negative.add(node.name)
        if not inputs or _is_static(node) or node.op == "output":
            continue  # (constants, and sizes of values)
        rounds = _activation_rounds(graph, node, inputs, shapes)
        if rounds is None:
            _check_affine(graph, node, plan.level)
        if not rounds:  # (an affine node, or max pooling over windows of one: a selection)
            plan.level[node.name] = max(plan.level[a.name] for a in inputs)
            for a in inputs:
                plan.read(a.name, plan.level[node.name])
            continue
        source = inputs[0].name
        for name, encoder, decoder, f in rounds:
            plan.level[name] = plan.level[source] + 1
            plan.read(source, plan.level[source])
            with torch.no_grad():
                pre = encoder(torch.zeros(1, *shapes[source], dtype=torch.float64))
                shapes[name] = tuple(decoder(pre).shape[1:])
            plan.parts.append(_Part(name, source, tuple(pre.shape[1:]), f is not None))
            plan.coders[name] = (encoder, decoder)
            if f is not None:
                plan.smooth[name] = f
            if (
                isinstance(decoder, _SumHinges)
                and decoder.bias >= 0
                and (decoder.weights >= 0).all()
            ):
                plan.non_negative.add(name)  # (a ReLU's output: carried by one ReLU, eq. P)
            source = name
    return plan


def _needed(graph: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """The nodes the output depends on, in the graph's order; ``ValueError`` for a forward of
    other than one input."""
    nodes = list(graph.graph.nodes)
    if sum(node.op == "placeholder" for node in nodes) != 1:
        raise ValueError("exact verification: a forward of more than one input")
    needed = {nodes[-1]}
    for node in reversed(nodes):
        if node in needed:
            needed.update(node.all_input_nodes)
    return [node for node in nodes if node in needed or node.op == "placeholder"]


def _value_shapes(graph: torch.fx.GraphModule, shape: tuple[int, ...]) -> dict[str, tuple]:
    """The shape of one sample of each tensor the graph (float64, on the CPU) computes on a
    zero input of ``shape``, by node name."""
    shapes: dict[str, tuple] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node: torch.fx.Node) -> Any:
            value = super().run_node(node)
            if isinstance(value, torch.Tensor) and value.ndim:
                shapes[node.name] = tuple(value.shape[1:])
            return value

    with torch.no_grad():
        Recorder(graph).run(torch.zeros(1, *shape, dtype=torch.float64))
    return shapes


def _activation_rounds(graph: torch.fx.GraphModule, node: torch.fx.Node,
                       inputs: list[torch.fx.Node], shapes: dict[str, tuple]) -> list[Round] | None:  # fmt: skip
    """An activation node on one value (its first argument) as its rounds through layers of
    eq. P, each (the value after it, its encoder, its decoder, a smooth activation or None):
    one for a ReLU or eq. H's hinges (``_Hinges``, ``_SumHinges``) or a smooth activation,
    ceil(log2 K) for max pooling over windows of K (eq. M: the gathered windows' pairs,
    their maxima; none where K = 1, which only selects); None for another node."""
    kind = _node_activation(graph, node)
    if kind is None:
        return None
    if len(inputs) != 1 or node.args[:1] != (inputs[0],):
        raise _unsupported(node, "an activation of more than its first argument,")
    if isinstance(kind, SmoothActivation):
        return [(node.name, nn.Identity(), nn.Identity(), kind)]
    if not isinstance(kind, _MaxPool):
        return [(node.name, _Hinges(*kind[:2]), _SumHinges(*kind[2:]), None)]
    steps = kind.steps(shapes[inputs[0].name][1:])  # (gather, (pair up, ReLU, combine)..., squeeze)
    count = (len(steps) - 2) // 3
    rounds: list[Round] = []
    for i in range(count):
        pair_up, combine = steps[1 + 3 * i], steps[3 + 3 * i]
        encoder = nn.Sequential(steps[0], pair_up) if i == 0 else pair_up
        decoder = nn.Sequential(combine, steps[-1]) if i == count - 1 else combine
        rounds.append((node.name if i == count - 1 else f"{node.name}:{i}", encoder, decoder, None))
    return rounds


def _node_activation(graph: torch.fx.GraphModule,
                     node: torch.fx.Node) -> Hinges | SmoothActivation | _MaxPool | None:  # fmt: skip
    """Eq. H's hinges (a ReLU, a piecewise-linear activation), a ``SmoothActivation`` or a
    ``_MaxPool`` for an activation node, None for another node."""
    if node.op == "call_module":
        module = graph.get_submodule(str(node.target))
        return (RELU if isinstance(module, nn.ReLU) else
                _layer_hinges(module) if isinstance(module, PIECEWISE_LINEAR) else
                _max_pool(module) or smooth_layer(module))  # fmt: skip
    if node.target in RELU_CALLS and node.args[1:] in ((), (False,)):
        return RELU
    pools = (*MAX_POOL_CALLS, *ADAPTIVE_MAX_POOL_CALLS)
    if node.target in pools:  # (the function as its layer)
        adaptive = node.target in ADAPTIVE_MAX_POOL_CALLS
        names = (("output_size",) if adaptive else ("kernel_size", "stride", "padding",
                                                    "dilation", "ceil_mode")) + ("return_indices",)  # fmt: skip
        layer: Any = (ADAPTIVE_MAX_POOLS if adaptive else MAX_POOLS)[pools.index(node.target) % 3]
        given: dict[str, Any] = {**dict(zip(names, node.args[1:], strict=False)), **node.kwargs}
        if any(isinstance(v, torch.fx.Node) for v in given.values()):
            raise _unsupported(node, "max pooling whose parameters vary,")
        return _max_pool(layer(**given))
    if node.target in PIECEWISE_CALLS:
        hinges = _call_hinges(graph, node)
        if hinges is None:
            raise _unsupported(node, "an activation whose parameters vary or are not numbers,")
        return hinges
    return smooth_call(node.target, node.args, node.kwargs)


def _check_affine(graph: torch.fx.GraphModule, node: torch.fx.Node, level: dict) -> None:
    """``ValueError`` unless ``node`` is affine in its varying arguments (those in ``level``)
    together: an affine layer, an ``AFFINE_CALLS`` operation or reshaping method on its first
    argument (the others constant), a sum or concatenation of values (``JOINING``), or a
    product with one varying factor."""
    if node.op == "call_module":
        layer = graph.get_submodule(str(node.target))
        if not isinstance(layer, AFFINE):
            raise _unsupported(node, "the layer")
    dropout = node.target is F.dropout and node.kwargs.get("training", True) is False
    if not (node.op == "call_module" or dropout or node.target in AFFINE_CALLS or
            node.target in JOINING or (node.op == "call_method" and
                                       node.target in RESHAPING_METHODS)):  # fmt: skip
        raise _unsupported(node, "the operation")
    if node.target in JOINING:
        return
    uses: list[Any] = []
    torch.fx.node.map_arg((node.args, node.kwargs), lambda a: uses.append(a))
    varying = [a for a in uses if a.name in level]
    product = node.target in (operator.mul, torch.mul)
    first = node.args[0] if node.args else None
    if len(varying) != 1 or not (product or varying[0] is first):
        raise _unsupported(node, "an operation that is not affine in its inputs,")
    # (x * h, x * x, 1 / x, a weight computed from the input: not affine)


def _unsupported(node: torch.fx.Node, why: str) -> ValueError:
    """The refusal of a node of a user's forward."""
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__",
                                                                    str(node.target))  # fmt: skip
    return ValueError(f"exact verification: {why} {name!r} (node {node.name}) in the forward of "
                      "your module; it takes affine operations, sums and concatenations of "
                      "values (skip connections), ReLUs, max pooling, piecewise-linear and, for "
                      "linear bounds, smooth activations (interval bounds, is_certified, take "
                      "the rest)")  # fmt: skip


def _layer_activation(parts: list[_Part], smooth: dict[str, SmoothActivation]) -> nn.Module:
    """A layer of eq. P: a ReLU over all its neurons, a part's smooth activation where it is
    the only part, or ``MixedActivation`` of its parts."""
    if not any(part.smooth for part in parts):
        return nn.ReLU()
    if len(parts) == 1:
        return smooth[parts[0].node]
    return MixedActivation([
        (int(np.prod(part.shape)), smooth[part.node] if part.smooth else None) for part in parts
    ])  # fmt: skip


class _DagSegment(nn.Module):
    """Segment j of eq. P: from the layer before (the input, for the first) to the inputs of
    the next layer (the output, for the last), an affine map of flattened values: it decodes
    the parts of the layer before (``before``: eq. H's sums b + sum_i c_i r_i, the carried
    v = r_1 - r_2, eq. M's maxima, a smooth activation's value), computes its ``affine``
    nodes in order, and encodes the parts of the next layer (``after``: eq. H's hinge inputs
    w_i v + t_i, eq. M's pairs, a smooth activation's input). A varying value of which only
    sizes are read here is read off an empty tensor of its shape."""

    def __init__(self, graph: torch.fx.GraphModule, shapes: dict[str, tuple], before: list[_Part],
                 affine: list[str], after: list[_Part],
                 coders: dict[str, tuple[nn.Module, nn.Module]], output: str | None) -> None:  # fmt: skip
        super().__init__()
        self.graph, self.shapes, self.before, self.after = graph, shapes, before, after
        self.affine, self.output = affine, output  # (``shapes``: the varying values')
        self.output_non_negative = False  # (set by ``_dag_steps`` for the last segment)

        def coder(part: _Part, which: int) -> nn.Module:
            if part.carried is None:  # (an activation's own)
                return coders[part.node][which]
            hinges = part.carried
            return _Hinges(*hinges[:2]) if which == 0 else _SumHinges(*hinges[2:])

        self.decoders = nn.ModuleList([coder(part, 1) for part in before])
        self.encoders = nn.ModuleList([coder(part, 0) for part in after])

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        nodes = {node.name: node for node in self.graph.graph.nodes}
        n, env = len(t), {}
        if not self.before:
            env[next(name for name, node in nodes.items() if node.op == "placeholder")] = t
        offset = 0
        for part, decoder in zip(self.before, self.decoders, strict=True):
            size = int(np.prod(part.shape))
            env[part.node] = decoder(t[:, offset : offset + size].reshape(n, *part.shape))
            offset += size
        for name in self.affine:
            env[name] = self._evaluate(nodes[name], env, n, t)
        if self.output is not None:
            return env[self.output]
        return torch.cat([encoder(env[part.source]).reshape(n, -1)
                          for part, encoder in zip(self.after, self.encoders, strict=True)], 1)  # fmt: skip

    def _evaluate(self, node: torch.fx.Node, env: dict, n: int, t: torch.Tensor) -> Any:
        """``node`` on the values of ``env`` (its constants in t's dtype, static nodes
        computed, a varying value not in ``env`` an empty tensor of its shape)."""

        def load(arg: torch.fx.Node) -> Any:
            if arg.name in env:
                return env[arg.name]
            if arg.name in self.shapes:  # (a varying value of which only sizes are read)
                return torch.empty(n, *self.shapes[arg.name], device="meta", dtype=t.dtype)
            if arg.op == "get_attr":
                value = _constant(self.graph, arg)
                is_float = isinstance(value, torch.Tensor) and value.is_floating_point()
                return value.to(t.dtype) if is_float else value
            return self._evaluate(arg, env, n, t)  # (a constant computed, or sizes)

        args = torch.fx.node.map_arg(node.args, load)
        kwargs = torch.fx.node.map_arg(node.kwargs, load)
        if node.op == "call_module":
            return self.graph.get_submodule(str(node.target))(*args, **kwargs)
        return _call(node.op, node.target, args, kwargs)


# the steps the chain is rewritten into: affine, like ``AFFINE``
REWRITTEN = (_Gather, _PairUp, _Combine, _Squeeze, _Hinges, _SumHinges, _DagSegment)
# (a smooth activation of a forward becomes a ``SmoothActivation`` step, which only linear
# bounds take)


class _Standardise(nn.Module):
    """A ``Model``'s preprocessing (x - mean) / std with its statistics as given."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _on_cpu(layer: nn.Module) -> nn.Module:
    """A float64 copy of ``layer`` on the CPU (the preprocessing's statistics included, which
    ``Standardise`` reads from its model rather than holding)."""
    if isinstance(layer, Standardise):
        model = layer.model[0]
        return _Standardise(torch.as_tensor(model.mean).detach().double().cpu(),
                            torch.as_tensor(model.std).detach().double().cpu())  # fmt: skip
    if isinstance(layer, _DagSegment):  # (built on a float64 CPU copy, shared by the others)
        return layer
    return copy.deepcopy(layer).double().cpu()


@dataclass(frozen=True)
class _Ball:
    """The ellipsoid ||(x' - x) / s||_2 <= radius around one flattened input x (``units`` s,
    None for 1): an L2 ball of the linear bounds."""

    centre: np.ndarray
    radius: float
    units: np.ndarray | None = None

    def lower(self, lam: np.ndarray, const: np.ndarray) -> np.ndarray:
        """Eq. C: the minimum over the ellipsoid of each row of lam . x' + const."""
        weighted = lam if self.units is None else lam * self.units
        return lam @ self.centre + const - self.radius * np.linalg.norm(weighted, axis=-1)


def _interval(a: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple:
    """Bounds of A v + c over the box [lo, hi] (exact for one affine map: IBP eq. 6)."""
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    centre, spread = a @ mid + c, np.abs(a) @ rad
    return centre - spread, centre + spread


LAYER_BOUNDS = ("linear", "interval")
Chain = list[tuple[np.ndarray, np.ndarray]]


def _activation(activations: Activations, k: int) -> Activation | None:
    """The activation after hidden layer k (None for a ReLU)."""
    return None if activations is None else activations[k]


def _activation_interval(activation: Activation | None, l: np.ndarray,
                         u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Bounds of the activation's outputs given its inputs' [l, u] (relu(l), relu(u), or eq.
    R's grid)."""
    if activation is None:
        return np.maximum(l, 0.0), np.maximum(u, 0.0)
    return activation.interval(l, u)


def _linear_lower(lam: np.ndarray, const: np.ndarray, chain: Chain, bounds: list, lo: np.ndarray,
                  hi: np.ndarray, ball: _Ball | None = None,
                  activations: Activations = None) -> np.ndarray:  # fmt: skip
    """Lower bounds of the rows of lam . a_m + const over the input box, a_m = relu(h_m) for
    the last hidden layer m in ``bounds`` (its pre-activation bounds (l, u) per layer): lam is
    carried back through each ReLU's relaxation (the lower line where lam > 0, the chord where
    lam < 0), or a smooth activation's (eq. R of ``linear_relaxations``), and each affine map,
    and the final linear function of x is minimised over the box (CROWN's backward pass), and
    with an L2 ``ball`` over the ball too (eq. C; the larger bound)."""
    for k in reversed(range(len(bounds))):
        (a, c), (l, u) = chain[k], bounds[k]
        pos, neg = np.maximum(lam, 0.0), np.minimum(lam, 0.0)
        activation = _activation(activations, k)
        if activation is None:
            s_l, s_u, t_u = relu_relaxation(l, u)
            lam = pos * s_l + neg * s_u
            const = const + neg @ t_u + lam @ c
        else:
            s_l, t_l, s_u, t_u = activation.relaxation(l, u)
            lam = pos * s_l + neg * s_u
            const = const + pos @ t_l + neg @ t_u + lam @ c
        lam = lam @ a
    box = const + np.maximum(lam, 0.0) @ lo + np.minimum(lam, 0.0) @ hi
    return box if ball is None else np.maximum(box, ball.lower(lam, const))


def _layer_bounds(
    chain: Chain,
    lo: np.ndarray,
    hi: np.ndarray,
    method: str,
    ball: _Ball | None = None,
    activations: Activations = None,
) -> list:
    """Pre-activation bounds (l_k, u_k) of every hidden layer over the box [lo, hi] (and an
    L2 ``ball`` inside it, if any): interval bounds, exact over the box for the first layer
    (with a ball intersected with eq. C), intersected from the second on with linear (CROWN)
    bounds when ``method == "linear"``; widened by rounding's size so that they stay sound."""
    bounds: list[tuple[np.ndarray, np.ndarray]] = []
    a_lo, a_hi = lo, hi
    for k, (a, c) in enumerate(chain[:-1]):
        l, u = l_box, u_box = _interval(a, c, a_lo, a_hi)
        tightened = False
        if ball is not None and not k:
            l, u = np.maximum(l, ball.lower(a, c)), np.minimum(u, -ball.lower(-a, -c))
            tightened = True
        if method == "linear" and k:
            l = np.maximum(l, _linear_lower(a, c, chain, bounds, lo, hi, ball, activations))
            u = np.minimum(u, -_linear_lower(-a, -c, chain, bounds, lo, hi, ball, activations))
            tightened = True
        if tightened:  # (padded no wider than the interval bounds: a value carried through a
            # ReLU layer at l = 0 stays stable, eq. P of ``_Dag``)
            pad = 1e-9 * (1.0 + np.abs(l) + np.abs(u))
            l, u = np.maximum(l - pad, l_box), np.minimum(u + pad, u_box)
        bounds.append((l, u))
        a_lo, a_hi = _activation_interval(_activation(activations, k), l, u)
    return bounds


def _margin_lower(chain: Chain, bounds: list, lo: np.ndarray, hi: np.ndarray, y: int,
                  ball: _Ball | None = None,
                  activations: Activations = None) -> np.ndarray:  # fmt: skip
    """Lower bounds of z_y - z_j over the box (and an L2 ``ball`` inside it) for every class j
    (inf at j = y): the larger of the linear (CROWN) bound and the interval bound of the margin
    over the last hidden layer's bounds (exact, over the box or with eq. C over the ball, for
    a network without hidden layers)."""
    a, c = chain[-1]
    lam, const = a[y] - a, c[y] - c
    if bounds:
        last = _activation_interval(_activation(activations, len(bounds) - 1), *bounds[-1])
        low = np.maximum(_linear_lower(lam, const, chain, bounds, lo, hi, ball, activations),
                         _interval(lam, const, *last)[0])  # fmt: skip
    else:
        low = _interval(lam, const, lo, hi)[0]
        if ball is not None:
            low = np.maximum(low, ball.lower(lam, const))
    low[y] = np.inf
    return low


class _Program:
    """The mixed-integer encoding of the network over one input's box, given each hidden
    layer's pre-activation bounds. Variables: the input, then per hidden layer its activations
    and the binaries of its unstable ReLUs."""

    def __init__(self, chain: Chain, bounds: list, lo: np.ndarray, hi: np.ndarray):
        self.entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # rows, cols, values
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        v_lo, v_hi, integer = [lo], [hi], [np.zeros(len(lo))]
        prev = np.arange(len(lo))
        self.n_unstable = 0
        for (a, c), (l, u) in zip(chain[:-1], bounds, strict=True):
            start, n = sum(map(len, v_lo)), len(c)
            unstable = np.flatnonzero((l < 0) & (u > 0))
            act, binary = start + np.arange(n), start + n + np.arange(len(unstable))
            active = np.flatnonzero(l >= 0)  # dead ones need no row: a in [0, 0] by its bounds
            self._rows(a[active], prev, act[active], None, None, c[active], c[active])  # a = h
            self._rows(a[unstable], prev, act[unstable], None, None, c[unstable], np.inf)  # a >= h
            self._rows(a[unstable], prev, act[unstable], binary, -l[unstable], -np.inf,
                       c[unstable] - l[unstable])  # a <= h - l (1 - delta)  # fmt: skip
            self._rows(
                None, prev, act[unstable], binary, -u[unstable], -np.inf, 0.0
            )  # a <= u delta
            v_lo += [np.zeros(n), np.zeros(len(unstable))]
            v_hi += [np.maximum(u, 0), np.ones(len(unstable))]
            integer += [np.zeros(n), np.ones(len(unstable))]
            prev = act
            self.n_unstable += len(unstable)
        self.n = sum(map(len, v_lo))
        self.bounds = Bounds(np.concatenate(v_lo), np.concatenate(v_hi))
        self.integer = np.concatenate(integer)
        self.last, self.penultimate = chain[-1], prev
        self.constraints = []  # built once, shared by every program of this input
        if self.entries:
            rows, cols, vals = (np.concatenate(e) for e in zip(*self.entries, strict=True))
            matrix = sp.csr_matrix((vals, (rows, cols)), shape=(len(np.concatenate(self.lower)),
                                                                self.n))  # fmt: skip
            self.constraints.append(LinearConstraint(matrix, np.concatenate(self.lower),
                                                     np.concatenate(self.upper)))  # fmt: skip

    def _rows(self, a_prev, prev, act, binary, delta_coef, lower, upper) -> None:
        """Rows a_i - A_i a_prev + coef_i delta_i in [lower, upper] for the neurons ``act``."""
        m = len(act)
        if not m:
            return
        first = sum(len(b) for b in self.lower)
        rows, cols, vals = [np.arange(m)], [act], [np.ones(m)]
        if a_prev is not None:
            rows.append(np.repeat(np.arange(m), len(prev)))
            cols.append(np.tile(prev, m))
            vals.append(-a_prev.ravel())
        if binary is not None:
            rows.append(np.arange(m))
            cols.append(binary)
            vals.append(delta_coef)
        self.entries.append(
            (first + np.concatenate(rows), np.concatenate(cols), np.concatenate(vals))
        )
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (m,)))
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (m,)))

    def margin(self, j: int, y: int) -> tuple[np.ndarray, float]:
        """z_j - z_y = g . v + const over the variables v."""
        a, c = self.last
        g = np.zeros(self.n)
        g[self.penultimate] = a[j] - a[y]
        return g, float(c[j] - c[y])

    def solve(self, objective: np.ndarray, floor: tuple | None, relax: bool, time_limit: float):
        """HiGHS on the encoding (with ``floor`` = (g, b): the extra rows g . v >= b, g one
        row or a matrix of them)."""
        constraints = list(self.constraints)
        if floor is not None:
            constraints.append(LinearConstraint(sp.csr_matrix(np.atleast_2d(floor[0])), floor[1],
                                                np.inf))  # fmt: skip
        return _highs(
            objective,
            constraints or None,
            self.bounds,
            np.zeros(self.n) if relax else self.integer,
            time_limit,
        )


RELAXED_SLACK = 1e-6  # a relaxed maximum below -RELAXED_SLACK proves a class out of reach
TIE = 1e-5  # a counterexample must beat the label by this share of the logits' scale


def _verify_one(program: _Program, y: int, classes: list[int], time_limit: float, margin: float,
                confirm) -> tuple[int, np.ndarray | None]:  # fmt: skip
    """(status, counterexample) of one input over the other ``classes`` not yet proved out of
    reach; ``confirm(x')`` runs the model's forward pass, and a counterexample is sought
    ``margin`` past the boundary (ties are not adversarial)."""
    relaxed = {}
    for j in classes:
        g, const = program.margin(j, y)
        fit = program.solve(-g, None, relax=True, time_limit=time_limit)
        if fit.status != 0:
            return UNKNOWN, None
        relaxed[j] = -fit.fun + const
    unsure = False
    for j in sorted(relaxed, key=relaxed.__getitem__, reverse=True):
        if relaxed[j] < -RELAXED_SLACK:
            break  # sorted: every remaining class is out of reach too
        g, const = program.margin(j, y)
        fit = program.solve(np.zeros(program.n), (g, -const), relax=False, time_limit=time_limit)
        if fit.status == 2:  # infeasible: no input in the box reaches class j
            continue
        if fit.status == 0:  # reachable, maybe only on the boundary: a point past it instead
            fit = program.solve(np.zeros(program.n), (g, margin - const), relax=False,
                                time_limit=time_limit)  # fmt: skip
            if fit.status == 0 and fit.x is not None and confirm(fit.x):
                return ATTACKED, fit.x
        unsure = True  # a time limit, or ties only (boundary points the forward pass rejects)
    return (UNKNOWN if unsure else ROBUST), None


def _size(delta: np.ndarray, eps: float | np.ndarray) -> float:
    """max_d |delta_d|, or for a per-feature budget max_d |delta_d| / eps_d (``weighted_norm``;
    features with eps_d = 0 do not move), the distance the minimal programs minimise."""
    scale = torch.from_numpy(eps) if isinstance(eps, np.ndarray) else None
    return float(weighted_norm(torch.from_numpy(delta), "linf", scale)) if delta.size else 0.0


def _search(program: _Program, ours: np.ndarray, order: np.ndarray, x: np.ndarray,
            eps: float | np.ndarray, margin: float, minimal: bool, time_limit: float,
            confirm) -> tuple[int, float, np.ndarray | None]:  # fmt: skip
    """(status, distance, counterexample) over the outputs ``order``, output j reached when
    z_j - z_i >= 0 for every i in ``ours`` (a classifier's label; for a k-means the clusters of
    the own class, eq. R of ``kmeans_milp``), a counterexample ``margin`` past the boundary;
    with ``minimal`` the smallest boundary distance over all of them and a counterexample past
    that boundary, else the first confirmed counterexample and its size (both in units of a
    per-feature budget ``eps``, ``_size``)."""
    best: tuple[float, np.ndarray | None] = (np.inf, None)
    scale, t_max = (eps, 1.0) if isinstance(eps, np.ndarray) else (None, eps)
    unsure = False
    for j in order:
        rows = [program.margin(int(j), int(i)) for i in ours]
        g = np.stack([r[0] for r in rows])
        const = np.array([r[1] for r in rows])
        if not minimal:
            fit = program.solve(np.zeros(program.n), (g, -const), relax=False,
                                time_limit=time_limit)  # fmt: skip
            if fit.status == 2:  # infeasible: no input of the box reaches output j
                continue
            if fit.status == 0:  # reachable, maybe only on the boundary: a point past it
                fit = program.solve(np.zeros(program.n), (g, margin - const), relax=False,
                                    time_limit=time_limit)  # fmt: skip
                if fit.status == 0 and fit.x is not None and confirm(fit.x):
                    return ATTACKED, _size(fit.x[: len(x)] - x, eps), fit.x
            unsure = True
            continue
        # the boundary's distance first (the infimum: boundary points are ties), bounded by
        # the best so far; then a point a hair past it, which the forward pass must confirm
        boundary = _minimise_distance(program, (g, -const), x, min(best[0], t_max), time_limit,
                                      scale)  # fmt: skip
        if boundary.status == 2:  # out of reach, or no nearer than the best so far
            continue
        if boundary.status == 0:
            past = _minimise_distance(program, (g, margin - const), x, t_max, time_limit, scale)
            if past.status == 0 and past.x is not None and confirm(past.x[: program.n]):
                best = (float(boundary.fun), past.x[: program.n])
                continue
        unsure = True  # a time limit, or ties only
    if best[1] is not None:
        return ATTACKED, best[0], best[1]
    return (UNKNOWN, np.nan, None) if unsure else (ROBUST, np.inf, None)


def _minimise_distance(program: _Program, floor: tuple, x: np.ndarray, t_max: float,
                       time_limit: float, scale: np.ndarray | None = None):  # fmt: skip
    """min t over the encoding with the rows ``floor`` (g . v >= b) and |x' - x| <= t
    elementwise (|x'_d - x_d| <= t scale_d with a per-feature ``scale``), t in [0, t_max]
    (t_max: the budget, or the best distance found so far)."""
    d, n = len(x), program.n
    eye = sp.eye(d, n, format="csr")
    t_col = sp.csr_matrix(np.ones((d, 1)) if scale is None else scale[:, None])
    rows = [
        sp.hstack([eye, -t_col]),  # x' - t <= x
        sp.hstack([eye, t_col]),  # x' + t >= x
        sp.hstack([sp.csr_matrix(np.atleast_2d(floor[0])), sp.csr_matrix((len(floor[1]), 1))]),
    ]
    constraints = [LinearConstraint(sp.vstack(rows).tocsr(),
                                    np.concatenate([np.full(d, -np.inf), x, floor[1]]),
                                    np.concatenate([x, np.full(d, np.inf), np.full(len(floor[1]), np.inf)]))]  # fmt: skip
    for c in program.constraints:
        constraints.append(LinearConstraint(sp.hstack([c.A, sp.csr_matrix((c.A.shape[0], 1))]),
                                            c.lb, c.ub))  # fmt: skip
    objective = np.zeros(n + 1)
    objective[n] = 1.0
    bounds = Bounds(np.append(program.bounds.lb, 0.0), np.append(program.bounds.ub, t_max))
    return _highs(objective, constraints, bounds, np.append(program.integer, 0), time_limit)


SOLVE_ERROR = 4  # scipy.optimize.milp's status for a HiGHS solve error


def _highs(objective: np.ndarray, constraints: list | None, bounds: Bounds,
           integrality: np.ndarray, time_limit: float) -> Any:  # fmt: skip
    """``scipy.optimize.milp`` (HiGHS) on one program; on a solve error (status 4, HiGHS
    failing numerically on a program it should solve) once more without presolve. A 2-D
    network's minimal-distance program at eps = 0.08 failed with presolve and solved without
    (``tests/test_per_feature_bounds.py``): without the retry its input came out UNKNOWN."""
    options = {"time_limit": time_limit, "disp": False}
    fit = milp(objective, constraints=constraints, bounds=bounds, integrality=integrality,
               options=options)  # fmt: skip
    if fit.status == SOLVE_ERROR:
        fit = milp(objective, constraints=constraints, bounds=bounds, integrality=integrality,
                   options={**options, "presolve": False})  # fmt: skip
    return fit


def verify_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: BudgetLike,
    time_limit: float = 30.0,
    layer_bounds: str = "linear",
    minimal: bool = False,
) -> Verification:
    """Exact L-inf verification of each input (see the module docstring), or its exact minimal
    L-inf adversarial perturbation within eps (Tjeng et al. 2019, section 4.1).

    Parameters
    ----------
    model : torch.nn.Module
        An advlab ``Model`` (its bounds and preprocessing used) or a bare network (bounds
        (0, 1)) of affine layers, ReLUs, max pooling and piecewise-linear activations
        (``check_verifiable``), in eval mode.
    x : torch.Tensor of shape (N, ...)
        Inputs inside the model's bounds.
    y : torch.Tensor of shape (N,)
        Their labels.
    eps : float or array-like
        The L-inf budget, >= 0, in input units; or one per feature (the shape of one input, or
        broadcastable to it): the box |x'_d - x_d| <= eps_d, and distances in its units.
    time_limit : float, default=30.0
        Seconds per mixed-integer program; an input whose program hits it ends ``UNKNOWN``.
    layer_bounds : {"linear", "interval"}, default="linear"
        The hidden layers' pre-activation bounds the encoding uses: linear (CROWN) bounds
        intersected with interval bounds, which also prove classes out of reach without a
        program, or interval bounds alone. Both give the same statuses where no program hits
        the time limit; the linear ones leave fewer unstable ReLUs (binaries), so programs
        finish sooner (``benchmarks/milp_bounds.py``).
    minimal : bool, default=False
        Find each input's exact minimal perturbation within eps (programs that minimise the
        L-inf distance, the classes of the largest logits first, each bounded by the best so
        far) rather than any counterexample (feasibility programs, faster).

    Returns
    -------
    Verification
        ``status`` per input (``ROBUST``, ``ATTACKED``, ``UNKNOWN``), the counterexamples and
        the number of binaries of each input's program and the size of each counterexample.
    """
    if not isinstance(minimal, bool):
        raise ValueError(f"minimal must be True or False, got {minimal!r}")
    if layer_bounds not in LAYER_BOUNDS:
        raise ValueError(f"layer_bounds={layer_bounds!r}: use one of {LAYER_BOUNDS}")
    time_limit = check_number("time_limit", time_limit, 0.0, low_open=True)
    wrapped, x, y, budget, chain, logits, _ = _checked(model, x, y, eps)
    scores = logit_model(wrapped)  # (counterexamples are confirmed on the logits)
    lo_b, hi_b = flat_bounds(wrapped.bounds, tuple(x.shape[1:]))
    flat = x.reshape(len(x), -1).double().cpu().numpy()
    status = np.full(len(x), UNKNOWN, dtype=np.int8)
    unstable = np.zeros(len(x), dtype=np.int64)
    distances = np.full(len(x), np.nan)
    x_adv = x.clone()
    predicted = logits.argmax(1)
    for i in progress(range(len(x)), desc="MILP verification"):
        label = int(y[i])
        if int(predicted[i]) != label:
            status[i], distances[i] = ATTACKED, 0.0  # misclassified without a perturbation
            continue
        lo = np.clip(flat[i] - budget, lo_b, hi_b)
        hi = np.clip(flat[i] + budget, lo_b, hi_b)

        def confirm(v: np.ndarray, i: int = i, label: int = label) -> bool:
            """Whether the model's forward pass puts another class strictly above ``label``."""
            candidate = torch.from_numpy(v[: flat.shape[1]]).reshape(x[i : i + 1].shape).to(x)
            with torch.no_grad():
                z = scores(candidate)[0].double()
            others = torch.cat([z[:label], z[label + 1 :]])
            return bool(others.max() - z[label] > TIE * max(1.0, float(z.abs().max())))

        bounds = _layer_bounds(chain, lo, hi, layer_bounds)
        classes = [j for j in range(logits.shape[1]) if j != label]
        if layer_bounds == "linear":  # the classes linear bounds cannot rule out
            low = _margin_lower(chain, bounds, lo, hi, label)
            classes = [j for j in classes if low[j] <= RELAXED_SLACK]
        if not classes:
            status[i], distances[i] = ROBUST, np.inf
            continue
        program = _Program(chain, bounds, lo, hi)
        unstable[i] = program.n_unstable
        tie = TIE * max(1.0, float(logits[i].abs().max()))
        if minimal:  # the classes of the largest logits first
            order = np.array(sorted(classes, key=lambda j: -float(logits[i, j])))
            status[i], distances[i], found = _search(program, np.array([label]), order, flat[i],
                                                     budget, 2 * tie, True, time_limit, confirm)  # fmt: skip
        else:
            status[i], found = _verify_one(program, label, classes, time_limit, 2 * tie, confirm)
            distances[i] = {ROBUST: np.inf, UNKNOWN: np.nan}.get(int(status[i]), 0.0)
            if found is not None:
                distances[i] = _size(found[: flat.shape[1]] - flat[i], budget)
        if found is not None:
            x_adv[i] = torch.from_numpy(found[: flat.shape[1]]).reshape(x.shape[1:]).to(x)
    return Verification(status, x_adv, unstable, distances)


def _checked(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: BudgetLike,
             smooth: bool = False) -> tuple:  # fmt: skip
    """The wrapped model, checked inputs, labels and budget (a float, or for a per-feature
    budget the flattened half-widths, ``flat_budget``), the affine-ReLU chain (where
    ``smooth``, with smooth activations too: ``linear_bound_chain``), the float64 CPU logits
    and the chain's activations (None: ReLUs); ``ValueError`` naming the first problem."""
    wrapped = at_least_float32(as_model(model))
    budget = check_input_budget("eps", eps, x)
    x = check_images(x, "x", wrapped.bounds, model_dtype(wrapped)).detach()
    eps = flat_budget(budget, tuple(x.shape[1:]))
    chain, activations = _checked_chain(wrapped, x, True, smooth)
    with torch.no_grad():
        logits = logit_model(wrapped)(x).double().cpu()
    y = check_label_tensor(y, len(x), n_classes=logits.shape[1])
    return wrapped, x, y, eps, chain, logits, activations


def logit_model(model: nn.Module) -> nn.Module:
    """The classifier up to its logits: ``model`` itself, or where it ends in a softmax or
    log-softmax over the classes (``logit_layers``), the sequence of its layers before it."""
    layers = _layers(model)
    logits = logit_layers(layers)
    same = len(logits) == len(layers) and all(a is b for a, b in zip(logits, layers, strict=True))
    return model if same else nn.Sequential(*logits)


def linear_input_set(
    flat: np.ndarray,
    eps: float | np.ndarray,
    widths: float | np.ndarray,
    bounds: tuple[Any, Any],
    norm: str = "linf",
) -> tuple[np.ndarray, np.ndarray, _Ball | None]:
    """The input set of the linear bounds around one flattened input x: the box
    [x - eps w, x + eps w] ∩ ``bounds`` (w: the half-widths at eps = 1, ``widths``), and in
    L2 the ellipsoid ||(x' - x) / w||_2 <= eps inside it (eq. C)."""
    lo, hi = np.clip(flat - eps * widths, *bounds), np.clip(flat + eps * widths, *bounds)
    if norm == "linf":
        return lo, hi, None
    units = None if isinstance(widths, float) and widths == 1.0 else np.asarray(widths)
    return lo, hi, _Ball(flat, float(eps), units)


def _ball_checks(eps: BudgetLike, norm: str, units: BudgetLike | None, x: torch.Tensor) -> tuple:
    """``eps``, ``norm`` ("linf" or "l2") and ``units`` (per-feature, with eps one number:
    eps * units in L-inf, the ellipsoid ||delta / units||_2 <= eps in L2) checked against one
    input of x; ``ValueError`` naming the problem. Returns the budget (``flat_budget``) and the
    half-widths at eps = 1 (1.0 without units)."""
    budget, checked = check_ball(eps, norm, units, x)
    sample_shape = tuple(x.shape[1:])
    if checked is None:
        return flat_budget(budget, sample_shape), 1.0
    return flat_budget(budget, sample_shape), flat_budget(checked, sample_shape)


def is_certified_linear(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: BudgetLike,
    norm: str = "linf",
    units: BudgetLike | None = None,
) -> torch.Tensor:
    """Per input, whether linear (CROWN) bounds prove that every point of its L-inf ball
    (inside the model's bounds) is classified as its label: every lower bound of z_y - z_j is
    above 0, the bound being the larger of CROWN's (Zhang et al. 2018, Theorem 3.2, with the
    hidden layers' bounds of ``verify_linf``) and the interval bound of the margin over the
    last hidden layer's bounds (the bounds ``verify_linf`` settles classes with). A certified lower bound between interval bound propagation and
    the exact answer of ``verify_linf``, without a program: a dense matrix product per layer
    and input. With ``norm="l2"`` the ball is the L2 one (eq. C bounds the first layer and
    ends every backward pass; the box that holds it is used too).

    Parameters
    ----------
    model : torch.nn.Module
        As for ``verify_linf``: affine layers, ReLUs, max pooling and piecewise-linear
        activations, in eval mode.
    x : torch.Tensor of shape (N, ...)
        Inputs inside the model's bounds.
    y : torch.Tensor of shape (N,)
        Their labels.
    eps : float or array-like
        The budget, >= 0, in input units (in ``units``); in L-inf also one per feature (the
        shape of one input, or broadcastable to it).
    norm : {"linf", "l2"}, default="linf"
        The norm of the ball.
    units : array-like or None, default=None
        Per-feature units s_d >= 0 (0 freezes a feature), with eps one number: the box
        eps * s_d in L-inf, the ellipsoid ||delta / s||_2 <= eps in L2; None: input units.

    Returns
    -------
    torch.Tensor of bool, shape (N,)
        True where the input is certified (never where it is misclassified).
    """
    _, widths = _ball_checks(eps, norm, units, torch.as_tensor(x))
    wrapped, x, y, budget, chain, logits, activations = _checked(model, x, y, eps, smooth=True)
    bounds = flat_bounds(wrapped.bounds, tuple(x.shape[1:]))
    certified = np.zeros(len(x), dtype=bool)
    for i, flat in enumerate(x.reshape(len(x), -1).double().cpu().numpy()):
        label = int(y[i])
        if int(logits[i].argmax()) != label:
            continue
        lo, hi, ball = linear_input_set(flat, budget, widths, bounds, norm)
        bounds_k = _layer_bounds(chain, lo, hi, "linear", ball, activations)
        low = _margin_lower(chain, bounds_k, lo, hi, label, ball, activations)
        certified[i] = bool(np.all(low > 0))
    return torch.from_numpy(certified)


def check_verifiable(
    model: nn.Module, x: torch.Tensor, logits: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The network's affine-ReLU chain (``affine_relu_chain``), after checking that it computes
    the model's outputs on ``x`` (within 1e-4 of their scale; with ``logits``, through the
    softmax left out); ``ValueError`` naming the problem otherwise (an unsupported layer, or a
    forward that is not the sequence of its modules).

    Parameters
    ----------
    model : torch.nn.Module
        The network (an advlab ``Model``, its preprocessing included, or a bare module).
    x : torch.Tensor of shape (N, ...)
        A few inputs it takes.
    logits : bool, default=False
        A classifier: the chain up to its logits, without a trailing softmax or log-softmax
        over the classes (which keeps their order).

    Returns
    -------
    list of (ndarray, ndarray)
        The affine maps (A_k, c_k) in float64, a ReLU between consecutive ones.
    """
    return _checked_chain(model, x, logits, smooth=False)[0]


def linear_bound_chain(
    model: nn.Module, x: torch.Tensor, logits: bool = False
) -> tuple[Chain, list[Activation | None]]:
    """``check_verifiable`` for linear bounds: the chain with the smooth activations of
    ``linear_relaxations`` (sigmoid, tanh, GELU, ...) between its affine maps too, and the
    activation after each hidden map (None for a ReLU), checked against the model on x;
    ``ValueError`` naming a layer linear bounds cannot follow.

    Parameters
    ----------
    model : torch.nn.Module
        The network (an advlab ``Model``, its preprocessing included, or a bare module).
    x : torch.Tensor of shape (N, ...)
        A few inputs it takes.
    logits : bool, default=False
        A classifier: the chain up to its logits, without a trailing softmax or log-softmax.

    Returns
    -------
    (list of (ndarray, ndarray), list of SmoothActivation or None)
        The affine maps (A_k, c_k) in float64 and the activation after each hidden one.
    """
    return _checked_chain(model, x, logits, smooth=True)


def _checked_chain(model: nn.Module, x: torch.Tensor, logits: bool, smooth: bool) -> tuple:
    """``affine_activation_chain`` of the model, checked to compute its outputs on x."""
    model = at_least_float32(model)
    chain, activations = affine_activation_chain(model, tuple(x.shape[1:]), logits, smooth)
    x = x.detach().to(model_dtype(model))
    with torch.no_grad():  # (with ``logits``, the network's before the softmax left out)
        outputs = (logit_model(model) if logits else model)(x).double().cpu().numpy()
    replayed = _replay(chain, x.reshape(len(x), -1).double().cpu().numpy(), activations)
    scale = max(1.0, float(np.abs(outputs).max()))
    if replayed.shape != outputs.shape or np.abs(replayed - outputs).max() > 1e-4 * scale:
        raise ValueError("exact verification: the affine layers and ReLUs found do not compute "
                         "the model's output (its forward is not the sequence of its modules)")  # fmt: skip
    return chain, activations


def _replay(chain: list[tuple[np.ndarray, np.ndarray]], flat: np.ndarray,
            activations: Activations = None) -> np.ndarray:  # fmt: skip
    """The chain's output on flattened inputs (affine maps with ReLU, or ``activations``,
    between)."""
    v = flat
    for k, (a, c) in enumerate(chain):
        v = v @ a.T + c
        if k < len(chain) - 1:
            activation = _activation(activations, k)
            if activation is None:
                v = np.maximum(v, 0.0)
            else:
                with torch.no_grad():
                    v = activation(torch.from_numpy(v)).numpy()
    return v
