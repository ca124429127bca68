"""Interval bound propagation (IBP): certified L-inf robustness of ReLU networks and training
against the certificate (Gowal et al. 2018, "On the effectiveness of interval bound propagation
for training verifiably robust models").

For the box B = {x' : ||x' - x||_inf <= eps} ∩ [lo, hi]^D, each layer maps an interval
[l, u] (centre m = (u + l) / 2, radius r = (u - l) / 2) to an interval that contains its image:

    affine z = W a + b:      m' = W m + b,   r' = |W| r                       (IBP eq. 6)
        (Linear, Conv2d, and BatchNorm in eval mode: W = diag(gamma / sqrt(var + eps)))
    non-decreasing g (ReLU and its kin, sigmoid, tanh, pooling, flatten, a positive-std
        standardisation, dropout in eval mode):   [g(l), g(u)]
    quasi-convex g, non-increasing up to its minimiser x* and non-decreasing after it (GELU,
        SiLU, Mish, Hardswish; LeakyReLU and PReLU of any slope and ELU of any alpha, x* = 0):
        [min(g(l), g(u), g(min(max(x*, l), u))), max(g(l), g(u))]                  (eq. Q)
    log-softmax over a dimension, increasing in its own z_j and decreasing in every other z_k:
        [l_j - log(e^l_j + sum_{k != j} e^u_k),  u_j - log(e^u_j + sum_{k != j} e^l_k)]  (eq. S)
        (softmax: their exponentials)
    layer, group and instance normalisation, (x_i - mean x) / sqrt(var x + eps) over a layer,
    a group of channels or one channel:
        the centred d_i = x_i - mean x exactly (a linear map), var x = mean d^2 between the
        means of the least (0 where d_i's interval holds 0) and the largest d_i^2, and d_i over
        the square root of that by the signs of d_i's ends; then gamma and beta      (eq. N)

A network that is not a plain sequence of layers (a user's ``nn.Module`` with its own
``forward``, residual blocks) is traced with ``torch.fx`` and its graph propagated node by node:
besides the layers above, interval arithmetic for sums ([l1 + l2, u1 + u2], the skip connection
of a residual block), differences, products with constants, concatenation and reshaping.

**L2 balls** (and per-feature units s_d: the ellipsoid E = {x' : ||(x' - x) / s||_2 <= eps},
clipped to the input box) are carried as E itself, with the box that holds it, through the maps
that keep an ellipsoid one: reshaping, shifts and per-feature scalings (a ``Model``'s
preprocessing, batch norm in eval mode, +, -, * and / by constants in a user's forward), where
the centre c goes through the map and s is multiplied by the scaling's absolute value. The first
Linear layer or convolution (1-d to 3-d) bounds each output over E by the dual norm:

    z_i = w_i . x' + b_i over E:   w_i . c + b_i -+ eps ||w_i * s||_2                      (eq. E)

intersected with eq. 6 over the box (both hold every image of E inside the box; for a
convolution ||w_i * s||_2^2 is the convolution of s^2 with the squared kernel, times the
largest number of copies of a pixel in the window where reflected, replicated or circular
borders repeat pixels: ``_repeats``, in 2-d; a 1-d or 3-d convolution with such borders reads E
as its box).
Past it the bounds are intervals as above. A network that is one affine map before its last
layer is bounded exactly over E (zero padding), the box aside; any other layer before the
first affine one (a ReLU, pooling) bounds E by its box: sound, and as loose as L-inf.

A classifier's margins are those of its logits: a trailing softmax or log-softmax over the
classes (a layer, or the last operation of a user's forward) keeps their order (p_y > p_j iff
z_y > z_j, and log-softmax's differences are the logits'), so it is left out of them. The last
affine layer is merged with the margin specification c_j = e_y - e_j ("elision",
Gowal et al. sec. 3): the lower bound of z_y - z_j = (W_y - W_j) a + (b_y - b_j) over the
penultimate interval is (W_y - W_j) m + (b_y - b_j) - |W_y - W_j| r; a network that does not
end in a linear layer gets the looser lo_y - hi_j of its logits' bounds. The network is
certified at x when every such bound is > 0. The bounds are computed in the network's dtype,
at least float32: a half or bfloat16 network is bounded through a float32 copy of its weights
(``at_least_float32``; its own 8 or 11 significant bits would round the bounds past what they
bound), and trained in its own dtype.

Training (Gowal et al. eq. 12) minimises kappa CE(z(x), y) + (1 - kappa) CE(z_wc, y), where
z_wc_j = -(lower bound of z_y - z_j) (0 for j = y) are the worst-case logits; eps ramps up
linearly from 0 and kappa from 1 to ``kappa_end``. Over E the elided margin is bounded by eq. E
with w = W_y - W_j too, and the larger of that and the box's bound is taken.

Written by hand: the certified-training library of Wong et al. (convex_adversarial) and
auto_LiRPA (0.3 requires torch < 1.13) do not install on torch 2.13; this is the documented
substitute of the convex outer bound of Wong, Schmidt, Metzen & Kolter (2018) (IBP is looser
but trains networks with comparable certified accuracy on MNIST).
"""

from __future__ import annotations

import functools
import operator
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import nn

from advlab.attacks.evasion.base import box_units, check_norm
from advlab.models.wrapper import (
    Model,
    at_least_float32,
    autograd_enabled,
    eval_mode,
    model_dtype,
)
from advlab.models.zoo import Classifier, Normalize
from advlab.utils.progress import progress
from advlab.utils.validation import (
    Bounds,
    BoundsLike,
    Budget,
    BudgetLike,
    budget_on,
    check_bounds,
    check_bounds_shape,
    check_budget_shape,
    check_images,
    check_input_budget,
    check_label_tensor,
    check_number,
    clip,
    describe_bounds,
    same_bounds,
)

Interval = tuple[torch.Tensor, torch.Tensor]


class Standardise(nn.Module):
    """``(x - mean) / std`` of a ``Model``'s preprocessing as a layer (non-decreasing: std > 0)."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = (model,)  # a tuple: not registered as a submodule of this view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.model[0].mean) / self.model[0].std


DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
           nn.FeatureAlphaDropout)  # fmt: skip
# padding, pixel shuffles and upsampling by non-negative weights: linear maps that copy or
# average their inputs (a constant pad adds its value), so non-decreasing and affine
PADDING = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
           nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
           nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d, nn.CircularPad1d,
           nn.CircularPad2d, nn.CircularPad3d, nn.PixelShuffle, nn.PixelUnshuffle,
           nn.ChannelShuffle)  # fmt: skip
UPSAMPLING = (nn.Upsample,)  # (UpsamplingNearest2d and UpsamplingBilinear2d are Upsample)
NEGATIVE_WEIGHTS = ("bicubic",)  # the upsampling modes that are not monotone
# non-decreasing maps (elementwise, or pooling / reshaping), bounded by their values at l and u
MONOTONE = (Normalize, Standardise, nn.ReLU, nn.ReLU6, nn.CELU, nn.SELU, nn.Sigmoid,
            nn.Hardsigmoid, nn.LogSigmoid, nn.Tanh, nn.Softsign, nn.Hardtanh,
            nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.MaxPool1d, nn.MaxPool2d,
            nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
            nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
            nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Flatten, nn.Unflatten, nn.Identity,
            *DROPOUT, *PADDING)  # fmt: skip
# quasi-convex activations, bounded by eq. Q around their minimiser (``_minimiser``); ELU
# is one whatever its alpha (with alpha < 0 it falls to 0 before it rises, so it is not monotone);
# RReLU in eval mode is a leaky ReLU of slope (lower + upper) / 2
QUASI_CONVEX = (nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.LeakyReLU, nn.PReLU, nn.RReLU,
                nn.ELU)  # fmt: skip
BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
INSTANCE_NORM = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
CONVOLUTION = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
# (with constant weights)
AFFINE_FUNCTIONS = (F.linear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d,
                    F.conv_transpose2d, F.conv_transpose3d)  # fmt: skip


@functools.cache
def _minimiser(name: str, approximate: str = "none") -> float:
    """The minimiser x* of the activation ``name`` ("gelu" with its ``approximate``, "silu",
    "mish", "hardswish"), found once in float64 to 1e-12 (bounded Brent on [-5, 0], where each
    has its one minimum; ``tests/test_ibp_activations.py`` checks the shape eq. Q needs); 0 for
    the leaky ReLUs, whose kink is their minimum where the slope is negative, for ELU, whose
    kink is its minimum where alpha is negative, and for abs."""
    if name in ("leaky_relu", "prelu", "rrelu", "elu", "abs"):
        return 0.0
    fn: Any = {"gelu": functools.partial(F.gelu, approximate=approximate), "silu": F.silu,
               "mish": F.mish, "hardswish": F.hardswish}[name]  # fmt: skip
    found = minimize_scalar(lambda t: float(fn(torch.tensor(t, dtype=torch.float64))),
                            bounds=(-5.0, 0.0), method="bounded", options={"xatol": 1e-12})  # fmt: skip
    return float(found.x)


def _quasi_convex(fn: Any, x_star: float, lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    """Eq. Q: fn over [lo, hi] for fn non-increasing up to ``x_star`` and non-decreasing after
    it (or monotone: then its value at an end is the lower of the three)."""
    at_lo, at_hi = fn(lo), fn(hi)
    lowest = fn(torch.full_like(lo, x_star).clamp(lo, hi))
    return torch.minimum(torch.minimum(at_lo, at_hi), lowest), torch.maximum(at_lo, at_hi)


def _layer_minimiser(layer: nn.Module) -> float:
    """x* of a ``QUASI_CONVEX`` layer (``_minimiser`` of its function)."""
    name = {nn.GELU: "gelu", nn.SiLU: "silu", nn.Mish: "mish", nn.Hardswish: "hardswish",
            nn.LeakyReLU: "leaky_relu", nn.PReLU: "prelu", nn.RReLU: "rrelu",
            nn.ELU: "elu"}  # fmt: skip
    return _minimiser(name[type(layer)], getattr(layer, "approximate", "none"))


def _affine(layer: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    """m' = layer(m), r' = |W| r (eq. 6): exact bounds of an affine map over a box."""
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    out_mid = layer(mid)
    if isinstance(layer, nn.Linear):
        out_rad = F.linear(rad, layer.weight.abs())
    elif isinstance(layer, CONVOLUTION):  # (its own padding: reflected, replicated or circular
        # borders repeat input pixels, whose radii must be padded in the same way, not with 0)
        out_rad = layer._conv_forward(rad, layer.weight.abs(), None)
    elif isinstance(layer, TRANSPOSED):  # (zero padding only; output_padding as the layer's)
        transposed: Any = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)
        out_rad = transposed[TRANSPOSED.index(type(layer))](
            rad, layer.weight.abs(), None, layer.stride, layer.padding, layer.output_padding,
            layer.groups, layer.dilation)  # fmt: skip
    else:  # batch norm in eval mode: per channel (axis 1) x * gamma / sqrt(var + eps) + beta
        out_rad = rad * _diagonal_factor(layer, rad.ndim).abs()
    return out_mid - out_rad, out_mid + out_rad


def check_not_batch_dependent(layer: nn.Module, what: str) -> None:
    """``ValueError`` when ``layer`` computes each input's output from the batch or at random:
    dropout, batch norm or RReLU in training mode, or batch norm without running statistics
    (``track_running_stats=False`` normalises by the batch's statistics in eval mode too)."""
    name = type(layer).__name__
    if isinstance(layer, (*DROPOUT, *BATCH_NORM, nn.RReLU)) and layer.training:
        raise ValueError(f"{what}: {name} in training mode is random or depends on the batch; "
                         "call model.eval() first")  # fmt: skip
    if isinstance(layer, BATCH_NORM) and layer.running_var is None:
        raise ValueError(f"{what}: {name} without running statistics (track_running_stats="
                         "False) normalises each input by its batch's statistics")  # fmt: skip


def _layers(model: nn.Module) -> list[nn.Module]:
    """The network as a flat list of layers (Model, Classifier and Sequential unfolded)."""
    if isinstance(model, Model):
        return ([Standardise(model)] if model.has_preprocessing else []) + _layers(model.module)
    if isinstance(model, Classifier):
        return [model.normalize, *_layers(model.body), model.classifier]
    if type(model) is nn.Sequential:  # a subclass may override forward: not unfolded
        return [leaf for child in model for leaf in _layers(child)]
    return [model]


def check_certifiable(model: nn.Module, x: torch.Tensor, atol: float = 1e-4) -> None:
    """Raise ``ValueError`` naming the problem unless interval bounds follow ``model``: every
    layer and operation supported (see ``interval_bounds``; the user's own modules traced with
    ``torch.fx``), and the bounds of the zero-width box [x, x] equal to the logits (a forward
    that the propagation does not see, such as a replaced ``forward`` of a Sequential, fails here
    rather than certifying another network).

    Parameters
    ----------
    model : torch.nn.Module
        The network to certify.
    x : torch.Tensor of shape (N, ...)
        A few inputs it takes.
    atol : float, default=1e-4
        Tolerance on the logits, relative to their largest absolute value (at least 1).
    """
    model = at_least_float32(model)
    x = x.to(model_dtype(model))
    with torch.no_grad():
        logits = model(x)
        lo, hi = interval_bounds(model, x, x)
    scale = max(1.0, float(logits.abs().max()))
    gap = float(torch.maximum((lo - logits).abs(), (hi - logits).abs()).max()) / scale
    if lo.shape != logits.shape or gap > atol:
        raise ValueError(
            f"interval bounds: the propagated layers do not compute the model's output (largest "
            f"difference {gap:.3g} of the logits' scale): its forward is not what its modules or "
            "its torch.fx graph say"
        )


def interval_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Interval:
    """Bounds on the output of ``model`` for every input in [lower, upper] (elementwise).

    Parameters
    ----------
    model : torch.nn.Module
        An advlab ``Model`` (its preprocessing included), ``Classifier`` or ``nn.Sequential`` of
        Linear, Conv1d-3d, BatchNorm (eval mode), non-decreasing layers (``MONOTONE``: ReLU,
        sigmoid, tanh, pooling, flatten, ...), quasi-convex activations (``QUASI_CONVEX``:
        GELU, SiLU, Mish, Hardswish, leaky ReLUs), LayerNorm, GroupNorm, InstanceNorm,
        Softmax and LogSoftmax, or a module of the user's whose ``torch.fx``
        graph uses these and +, -, scaling, cat and reshaping (residual networks);
        ``check_certifiable`` tests that the propagation computes the model.
    lower, upper : torch.Tensor
        The input box, same shape, lower <= upper.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Elementwise lower and upper bounds of the output.
    """
    if lower.shape != upper.shape or bool((lower > upper).any()):
        raise ValueError("lower and upper must have the same shape with lower <= upper")
    model = at_least_float32(model)
    dtype = model_dtype(model)
    lo, hi = lower.to(dtype), upper.to(dtype)
    for layer in _layers(model):
        lo, hi = _propagate(layer, lo, hi)
    return lo, hi


def _propagate(layer: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    check_not_batch_dependent(layer, "interval bounds")
    if isinstance(layer, (nn.Linear, *CONVOLUTION, *TRANSPOSED, *BATCH_NORM)):
        return _affine(layer, lo, hi)
    if isinstance(layer, nn.Softplus):
        return _softplus(lo, hi, layer.beta, layer.threshold)
    if isinstance(layer, MONOTONE) or (
        isinstance(layer, UPSAMPLING) and layer.mode not in NEGATIVE_WEIGHTS
    ):
        return layer(lo), layer(hi)
    if isinstance(layer, QUASI_CONVEX):
        return _quasi_convex(layer, _layer_minimiser(layer), lo, hi)
    if isinstance(layer, nn.LayerNorm):
        return _layer_norm(lo, hi, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
    if isinstance(layer, nn.GroupNorm):
        return _group_norm(lo, hi, layer.num_groups, layer.weight, layer.bias, layer.eps)
    if isinstance(layer, nn.RMSNorm):
        return _rms_norm(lo, hi, layer.normalized_shape, layer.weight, layer.eps)
    if isinstance(layer, INSTANCE_NORM):
        return _instance_norm(lo, hi, layer.training or not layer.track_running_stats,
                              layer.running_mean, layer.running_var, layer.weight, layer.bias,
                              layer.eps)  # fmt: skip
    if isinstance(layer, SOFTMAX):
        log = isinstance(layer, nn.LogSoftmax)
        return _softmax_bounds(lo, hi, _softmax_dim(layer.dim, lo.ndim), log)
    if isinstance(layer, nn.Softmin):  # softmax(-x)
        return _softmax_bounds(-hi, -lo, _softmax_dim(layer.dim, lo.ndim), False)
    if isinstance(layer, nn.Softmax2d):  # over the channels
        return _softmax_bounds(lo, hi, -3, False)
    if isinstance(layer, nn.Threshold):
        return _threshold(lo, hi, layer.threshold, layer.value)
    if isinstance(layer, nn.GLU):
        return _glu(lo, hi, layer.dim)
    if isinstance(layer, nn.LocalResponseNorm):
        return _local_response_norm(lo, hi, layer.size, layer.alpha, layer.beta, layer.k)
    if not type(layer).__module__.startswith("torch.nn"):  # the user's module: its graph
        box = _graph_bounds(_trace(layer), _Box(lo, hi))
        return box.lo, box.hi
    raise ValueError(
        f"interval bounds: unsupported layer {type(layer).__name__} (supported: Linear, "
        "Conv1d-3d, ConvTranspose1d-3d, BatchNorm in eval mode, the activations "
        f"{', '.join(sorted(t.__name__ for t in QUASI_CONVEX))}, LayerNorm, GroupNorm, "
        "InstanceNorm, RMSNorm, LocalResponseNorm, Softplus, Threshold, GLU, Softmax, Softmax2d, Softmin, "
        "LogSoftmax, Upsample but bicubic, and non-decreasing layers: "
        f"{', '.join(sorted(t.__name__ for t in MONOTONE))}; a module of your own is traced)"
    )


# ---- networks that are not a sequence: their torch.fx graph, node by node ----


@dataclass
class _Box:
    """An interval [lo, hi] flowing through a graph (constants flow as themselves)."""

    lo: torch.Tensor
    hi: torch.Tensor


# non-decreasing in their first argument (the others constant): bounded by their values at l, u
# (clamp and clip with constant limits; mean and sum over dimensions, e.g. global pooling;
# indexing and slicing with constant indices)
MONOTONE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.celu, F.selu, F.hardtanh,
                      torch.sigmoid, F.sigmoid, F.hardsigmoid, F.logsigmoid, torch.tanh, F.tanh,
                      F.softsign, F.tanhshrink, F.softshrink, F.hardshrink, F.max_pool1d,
                      F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
                      F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
                      F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
                      F.pad, F.pixel_shuffle, F.pixel_unshuffle, torch.flatten, torch.reshape, torch.squeeze,
                      torch.unsqueeze, torch.permute, torch.transpose, torch.clamp, torch.clip,
                      torch.mean, torch.sum, operator.getitem}  # fmt: skip
MONOTONE_METHODS = {"relu", "sigmoid", "tanh", "flatten", "view", "reshape", "contiguous",
                    "permute", "transpose", "squeeze", "unsqueeze", "clone", "clamp", "clip",
                    "clamp_min", "clamp_max", "mean", "sum"}  # fmt: skip
SHAPE_METHODS = {"size", "dim"}  # read off the box's shape
# quasi-convex in their first argument (eq. Q), by the name of their minimiser
QUASI_CONVEX_FUNCTIONS = {F.gelu: "gelu", F.silu: "silu", F.mish: "mish",
                          F.hardswish: "hardswish", F.leaky_relu: "leaky_relu",
                          F.prelu: "prelu", torch.prelu: "prelu", F.rrelu: "rrelu", F.elu: "elu",
                          torch.abs: "abs"}  # fmt: skip
QUASI_CONVEX_METHODS = {"abs": "abs"}


# a module's graph, traced once: certifying traces the same network for every batch and budget
_TRACED: weakref.WeakKeyDictionary[nn.Module, torch.fx.GraphModule] = weakref.WeakKeyDictionary()


def _trace(module: nn.Module) -> torch.fx.GraphModule:
    """``module``'s ``torch.fx`` graph (traced on first use; the graph shares its layers)."""
    if module not in _TRACED:
        _TRACED[module] = _trace_now(module)
    return _TRACED[module]


def _trace_now(module: nn.Module) -> torch.fx.GraphModule:
    try:
        return torch.fx.symbolic_trace(module)
    except Exception as exc:  # data-dependent control flow and the like: name the module
        raise ValueError(
            f"interval bounds: {type(module).__name__} is not a supported layer and torch.fx "
            f"cannot trace it ({type(exc).__name__}: {exc})"
        ) from exc


def _constant(graph: torch.fx.GraphModule, node: torch.fx.Node) -> Any:
    """The parameter or buffer a ``get_attr`` node of ``graph`` reads."""
    value: Any = graph
    for part in str(node.target).split("."):
        value = getattr(value, part)
    return value


def _graph_bounds(graph: torch.fx.GraphModule, box: _Box, until: Any = None) -> Any:
    """Propagate ``box`` through ``graph``'s nodes in order: the value of the output, or with
    ``until`` (a node) the value of its first argument."""
    env: dict[torch.fx.Node, Any] = {}

    def load(arg: Any) -> Any:
        return torch.fx.node.map_arg(arg, env.__getitem__)

    for node in graph.graph.nodes:
        if node is until:
            return env[node.args[0]]
        if node.op == "placeholder":
            if env:
                raise ValueError("interval bounds: a network of more than one input")
            env[node] = box
        elif node.op == "get_attr":  # a parameter or buffer used in the forward itself
            env[node] = _constant(graph, node)
        elif node.op == "call_module":
            x = load(node.args)[0]
            env[node] = _through(_layers(graph.get_submodule(node.target)), x)
        elif node.op in ("call_function", "call_method"):
            env[node] = _apply(node, load(node.args), load(node.kwargs))
        else:  # output
            return load(node.args)[0]
    raise AssertionError("a graph ends with its output")


def _scale(box: _Box, factor: Any) -> _Box:
    """box * factor for a constant factor (a number or a tensor): its sign picks the ends."""
    a, b = box.lo * factor, box.hi * factor
    return _Box(torch.minimum(a, b), torch.maximum(a, b))


def _as_box(value: Any) -> _Box:
    return value if isinstance(value, _Box) else _Box(value, value)


def _apply(node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
    """One function or method node of the graph on boxes (interval arithmetic) or constants."""
    target: Any = node.target  # a method's name, or the function itself
    boxes = [a for a in (*args, *kwargs.values()) if isinstance(a, _Box)]
    boxes += [b for a in args if isinstance(a, list | tuple) for b in a if isinstance(b, _Box)]
    if not boxes:  # constants only (shapes, parameters): computed as they are
        return (
            getattr(args[0], target)(*args[1:], **kwargs)
            if node.op == "call_method"
            else target(*args, **kwargs)
        )
    first, rest = args[0], args[1:]
    kept = _kept_ellipsoid(node, args, kwargs) if len(boxes) == 1 else None
    if kept is not None:
        return kept
    monotone = len(boxes) == 1 and isinstance(first, _Box)  # bounded in the first argument only
    if node.op == "call_method":
        if target in SHAPE_METHODS:
            return getattr(first.lo, target)(*rest, **kwargs)
        if target in MONOTONE_METHODS and monotone:
            return _Box(
                getattr(first.lo, target)(*rest, **kwargs),
                getattr(first.hi, target)(*rest, **kwargs),
            )
        if target in SOFTMAX_METHODS and monotone:
            return _softmax_box(first, SOFTMAX_METHODS[target], rest, kwargs)
        if target in QUASI_CONVEX_METHODS and monotone and not rest and not kwargs:
            x_star = _minimiser(QUASI_CONVEX_METHODS[target])
            return _Box(*_quasi_convex(getattr(torch, target), x_star, first.lo, first.hi))
    elif target is getattr and rest[0] in ("shape", "ndim"):
        return getattr(first.lo, rest[0])
    elif monotone and (target in MONOTONE_FUNCTIONS or _monotone_interpolation(node, kwargs)):
        return _Box(target(first.lo, *rest, **kwargs), target(first.hi, *rest, **kwargs))
    elif monotone and target is F.softplus:
        given = {**dict(zip(("beta", "threshold"), rest, strict=False)), **kwargs}
        return _Box(*_softplus(first.lo, first.hi, given.get("beta", 1.0),
                               given.get("threshold", 20.0)))  # fmt: skip
    elif monotone and target in (F.layer_norm, F.group_norm, F.instance_norm, F.rms_norm):
        return _Box(*_normalisation_node(target, first, rest, kwargs))
    elif monotone and target in SOFTMAX_FUNCTIONS:
        return _softmax_box(first, SOFTMAX_FUNCTIONS[target], rest, kwargs)
    elif monotone and target is F.softmin:
        return _softmax_box(_Box(-first.hi, -first.lo), False, rest, kwargs)
    elif monotone and target is F.threshold:
        given = {**dict(zip(("threshold", "value"), rest, strict=False)), **kwargs}
        return _Box(*_threshold(first.lo, first.hi, given["threshold"], given["value"]))
    elif monotone and target is F.glu:
        return _Box(*_glu(first.lo, first.hi, rest[0] if rest else kwargs.get("dim", -1)))
    elif monotone and target is F.local_response_norm:
        given = {"alpha": 1e-4, "beta": 0.75, "k": 1.0,
                 **dict(zip(("size", "alpha", "beta", "k"), rest, strict=False)), **kwargs}  # fmt: skip
        return _Box(*_local_response_norm(first.lo, first.hi, given["size"], given["alpha"],
                                          given["beta"], given["k"]))  # fmt: skip
    elif monotone and target is F.rrelu and _random_rrelu(rest, kwargs):
        raise ValueError(f"interval bounds: F.rrelu with training=True (node {node.name}) draws "
                         "its slopes at random")  # fmt: skip
    elif monotone and target in QUASI_CONVEX_FUNCTIONS:
        x_star = _minimiser(QUASI_CONVEX_FUNCTIONS[target], kwargs.get("approximate", "none"))
        return _Box(*_quasi_convex(lambda t: target(t, *rest, **kwargs), x_star, first.lo,
                                   first.hi))  # fmt: skip
    elif target is F.dropout and not kwargs.get("training", args[2] if len(args) > 2 else True):
        return first
    elif target in (operator.add, torch.add) and len(args) == 2 and not kwargs:
        a, b = _as_box(args[0]), _as_box(args[1])
        return _Box(a.lo + b.lo, a.hi + b.hi)
    elif target in (operator.sub, torch.sub) and len(args) == 2 and not kwargs:
        a, b = _as_box(args[0]), _as_box(args[1])
        return _Box(a.lo - b.hi, a.hi - b.lo)
    elif target is operator.neg:
        return _Box(-first.hi, -first.lo)
    elif target in (operator.mul, torch.mul) and len(boxes) == 1 and not kwargs:
        box, factor = (args[0], args[1]) if isinstance(args[0], _Box) else (args[1], args[0])
        return _scale(box, factor)
    elif (
        target in (operator.truediv, torch.div)
        and isinstance(first, _Box)
        and not isinstance(rest[0], _Box)
        and not kwargs
    ):
        return _scale(first, 1.0 / rest[0])
    elif target is torch.cat:
        parts = [_as_box(p) for p in first]
        return _Box(
            torch.cat([p.lo for p in parts], *rest, **kwargs),
            torch.cat([p.hi for p in parts], *rest, **kwargs),
        )
    elif target in AFFINE_FUNCTIONS:
        return _functional_affine(target, first, rest, kwargs)
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    raise ValueError(
        f"interval bounds: unsupported operation {name!r} on a bounded value (node {node.name}); "
        "supported: Linear, Conv1d-3d, BatchNorm, layer, group and instance norm, monotone and "
        "quasi-convex activations, softmax, pooling, clamp with constant limits, mean and sum, "
        "indexing, +, -, * and / by constants, cat, reshaping"
    )


def _monotone_interpolation(node: torch.fx.Node, kwargs: dict) -> bool:
    """Whether a node is F.interpolate by non-negative weights (any mode but bicubic)."""
    mode = node.args[3] if len(node.args) > 3 else kwargs.get("mode", "nearest")
    return node.target is F.interpolate and mode not in NEGATIVE_WEIGHTS


def _functional_affine(target: Any, box: _Box, rest: tuple, kwargs: dict) -> _Box:
    """F.linear / F.conv1d-3d with constant weights: m' = f(m, W, b), r' = f(r, |W|) (eq. 6)."""
    weight, *more = rest
    bias = more[0] if more else kwargs.pop("bias", None)
    more = more[1:]
    mid, rad = (box.hi + box.lo) / 2, (box.hi - box.lo) / 2
    out_mid = target(mid, weight, bias, *more, **kwargs)
    out_rad = target(rad, weight.abs(), None, *more, **kwargs)
    return _Box(out_mid - out_rad, out_mid + out_rad)


# ---- layer and group normalisation: eq. N ----


def _standardised(lo: torch.Tensor, hi: torch.Tensor, eps: float) -> Interval:
    """(x - mean x) / sqrt(var x + eps) over the last dimension of the box [lo, hi] (eq. N,
    var the biased variance, as torch's normalisations take it)."""
    n = lo.shape[-1]
    low = (1 - 1 / n) * lo - (hi.sum(-1, keepdim=True) - hi) / n  # d_i = x_i - mean x
    high = (1 - 1 / n) * hi - (lo.sum(-1, keepdim=True) - lo) / n
    return _over_root_mean_square(low, high, eps)


def _over_root_mean_square(low: torch.Tensor, high: torch.Tensor, eps: float) -> Interval:
    """d / sqrt(mean d^2 + eps) over the last dimension for d in the box [low, high] (eq. N's
    division): the root lies between its values at each d_i's least square (0 where its
    interval holds 0) and at its largest, and d_i over it between the four quotients."""
    straddles = (low <= 0) & (high >= 0)
    least = torch.where(straddles, torch.zeros_like(low), torch.minimum(low**2, high**2))
    root_lo = (least.mean(-1, keepdim=True) + eps).sqrt()
    root_hi = (torch.maximum(low**2, high**2).mean(-1, keepdim=True) + eps).sqrt()
    return (torch.minimum(low / root_lo, low / root_hi),
            torch.maximum(high / root_lo, high / root_hi))  # fmt: skip


def _affine_after(lo: torch.Tensor, hi: torch.Tensor, weight: Any, bias: Any) -> Interval:
    """gamma * x + beta over the box (either may be None), gamma's sign picking the ends."""
    box = _Box(lo, hi) if weight is None else _scale(_Box(lo, hi), weight)
    return (box.lo, box.hi) if bias is None else (box.lo + bias, box.hi + bias)


def _layer_norm(lo: torch.Tensor, hi: torch.Tensor, shape: Any, weight: Any, bias: Any,
                eps: float) -> Interval:  # fmt: skip
    """Eq. N for layer normalisation over the last ``len(shape)`` dimensions."""
    flat = (*lo.shape[: lo.ndim - len(tuple(shape))], -1)
    low, high = _standardised(lo.reshape(flat), hi.reshape(flat), eps)
    return _affine_after(low.reshape(lo.shape), high.reshape(lo.shape), weight, bias)


def _rms_norm(lo: torch.Tensor, hi: torch.Tensor, shape: Any, weight: Any,
              eps: float | None) -> Interval:  # fmt: skip
    """RMS normalisation over the last ``len(shape)`` dimensions, x / sqrt(mean x^2 + eps)
    times gamma (eq. N without the centring; eps None: the dtype's machine epsilon, torch's
    default)."""
    eps = torch.finfo(lo.dtype).eps if eps is None else eps
    flat = (*lo.shape[: lo.ndim - len(tuple(shape))], -1)
    low, high = _over_root_mean_square(lo.reshape(flat), hi.reshape(flat), eps)
    return _affine_after(low.reshape(lo.shape), high.reshape(lo.shape), weight, None)


def _group_norm(lo: torch.Tensor, hi: torch.Tensor, groups: int, weight: Any, bias: Any,
                eps: float) -> Interval:  # fmt: skip
    """Eq. N for group normalisation: each sample's channels (axis 1) in ``groups`` groups,
    gamma and beta per channel."""
    grouped = (lo.shape[0], groups, -1)
    low, high = _standardised(lo.reshape(grouped), hi.reshape(grouped), eps)
    per_channel = (-1, *[1] * (lo.ndim - 2))
    return _affine_after(low.reshape(lo.shape), high.reshape(lo.shape),
                         None if weight is None else weight.reshape(per_channel),
                         None if bias is None else bias.reshape(per_channel))  # fmt: skip


def _softplus(lo: torch.Tensor, hi: torch.Tensor, beta: float, threshold: float) -> Interval:
    """Softplus over the box. Both its pieces rise, the curve log1p(exp(beta x)) / beta (slope
    sigmoid(beta x) > 0, whatever beta's sign) and x where beta x > threshold, but it jumps
    between them at the switch x_s = threshold / beta, by log1p(exp(-threshold)) / |beta| (a
    few 1e-9 at the default threshold 20, not at a small one; down where beta > 0, up or down
    where beta < 0). So its extremes over [l, u] are among f(l), f(u) and, where the switch
    lies in [l, u], the two pieces' values there (the curve's, and x_s, approached)."""
    switch = threshold / beta
    at_ends = F.softplus(lo, beta, threshold), F.softplus(hi, beta, threshold)
    curve = torch.full_like(lo, float(np.logaddexp(0.0, threshold)) / beta)
    line = torch.full_like(lo, switch)
    holds = (lo <= switch) & (hi >= switch)
    low = torch.minimum(*at_ends)
    high = torch.maximum(*at_ends)
    low = torch.where(holds, torch.minimum(low, torch.minimum(curve, line)), low)
    high = torch.where(holds, torch.maximum(high, torch.maximum(curve, line)), high)
    return low, high


def _random_rrelu(rest: tuple, kwargs: dict) -> bool:
    """Whether an F.rrelu call (lower, upper, training, inplace after its input) is in training
    mode, where it draws its slopes at random (F.rrelu's default is eval mode)."""
    return bool(rest[2] if len(rest) > 2 else kwargs.get("training", False))


def _threshold(lo: torch.Tensor, hi: torch.Tensor, threshold: float, value: float) -> Interval:
    """Threshold over the box: x where x > threshold, else ``value``: its values are ``value``
    where l <= threshold and (max(l, threshold), u] where u > threshold (the end at the
    threshold approached, not reached)."""
    holds_value, holds_line = lo <= threshold, hi > threshold
    start = torch.clamp(lo, min=threshold)
    inf = torch.full_like(lo, float("inf"))
    low = torch.minimum(torch.where(holds_value, value, inf), torch.where(holds_line, start, inf))
    high = torch.maximum(torch.where(holds_value, value, -inf), torch.where(holds_line, hi, -inf))
    return low, high


def _product(lo_a: torch.Tensor, hi_a: torch.Tensor, lo_b: torch.Tensor,
             hi_b: torch.Tensor) -> Interval:  # fmt: skip
    """a * b over the boxes [lo_a, hi_a] and [lo_b, hi_b]: a product is bilinear, so its
    extremes are among the four corners' products."""
    corners = torch.stack([a * b for a in (lo_a, hi_a) for b in (lo_b, hi_b)])
    return corners.amin(0), corners.amax(0)


def _glu(lo: torch.Tensor, hi: torch.Tensor, dim: int) -> Interval:
    """GLU over the box: a * sigmoid(b) for the halves a, b of ``dim``, with sigmoid(b) in
    [sigmoid(l_b), sigmoid(u_b)] (``_product``)."""
    lo_a, lo_b = lo.chunk(2, dim)
    hi_a, hi_b = hi.chunk(2, dim)
    return _product(lo_a, hi_a, torch.sigmoid(lo_b), torch.sigmoid(hi_b))


def _local_response_norm(lo: torch.Tensor, hi: torch.Tensor, size: int, alpha: float,
                         beta: float, k: float) -> Interval:  # fmt: skip
    """Local response normalisation over the box: b_c = a_c / d_c with d_c = (k + alpha mean
    of a_c'^2 over the channels c - size // 2 .. c + (size - 1) // 2, zeros past the ends)^beta
    (F.local_response_norm). The squares lie between 0 (where a_c's interval holds 0) or the
    smaller square and the larger one, so d_c between its values at those (it is monotone in
    each), and a_c / d_c is a product of a_c and 1 / d_c (``_product``): sound, treating a_c
    in the numerator and in d_c as two values."""
    if k <= 0:
        raise ValueError(f"interval bounds: LocalResponseNorm with k = {k} divides by 0 at 0")
    small = torch.where(lo > 0, lo**2, torch.where(hi < 0, hi**2, torch.zeros_like(lo)))
    large = torch.maximum(lo**2, hi**2)
    channels = lo.shape[1]

    def denominator(squares: torch.Tensor) -> torch.Tensor:
        shape = list(squares.shape)
        before, after = shape.copy(), shape.copy()
        before[1], after[1] = size // 2, (size - 1) // 2
        padded = torch.cat([squares.new_zeros(before), squares, squares.new_zeros(after)], 1)
        sums = torch.cat([squares.new_zeros([*shape[:1], 1, *shape[2:]]), padded.cumsum(1)], 1)
        window = sums.narrow(1, size, channels) - sums.narrow(1, 0, channels)
        return (k + alpha * window / size) ** beta

    return _product(lo, hi, 1 / denominator(small), 1 / denominator(large))


def _instance_norm(lo: torch.Tensor, hi: torch.Tensor, own_statistics: bool, mean: Any,
                   var: Any, weight: Any, bias: Any, eps: float) -> Interval:  # fmt: skip
    """Instance normalisation: with each input's own statistics, eq. N per sample and channel
    (group normalisation with one channel per group); with running statistics (eval mode,
    ``track_running_stats``), the per-channel affine map (x - mean) / sqrt(var + eps)."""
    if own_statistics:
        return _group_norm(lo, hi, lo.shape[1], weight, bias, eps)
    per_channel = (-1, *[1] * (lo.ndim - 2))
    scale = (var + eps).rsqrt().reshape(per_channel)
    shifted = _scale(_Box(lo - mean.reshape(per_channel), hi - mean.reshape(per_channel)), scale)
    return _affine_after(shifted.lo, shifted.hi,
                         None if weight is None else weight.reshape(per_channel),
                         None if bias is None else bias.reshape(per_channel))  # fmt: skip


def _normalisation_node(target: Any, box: _Box, rest: tuple, kwargs: dict) -> Interval:
    """F.layer_norm(x, normalized_shape, weight, bias, eps), F.group_norm(x, num_groups,
    weight, bias, eps), F.rms_norm(x, normalized_shape, weight, eps) or F.instance_norm(x,
    running_mean, running_var, weight, bias, use_input_stats, momentum, eps) of a graph on a
    box (eq. N)."""
    if target is F.instance_norm:
        names: tuple[str, ...] = ("running_mean", "running_var", "weight", "bias",
                                  "use_input_stats", "momentum", "eps")  # fmt: skip
        given = {"use_input_stats": True, "eps": 1e-5, **dict(zip(names, rest, strict=False)),
                 **kwargs}  # fmt: skip
        return _instance_norm(box.lo, box.hi, bool(given["use_input_stats"]),
                              given.get("running_mean"), given.get("running_var"),
                              given.get("weight"), given.get("bias"), given["eps"])  # fmt: skip
    if target is F.rms_norm:
        given = {**dict(zip(("normalized_shape", "weight", "eps"), rest, strict=False)), **kwargs}
        return _rms_norm(box.lo, box.hi, given["normalized_shape"], given.get("weight"),
                         given.get("eps"))  # fmt: skip
    names = ("normalized_shape" if target is F.layer_norm else "num_groups", "weight", "bias",
             "eps")  # fmt: skip
    given = {**dict(zip(names, rest, strict=False)), **kwargs}
    weight, bias, eps = given.get("weight"), given.get("bias"), given.get("eps", 1e-5)
    if target is F.layer_norm:
        return _layer_norm(box.lo, box.hi, given[names[0]], weight, bias, eps)
    return _group_norm(box.lo, box.hi, given[names[0]], weight, bias, eps)


# ---- softmax: bounded by eq. S, and left out of a classifier's margins ----

SOFTMAX = (nn.Softmax, nn.LogSoftmax)
SOFTMAX_FUNCTIONS = {
    F.softmax: False,
    torch.softmax: False,
    F.log_softmax: True,
    torch.log_softmax: True,
}  # (the value: whether it is the log-softmax)
SOFTMAX_METHODS = {"softmax": False, "log_softmax": True}
# logits not yet seen through their softmax: a user's module as its graph without it
_LOGITS: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


def _softmax_dim(dim: int | None, ndim: int) -> int:
    """The dimension a softmax normalises: ``dim``, or where it is None torch's legacy choice
    (0 for 0-, 1- and 3-d inputs, else 1)."""
    return (0 if ndim in (0, 1, 3) else 1) if dim is None else dim


def _log_softmax_end(own: torch.Tensor, others: torch.Tensor, dim: int) -> torch.Tensor:
    """own_j - log(e^own_j + sum_{k != j} e^others_k) along ``dim`` (an end of eq. S): the
    sums over k != j from exclusive prefix and suffix log-cumulative sums (no cancellation,
    no overflow)."""
    pad = torch.full_like(others.narrow(dim, 0, 1), float("-inf"))
    before = torch.cat([pad, others.logcumsumexp(dim).narrow(dim, 0, others.shape[dim] - 1)], dim)
    after = torch.cat([others.flip(dim).logcumsumexp(dim).narrow(dim, 0, others.shape[dim] - 1)
                       .flip(dim), pad], dim)  # fmt: skip
    return own - torch.logaddexp(own, torch.logaddexp(before, after))


def _softmax_bounds(lo: torch.Tensor, hi: torch.Tensor, dim: int, log: bool) -> Interval:
    """Eq. S over the box [lo, hi]: the log-softmax's bounds, or the softmax's (their
    exponentials: exp is increasing)."""
    low, high = _log_softmax_end(lo, hi, dim), _log_softmax_end(hi, lo, dim)
    return (low, high) if log else (low.exp(), high.exp())


def _softmax_box(box: _Box, log: bool, rest: tuple, kwargs: dict) -> _Box:
    """A softmax node of a graph (F.softmax, torch.log_softmax, x.softmax(dim), ...) on a box,
    by eq. S, in the node's ``dtype`` where it names one."""
    dim = rest[0] if rest else kwargs.get("dim")
    low, high = _softmax_bounds(box.lo, box.hi, _softmax_dim(dim, box.lo.ndim), log)
    dtype = kwargs.get("dtype")
    return _Box(low, high) if dtype is None else _Box(low.to(dtype), high.to(dtype))


def _class_softmax(node: Any, graph: torch.fx.GraphModule) -> bool:
    """Whether a graph node is a softmax or log-softmax over the classes (dim 1 or -1 of the
    logits), in the logits' dtype."""
    if not isinstance(node, torch.fx.Node) or node.kwargs.get("dtype") is not None:
        return False
    if node.op == "call_module":
        layer = graph.get_submodule(str(node.target))
        return isinstance(layer, SOFTMAX) and layer.dim in (None, 1, -1)
    softmax = (node.op == "call_function" and node.target in SOFTMAX_FUNCTIONS) or (
        node.op == "call_method" and node.target in SOFTMAX_METHODS
    )
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return softmax and dim in (1, -1)


def logit_layers(layers: list[nn.Module]) -> list[nn.Module]:
    """``layers`` (``_layers``) up to the logits: without the softmax or log-softmax layers
    over the classes that end them, and a user's module at the end as its graph without the
    softmax its forward ends in (the tail a classifier's decisions do not depend on)."""
    end = len(layers)
    while end and isinstance(layers[end - 1], SOFTMAX) and layers[end - 1].dim in (None, 1, -1):
        end -= 1
    last = layers[end - 1] if end else None
    if last is None or isinstance(last, (Normalize, Standardise)):
        return layers[:end]
    if type(last).__module__.startswith("torch.nn"):
        return layers[:end]
    return [*layers[: end - 1], _logit_graph(last)]


def _logit_graph(module: nn.Module) -> nn.Module:
    """``module`` itself, or where its graph's output is a softmax over the classes, the graph
    that outputs the softmax's input (the same layers; built once)."""
    if module in _LOGITS:
        return _LOGITS[module]
    graph = _trace(module)
    output = next(n for n in graph.graph.nodes if n.op == "output")
    logits = output.args[0]
    while _class_softmax(logits, graph):
        logits = logits.args[0]
    result: nn.Module = module
    if logits is not output.args[0]:
        copied = torch.fx.Graph()
        env: dict[torch.fx.Node, torch.fx.Node] = {}
        copied.graph_copy(graph.graph, env)
        copied.output(env[logits])
        result = torch.fx.GraphModule(graph, copied)
        result.graph.eliminate_dead_code()
        result.recompile()
    _LOGITS[module] = result
    return result


# ---- L2 balls: the ellipsoid carried to the first affine layer (eq. E) ----


@dataclass
class _Ellipsoid(_Box):
    """The set {c + s * d : ||d||_2 <= eps} (s >= 0 elementwise, the shape of c) inside the box
    [lo, hi] that holds it; wherever it is read as a ``_Box`` (any operation that does not keep
    it an ellipsoid) it is that box, which is sound."""

    centre: torch.Tensor
    scale: torch.Tensor
    eps: float

    def reshaped(self, fn: Any) -> _Ellipsoid:
        """The set through x -> fn(x) where fn moves coordinates (flatten, view, permute):
        centre, scale and box through fn."""
        return _Ellipsoid(fn(self.lo), fn(self.hi), fn(self.centre), fn(self.scale), self.eps)

    def scaled(self, fn: Any, factor: Any = 1.0) -> _Ellipsoid:
        """The set through the per-coordinate affine map x -> fn(x) = factor * x + shift
        (``factor`` a number or a tensor broadcasting to the set): the centre and the box
        through fn (a negative factor swaps the box's ends), the scale times |factor|."""
        lo, hi = fn(self.lo), fn(self.hi)
        lo, hi = torch.minimum(lo, hi), torch.maximum(lo, hi)
        return _Ellipsoid(lo, hi, fn(self.centre), self.scale * abs(factor), self.eps)


RESHAPING = (nn.Flatten, nn.Unflatten, nn.Identity, *DROPOUT)  # (dropout in eval mode)
RESHAPING_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze,
                       torch.permute, torch.transpose}  # fmt: skip
RESHAPING_METHODS = {"flatten", "view", "reshape", "contiguous", "permute", "transpose",
                     "squeeze", "unsqueeze", "clone"}  # fmt: skip


def _through(layers: list[nn.Module], value: _Box) -> _Box:
    """An input set (a box, or an ellipsoid in its box) through ``layers`` in order."""
    for layer in layers:
        value = _set_step(layer, value)
    return value


def _set_step(layer: nn.Module, value: _Box) -> _Box:
    """One layer on an input set: a box by eq. 6 and the monotone maps (``_propagate``); an
    ellipsoid kept through reshaping and per-feature affine maps, bounded by eq. E at a Linear
    or Conv2d layer, traced through a module of the user's, and read as its box by any other
    layer."""
    if not isinstance(value, _Ellipsoid):
        return _Box(*_propagate(layer, value.lo, value.hi))
    check_not_batch_dependent(layer, "interval bounds")
    if isinstance(layer, RESHAPING):
        return value.reshaped(layer)
    if isinstance(layer, (Standardise, Normalize, *BATCH_NORM)):
        return value.scaled(layer, _diagonal_factor(layer, value.centre.ndim))
    if isinstance(layer, nn.Linear) or (  # (repeated borders counted in 2-d: ``_repeats``)
        isinstance(layer, CONVOLUTION)
        and (layer.padding_mode == "zeros" or isinstance(layer, nn.Conv2d))
    ):
        rows = (layer.weight**2, None)  # ||w_i * s||_2^2 = (the layer's map of s^2 by w^2)_i
        if isinstance(layer, nn.Linear):
            squared = F.linear(value.scale**2, *rows)
        else:
            squared = layer._conv_forward(value.scale**2, *rows) * _repeats(layer, value.centre)
        return _dual_norm_box(
            layer(value.centre), squared, value, _affine(layer, value.lo, value.hi)
        )
    if not type(layer).__module__.startswith("torch.nn"):  # the user's module: its graph
        result: _Box = _graph_bounds(_trace(layer), value)
        return result
    return _Box(*_propagate(layer, value.lo, value.hi))


def _repeats(layer: nn.modules.conv._ConvNd, x: torch.Tensor) -> torch.Tensor | float:
    """Per output position of ``layer`` on inputs shaped as x, the most times one input pixel
    appears in its window: 1 with zero padding, more near reflected, replicated or circular
    borders of a 2-d convolution, which repeat pixels. Such a row sums the weights w_p of a
    pixel's copies, and (sum_p w_p)^2 <= m sum_p w_p^2 for m copies (Cauchy-Schwarz), so this
    factor times the convolution of s^2 with the squared kernel (its own padding) bounds
    ||r_i * s||_2^2."""
    if layer.padding_mode == "zeros":
        return 1.0
    height, width = x.shape[-2:]
    index = torch.arange(height * width, dtype=torch.float64, device=x.device)
    padded = F.pad(index.reshape(1, 1, height, width), layer._reversed_padding_repeated_twice,
                   mode=layer.padding_mode)  # fmt: skip
    windows = F.unfold(padded, layer.kernel_size, layer.dilation, 0, layer.stride)[0]  # (K, L)
    repeats = (windows[:, None, :] == windows[None, :, :]).sum(0).amax(0)  # (L,)
    out_h = (padded.shape[-2] - layer.dilation[0] * (layer.kernel_size[0] - 1) - 1) // layer.stride[
        0
    ] + 1
    return repeats.reshape(1, 1, out_h, -1).to(x.dtype)


def _diagonal_factor(layer: nn.Module, ndim: int) -> torch.Tensor:
    """The per-feature factor a of a diagonal affine layer x -> a x + b (a preprocessing's
    1 / std, batch norm's gamma / sqrt(var + eps)), shaped to broadcast to inputs of ``ndim``
    dimensions (batch norm's channels on axis 1)."""
    if isinstance(layer, Standardise):
        return 1.0 / torch.as_tensor(layer.model[0].std)
    if isinstance(layer, Normalize):
        return 1.0 / layer.std
    assert isinstance(layer, BATCH_NORM) and layer.running_var is not None  # (checked)
    factor = (layer.running_var + layer.eps).rsqrt()
    if layer.weight is not None:
        factor = factor * layer.weight
    return factor.reshape(-1, *[1] * (ndim - 2))


def _dual_norm_box(mid: torch.Tensor, squared: torch.Tensor, value: _Ellipsoid,
                   box: Interval) -> _Box:  # fmt: skip
    """Eq. E: the output centre ``mid`` -+ eps ||w_i * s||_2 (``squared``: its square per
    output), intersected with the box bounds ``box`` of the same outputs."""
    radius = value.eps * squared.clamp_min(0).sqrt()
    return _Box(torch.maximum(mid - radius, box[0]), torch.minimum(mid + radius, box[1]))


def _kept_ellipsoid(node: torch.fx.Node, args: tuple, kwargs: dict) -> _Box | None:
    """``_ellipsoid_operation`` where the node's one bounded argument is an ellipsoid (the
    first, or the second of a constant + E or c * E); None where the result would repeat a
    coordinate (broadcasting that grows the set: no longer the same ellipsoid) or the
    operation does not keep it."""
    first, rest = args[0], args[1:]
    if not isinstance(first, _Ellipsoid):
        if not (len(args) == 2 and isinstance(args[1], _Ellipsoid)) or kwargs:
            return None
        if node.target not in (operator.add, operator.mul, torch.add, torch.mul):
            return None
        first, rest = args[1], (args[0],)  # (commutative)
    kept = _ellipsoid_operation(node, first, rest, kwargs)
    if isinstance(kept, _Ellipsoid) and kept.centre.numel() != first.centre.numel():
        return None
    return kept


def _ellipsoid_operation(node: torch.fx.Node, first: _Ellipsoid, rest: tuple,
                         kwargs: dict) -> _Box | None:  # fmt: skip
    """A graph node on an ellipsoid (its first argument; the others constant) that keeps it
    one or bounds it by eq. E: reshaping, + and - a constant, * and / by a constant, F.linear
    and F.conv1d-3d; None for any other node (then read as its box)."""
    target: Any = node.target
    if (node.op == "call_method" and target in RESHAPING_METHODS) or (
        node.op == "call_function" and target in RESHAPING_FUNCTIONS
    ):
        if node.op == "call_method":
            return first.reshaped(lambda t: getattr(t, target)(*rest, **kwargs))
        return first.reshaped(lambda t: target(t, *rest, **kwargs))
    if node.op != "call_function" or (kwargs and target not in AFFINE_FUNCTIONS):
        return None
    if target in (operator.add, torch.add, operator.sub, torch.sub) and len(rest) == 1:
        sign = -1 if target in (operator.sub, torch.sub) else 1
        return first.scaled(lambda t: t + sign * rest[0])
    if target in (operator.mul, torch.mul) and len(rest) == 1:
        return first.scaled(lambda t: t * rest[0], rest[0])
    if target in (operator.truediv, torch.div) and len(rest) == 1:
        return first.scaled(lambda t: t / rest[0], 1.0 / rest[0])
    if target in AFFINE_FUNCTIONS:
        weight, *more = rest
        kwargs = dict(kwargs)
        bias = more[0] if more else kwargs.pop("bias", None)
        more = more[1:]
        squared = target(first.scale**2, weight**2, None, *more, **kwargs)
        mid = target(first.centre, weight, bias, *more, **kwargs)
        box = _functional_affine(target, _Box(first.lo, first.hi), (weight, bias, *more), kwargs)
        return _dual_norm_box(mid, squared, first, (box.lo, box.hi))
    return None


def input_box(model: nn.Module, x: torch.Tensor, bounds: BoundsLike | None = None) -> Bounds:
    """The input box the eps-balls are clipped to: ``bounds``, else the ``Model``'s bounds,
    else (0, 1); ``ValueError`` when ``bounds`` contradicts the ``Model``'s (a ball clipped to
    the wrong box is not the one the model is attacked in: the certificate would not hold),
    when per-feature bounds do not broadcast to one input, or when ``x`` lies outside the
    box.

    Parameters
    ----------
    model : torch.nn.Module
        An advlab ``Model`` (its ``bounds``) or a bare network.
    x : torch.Tensor
        The inputs.
    bounds : (float, float), (array_like, array_like) or None, default=None
        The box the caller names, if any: two numbers or per-feature bounds
        (``check_bounds``).

    Returns
    -------
    (float, float) or (torch.Tensor, torch.Tensor)
        The box, checked (``check_bounds``).
    """
    own = model.bounds if isinstance(model, Model) else None
    given = None if bounds is None else check_bounds(bounds)
    box = given or own or (0.0, 1.0)
    if own is not None and not same_bounds(box, own):
        raise ValueError(
            f"bounds={describe_bounds(box)} differ from the Model's bounds "
            f"{describe_bounds(own)}; leave bounds out to use the Model's"
        )
    if getattr(x, "ndim", 0) >= 2:
        check_bounds_shape(box, tuple(x.shape[1:]))
    if x.numel():  # (an empty batch certifies nothing, as before)
        check_images(
            x, "x", box, x.dtype, "pass the inputs' box: bounds=..., or Model(net, bounds=...)"
        )
    return box


def margin_lower_bounds(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: BudgetLike,
    bounds: BoundsLike | None = None,
    norm: str = "linf",
    units: BudgetLike | None = None,
) -> torch.Tensor:
    """Lower bounds of z_y - z_j over the ball of radius ``eps`` around each x (clipped to
    ``bounds``; L-inf, or L2 by eq. E; z the logits, before a trailing softmax or log-softmax
    over the classes, whose order they decide), with the last linear layer merged into the margin
    (elision) when the network ends in one, else lo_y - hi_j from the logits' bounds; 0 at
    j = y.

    Parameters
    ----------
    model : torch.nn.Module
        See ``interval_bounds``.
    x : torch.Tensor of shape (N, ...)
        Inputs inside ``bounds``.
    y : torch.Tensor of shape (N,)
        True labels.
    eps : float or array-like
        Radius, >= 0; in L-inf also one per feature (the shape of one input, or
        broadcastable to it): the box |x'_d - x_d| <= eps_d.
    bounds : (float, float), (array_like, array_like) or None, default=None
        The input box, two numbers or one box per feature; None: the ``Model``'s bounds,
        (0, 1) for a bare module.

    norm : {"linf", "l2"}, default="linf"
        The ball's norm (``check_ball``); in L2 eps is one number.
    units : array-like or None, default=None
        Per-feature units s_d (>= 0, the shape of one input or broadcastable to it): the box
        eps * s_d in L-inf, the ellipsoid ||(x' - x) / s||_2 <= eps in L2; eps is then one
        number. None: 1.

    Returns
    -------
    torch.Tensor of shape (N, n_classes)
        The margin lower bounds; the network is certified at x when all j != y are > 0.
    """
    eps, units = check_ball(eps, norm, units, x)
    model, bounds = at_least_float32(model), input_box(model, x, bounds)
    return _margin_bounds(model, x, _labels(model, x, y), eps, bounds, norm, units)


def _labels(model: nn.Module, x: torch.Tensor, y: Any) -> torch.Tensor:
    """``y`` checked (``check_label_tensor``: len(x) non-negative integers below the network's
    output count, read off one input in eval mode) as a long tensor on x's device."""
    n_classes = None
    if len(x):
        with torch.no_grad(), eval_mode(model):
            n_classes = int(model(x[:1].to(model_dtype(model))).shape[1])
    return check_label_tensor(y, len(x), n_classes=n_classes).to(x.device)


def _margin_bounds(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Budget,
    bounds: Bounds,
    norm: str = "linf",
    units: torch.Tensor | None = None,
) -> torch.Tensor:
    """``margin_lower_bounds`` on inputs, labels, budget, box and units already checked (the
    callers that loop over batches check them once)."""
    x = x.to(model_dtype(model))
    layers = logit_layers(_layers(model))
    value, last = penultimate_set(layers, _input_set(x, eps, units, bounds, norm))
    lo, hi = value.lo, value.hi
    if last is None:  # no linear layer to merge: the logits' bounds, z_y >= lo_y, z_j <= hi_j
        return (lo.gather(1, y[:, None]) - hi).scatter(1, y[:, None], 0.0)
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    w_diff = last.weight[y][:, None, :] - last.weight[None, :, :]  # (N, C, F): W_y - W_j
    b_diff = 0.0 if last.bias is None else (last.bias[y][:, None] - last.bias[None, :])  # (N, C)
    bound = (w_diff * mid[:, None, :]).sum(-1) + b_diff - (w_diff.abs() * rad[:, None, :]).sum(-1)
    if isinstance(value, _Ellipsoid):  # eq. E with w = W_y - W_j, and the larger bound
        ball = (w_diff * value.centre[:, None, :]).sum(-1) + b_diff
        ball = ball - value.eps * (w_diff * value.scale[:, None, :]).norm(dim=-1)
        bound = torch.maximum(bound, ball)
    return bound


def penultimate_set(layers: list[nn.Module], value: _Box) -> tuple[_Box, nn.Linear | None]:
    """Bounds of the input of the network's final Linear layer (a box, or the ellipsoid of an
    L2 ball where no layer before it is more than affine), and that layer, so that the caller
    bounds a linear function of its output exactly over them (the elision of the last layer,
    Gowal et al. 2018, section 3); the bounds of the output and None when the network (the
    layers of ``_layers``) does not end in one.

    Parameters
    ----------
    layers : list of torch.nn.Module
        The network as ``_layers`` unfolds it (a user's module last: up to its final Linear
        layer, through its ``torch.fx`` graph).
    value : _Box
        The input set (``_input_set``), in the network's dtype.

    Returns
    -------
    (_Box, torch.nn.Linear or None)
    """
    if not layers:
        return value, None
    value = _through(layers[:-1], value)
    head, last = layers[-1], _final_linear(layers[-1])
    if last is None:
        return _set_step(head, value), None
    if last is not head:  # the user's module ending in a linear layer: up to its input
        final, graph, node = last
        return _graph_bounds(graph, value, until=node), final
    assert isinstance(head, nn.Linear)
    return value, head


def check_ball(
    eps: BudgetLike, norm: str, units: BudgetLike | None, x: torch.Tensor
) -> tuple[Budget, torch.Tensor | None]:
    """The input set's ``eps``, ``norm`` ("linf" or "l2") and per-feature ``units`` checked
    against one input of x; ``ValueError`` naming the problem. In L-inf the set is the box
    |x'_d - x_d| <= eps_d (eps one number or per feature) or, with units, eps * units_d; in L2
    the ellipsoid ||(x' - x) / units||_2 <= eps (units 1 without), eps one number.

    Returns
    -------
    (float or torch.Tensor, torch.Tensor or None)
        The budget (``check_input_budget``) and the units as a float64 tensor (None without).
    """
    check_norm(norm)
    budget = check_input_budget("eps", eps, x)
    if norm == "l2" and units is None and isinstance(budget, torch.Tensor):
        raise ValueError("an L2 budget is one number: to give each feature its own units, pass "
                         "units=s (the ellipsoid ||delta / s||_2 <= eps)")  # fmt: skip
    checked = box_units(units, eps, "pixel")
    if checked is not None:
        check_budget_shape("units", checked, tuple(x.shape[1:]))
    return budget, checked


def _input_set(x: torch.Tensor, eps: Budget, units: torch.Tensor | None, bounds: Bounds,
               norm: str) -> _Box:  # fmt: skip
    """The ball around each x (``check_ball``'s) as the box [x - eps s, x + eps s] clipped to
    ``bounds`` (s = units, 1 without), in L2 with the ellipsoid ||(x' - x) / s||_2 <= eps it
    holds."""
    half = budget_on(eps if units is None else float(eps) * units, x)  # (the product in float64)
    lo, hi = clip(x - half, bounds, outward=True), clip(x + half, bounds, outward=True)
    if norm == "linf":
        return _Box(lo, hi)
    scale = torch.ones_like(x) if units is None else torch.ones_like(x) * budget_on(units, x)
    return _Ellipsoid(lo, hi, x, scale, float(eps))


def _final_linear(head: nn.Module) -> Any:
    """``head`` if it is ``nn.Linear``; for the user's module whose graph returns a linear
    layer's output, (that layer, the graph, its node); else None."""
    if isinstance(head, nn.Linear):
        return head
    if type(head).__module__.startswith("torch.nn") and type(head) is not nn.Sequential:
        return None
    graph = _trace(head)
    final = next(n for n in graph.graph.nodes if n.op == "output").args[0]
    if isinstance(final, torch.fx.Node) and final.op == "call_module":
        layer = graph.get_submodule(str(final.target))
        if isinstance(layer, nn.Linear):
            return layer, graph, final
    return None


def is_certified(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: BudgetLike,
    bounds: BoundsLike | None = None,
    batch_size: int = 512,
    norm: str = "linf",
    units: BudgetLike | None = None,
) -> torch.Tensor:
    """Per sample, whether every margin lower bound (``margin_lower_bounds``) is > 0: the
    network classifies every input of the eps-ball (clipped to ``bounds``; L-inf or L2) as
    ``y``.

    Parameters
    ----------
    model : torch.nn.Module
        See ``margin_lower_bounds``.
    x : torch.Tensor of shape (N, ...)
        Inputs inside ``bounds``.
    y : torch.Tensor of shape (N,)
        True labels.
    eps : float or array-like
        Radius, >= 0; in L-inf also one per feature (the shape of one input, or
        broadcastable to it): the box |x'_d - x_d| <= eps_d.
    bounds : (float, float), (array_like, array_like) or None, default=None
        The input box, two numbers or one box per feature; None: the ``Model``'s bounds,
        (0, 1) for a bare module.
    batch_size : int, default=512
        Samples per batch (memory, not results).
    norm : {"linf", "l2"}, default="linf"
        The ball's norm (see ``margin_lower_bounds``).
    units : array-like or None, default=None
        Per-feature units (see ``margin_lower_bounds``).

    Returns
    -------
    torch.Tensor of bool, shape (N,)
        True where the sample is certified.
    """
    eps, units = check_ball(eps, norm, units, x)
    model = at_least_float32(model)
    bounds, out, y = input_box(model, x, bounds), [], _labels(model, x, y)
    with torch.no_grad():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            m = _margin_bounds(model, xb, yb, eps, bounds, norm, units)
            out.append((m.scatter(1, yb[:, None], float("inf")) > 0).all(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def certified_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: BudgetLike,
    bounds: BoundsLike | None = None,
    batch_size: int = 512,
    norm: str = "linf",
    units: BudgetLike | None = None,
) -> float:
    """Percentage of samples ``is_certified``: correctly classified for every input in the
    eps-ball, a lower bound of robust accuracy.

    Parameters
    ----------
    model : torch.nn.Module
        See ``margin_lower_bounds``.
    x : torch.Tensor of shape (N, ...)
        Inputs inside ``bounds``.
    y : torch.Tensor of shape (N,)
        True labels.
    eps : float or array-like
        Radius, >= 0; in L-inf also one per feature (the shape of one input, or
        broadcastable to it): the box |x'_d - x_d| <= eps_d.
    bounds : (float, float), (array_like, array_like) or None, default=None
        The input box, two numbers or one box per feature; None: the ``Model``'s bounds,
        (0, 1) for a bare module.
    batch_size : int, default=512
        Samples per batch (memory, not results).
    norm : {"linf", "l2"}, default="linf"
        The ball's norm (see ``margin_lower_bounds``).
    units : array-like or None, default=None
        Per-feature units (see ``margin_lower_bounds``).

    Returns
    -------
    float
        Certified accuracy in percent (0 for no samples).
    """
    hits = is_certified(model, x, y, eps, bounds, batch_size, norm, units)
    return 100.0 * float(hits.sum()) / max(len(x), 1)


@dataclass
class IBPHistory:
    """Per epoch: the eps and kappa at its end and its mean loss.

    Attributes
    ----------
    eps : list of float
        Training radius at the end of each epoch.
    kappa : list of float
        Weight of the clean loss at the end of each epoch.
    loss : list of float
        Mean loss of each epoch.
    """

    eps: list[float] = field(default_factory=list)
    kappa: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)


@autograd_enabled()  # (the caller may be under torch.no_grad)
def train_ibp(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    epochs: int = 10,
    ramp_epochs: int = 5,
    kappa_end: float = 0.5,
    batch_size: int = 100,
    lr: float = 1e-3,
    bounds: BoundsLike | None = None,
    seed: int = 0,
    norm: str = "linf",
    units: BudgetLike | None = None,
) -> IBPHistory:
    """Train ``model`` in place on (x, y) against its IBP certificate (Gowal et al. eq. 12):
    loss = kappa CE(z, y) + (1 - kappa) CE(z_wc, y), eps and kappa ramped linearly over the
    first ``ramp_epochs`` epochs (eps from 0, kappa from 1 to ``kappa_end``). Adam.

    Parameters
    ----------
    model : torch.nn.Module
        See ``margin_lower_bounds``.
    x, y : torch.Tensor
        Training inputs (inside ``bounds``) and labels.
    eps : float
        Training radius, >= 0 (in ``norm``).
    epochs : int, default=10
        Passes over the data, >= 1.
    ramp_epochs : int, default=5
        Epochs over which eps and kappa ramp, >= 0 (0: no ramp).
    kappa_end : float, default=0.5
        Weight of the clean loss after the ramp, in [0, 1].
    batch_size : int, default=100
        Samples per step.
    lr : float, default=1e-3
        Adam's learning rate.
    bounds : (float, float), (array_like, array_like) or None, default=None
        The input box, two numbers or one box per feature; None: the ``Model``'s bounds,
        (0, 1) for a bare module.
    seed : int, default=0
        Seed of the batch order.
    norm : {"linf", "l2"}, default="linf"
        The ball's norm (see ``margin_lower_bounds``): L2 trains against eq. E's bounds.
    units : array-like or None, default=None
        Per-feature units (see ``margin_lower_bounds``).

    Returns
    -------
    IBPHistory
        eps, kappa and mean loss per epoch.
    """
    eps = check_number("eps", eps, 0.0)
    _, units = check_ball(eps, norm, units, x)
    epochs = int(check_number("epochs", epochs, 1, integer=True))
    ramp_epochs = int(check_number("ramp_epochs", ramp_epochs, 0, integer=True))
    kappa_end = check_number("kappa_end", kappa_end, 0.0, 1.0)
    bounds, y = input_box(model, x, bounds), _labels(model, x, y)
    device, dtype = next(model.parameters()).device, model_dtype(model)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(x) // batch_size)
    ramp_steps = ramp_epochs * steps_per_epoch
    history, step = IBPHistory(), 0
    model.train()
    for _ in progress(range(epochs), desc="IBP training"):
        order, total = torch.randperm(len(x), generator=generator), 0.0
        for s in range(0, len(x), batch_size):
            idx = order[s : s + batch_size]
            xb, yb = x[idx].to(device, dtype), y[idx].to(device)
            frac = min(1.0, (step + 1) / ramp_steps) if ramp_steps else 1.0
            eps_now, kappa = eps * frac, 1.0 - (1.0 - kappa_end) * frac
            worst = -_margin_bounds(model, xb, yb, eps_now, bounds, norm, units)
            loss = kappa * F.cross_entropy(model(xb), yb) + (1 - kappa) * F.cross_entropy(worst, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            step += 1
        history.eps.append(eps_now)
        history.kappa.append(kappa)
        history.loss.append(total / len(x))
    model.eval()
    return history
