"""Interval bound propagation (IBP): certified L-inf robustness of ReLU networks and training
against the certificate (Gowal et al. 2018, "On the effectiveness of interval bound propagation
for training verifiably robust models").

For the box B = {x' : ||x' - x||_inf <= eps} ∩ [lo, hi]^D, each layer maps an interval
[l, u] (centre m = (u + l) / 2, radius r = (u - l) / 2) to an interval that contains its image:

    affine z = W a + b:      m' = W m + b,   r' = |W| r                       (IBP eq. 6)
        (Linear, Conv2d, and BatchNorm in eval mode: W = diag(gamma / sqrt(var + eps)))
    non-decreasing g (ReLU and its kin, sigmoid, tanh, pooling, flatten, a positive-std
        standardisation, dropout in eval mode):   [g(l), g(u)]

The last affine layer is merged with the margin specification c_j = e_y - e_j ("elision",
Gowal et al. sec. 3): the lower bound of z_y - z_j = (W_y - W_j) a + (b_y - b_j) over the
penultimate interval is (W_y - W_j) m + (b_y - b_j) - |W_y - W_j| r. The network is certified
at x when every such bound is > 0.

Training (Gowal et al. eq. 12) minimises kappa CE(z(x), y) + (1 - kappa) CE(z_wc, y), where
z_wc_j = -(lower bound of z_y - z_j) (0 for j = y) are the worst-case logits; eps ramps up
linearly from 0 and kappa from 1 to ``kappa_end``.

Written by hand: the certified-training library of Wong et al. (convex_adversarial) and
auto_LiRPA (0.3 requires torch < 1.13) do not install on torch 2.13; this is the documented
substitute of the convex outer bound of Wong, Schmidt, Metzen & Kolter (2018) (IBP is looser
but trains networks with comparable certified accuracy on MNIST).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from advlab.models.wrapper import Model
from advlab.models.zoo import Classifier, Normalize
from advlab.utils.progress import progress
from advlab.utils.validation import check_number

Interval = tuple[torch.Tensor, torch.Tensor]


class Standardise(nn.Module):
    """``(x - mean) / std`` of a ``Model``'s preprocessing as a layer (non-decreasing: std > 0)."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = (model,)  # a tuple: not registered as a submodule of this view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.model[0].mean) / self.model[0].std


# non-decreasing maps (elementwise, or pooling / reshaping), bounded by their values at l and u
MONOTONE = (Normalize, Standardise, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.Sigmoid,
            nn.Tanh, nn.Softplus, nn.Hardtanh, nn.MaxPool1d, nn.MaxPool2d,
            nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
            nn.AdaptiveMaxPool2d, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)  # fmt: skip
BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d)


def _affine(layer: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    """m' = layer(m), r' = |W| r (eq. 6): exact bounds of an affine map over a box."""
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    out_mid = layer(mid)
    if isinstance(layer, nn.Linear):
        out_rad = F.linear(rad, layer.weight.abs())
    elif isinstance(layer, nn.Conv2d):
        out_rad = F.conv2d(rad, layer.weight.abs(), None, layer.stride, layer.padding,
                           layer.dilation, layer.groups)  # fmt: skip
    else:  # batch norm in eval mode: per channel (axis 1) x * gamma / sqrt(var + eps) + beta
        assert isinstance(layer, BATCH_NORM) and layer.running_var is not None
        scale = (layer.running_var + layer.eps).rsqrt()
        if layer.weight is not None:
            scale = scale * layer.weight
        out_rad = rad * scale.abs().reshape(-1, *[1] * (rad.ndim - 2))
    return out_mid - out_rad, out_mid + out_rad


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
    """Raise ``ValueError`` naming the problem unless ``model``'s layers, propagated one after
    the other, compute ``model(x)``: every layer supported (see ``interval_bounds``) and the
    bounds of the zero-width box [x, x] equal to the logits (a module whose ``forward`` is not
    its layers in order, e.g. a residual block, fails here rather than certifying wrongly).

    Parameters
    ----------
    model : torch.nn.Module
        The network to certify.
    x : torch.Tensor of shape (N, ...)
        A few inputs it takes.
    atol : float, default=1e-4
        Tolerance on the logits, relative to their largest absolute value (at least 1).
    """
    with torch.no_grad():
        logits = model(x)
        lo, hi = interval_bounds(model, x, x)
    scale = max(1.0, float(logits.abs().max()))
    gap = float(torch.maximum((lo - logits).abs(), (hi - logits).abs()).max()) / scale
    if lo.shape != logits.shape or gap > atol:
        raise ValueError(
            f"interval bounds: the model's layers in order do not compute its output "
            f"(largest difference {gap:.3g} of the logits' scale); certification needs an "
            "nn.Sequential (or advlab Classifier) whose forward is its layers one after another"
        )


def interval_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Interval:
    """Bounds on the output of ``model`` for every input in [lower, upper] (elementwise).

    Parameters
    ----------
    model : torch.nn.Module
        An advlab ``Model`` (its preprocessing included), ``Classifier`` or ``nn.Sequential`` of
        Linear, Conv2d, BatchNorm (eval mode) and non-decreasing layers (``MONOTONE``: ReLU,
        sigmoid, tanh, pooling, flatten, ...); ``check_certifiable`` tests that these layers in
        order are the model.
    lower, upper : torch.Tensor
        The input box, same shape, lower <= upper.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Elementwise lower and upper bounds of the output.
    """
    if lower.shape != upper.shape or bool((lower > upper).any()):
        raise ValueError("lower and upper must have the same shape with lower <= upper")
    lo, hi = lower, upper
    for layer in _layers(model):
        lo, hi = _propagate(layer, lo, hi)
    return lo, hi


def _propagate(layer: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    if isinstance(layer, (nn.Dropout, *BATCH_NORM)) and layer.training:
        raise ValueError(
            f"interval bounds: {type(layer).__name__} in training mode is random or depends on "
            "the batch; call model.eval() first"
        )
    if isinstance(layer, nn.LeakyReLU) and layer.negative_slope < 0:
        raise ValueError("interval bounds: LeakyReLU with a negative slope is not monotone")
    if isinstance(layer, (nn.Linear, nn.Conv2d, *BATCH_NORM)):
        return _affine(layer, lo, hi)
    if isinstance(layer, MONOTONE):
        return layer(lo), layer(hi)
    raise ValueError(
        f"interval bounds: unsupported layer {type(layer).__name__} (supported: Linear, Conv2d, "
        "BatchNorm in eval mode, and non-decreasing layers: "
        f"{', '.join(sorted(t.__name__ for t in MONOTONE))})"
    )


def margin_lower_bounds(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Lower bounds of z_y - z_j over the L-inf ball of radius ``eps`` around each x (clipped
    to ``bounds``), with the last linear layer merged into the margin (elision); 0 at j = y.

    Parameters
    ----------
    model : torch.nn.Module
        See ``interval_bounds``; its last layer must be ``nn.Linear``.
    x : torch.Tensor of shape (N, ...)
        Inputs inside ``bounds``.
    y : torch.Tensor of shape (N,)
        True labels.
    eps : float
        L-inf radius, >= 0.
    bounds : (float, float), default=(0.0, 1.0)
        The input box.

    Returns
    -------
    torch.Tensor of shape (N, n_classes)
        The margin lower bounds; the network is certified at x when all j != y are > 0.
    """
    eps = check_number("eps", eps, 0.0)
    layers = _layers(model)
    last = layers[-1]
    if not isinstance(last, nn.Linear):
        raise ValueError("margin_lower_bounds needs a network whose last layer is nn.Linear")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples, y has {len(y)}")
    lo, hi = (x - eps).clamp(*bounds), (x + eps).clamp(*bounds)
    for layer in layers[:-1]:
        lo, hi = _propagate(layer, lo, hi)
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    w_diff = last.weight[y][:, None, :] - last.weight[None, :, :]  # (N, C, F): W_y - W_j
    b_diff = 0.0 if last.bias is None else (last.bias[y][:, None] - last.bias[None, :])  # (N, C)
    return (w_diff * mid[:, None, :]).sum(-1) + b_diff - (w_diff.abs() * rad[:, None, :]).sum(-1)


def is_certified(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 512,
) -> torch.Tensor:
    """Per sample, whether every margin lower bound (``margin_lower_bounds``) is > 0: the
    network classifies every input of the eps-ball (clipped to ``bounds``) as ``y``.

    Parameters
    ----------
    model : torch.nn.Module
        See ``margin_lower_bounds``.
    x : torch.Tensor of shape (N, ...)
        Inputs inside ``bounds``.
    y : torch.Tensor of shape (N,)
        True labels.
    eps : float
        L-inf radius, >= 0.
    bounds : (float, float), default=(0.0, 1.0)
        The input box.
    batch_size : int, default=512
        Samples per batch (memory, not results).

    Returns
    -------
    torch.Tensor of bool, shape (N,)
        True where the sample is certified.
    """
    out = []
    with torch.no_grad():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            m = margin_lower_bounds(model, xb, yb, eps, bounds).scatter(
                1, yb[:, None], float("inf")
            )
            out.append((m > 0).all(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def certified_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 512,
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
    eps : float
        L-inf radius, >= 0.
    bounds : (float, float), default=(0.0, 1.0)
        The input box.
    batch_size : int, default=512
        Samples per batch (memory, not results).

    Returns
    -------
    float
        Certified accuracy in percent (0 for no samples).
    """
    hits = is_certified(model, x, y, eps, bounds, batch_size)
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
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
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
        Training L-inf radius, >= 0.
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
    bounds : (float, float), default=(0.0, 1.0)
        The input box.
    seed : int, default=0
        Seed of the batch order.

    Returns
    -------
    IBPHistory
        eps, kappa and mean loss per epoch.
    """
    eps = check_number("eps", eps, 0.0)
    check_number("epochs", epochs, 1, integer=True)
    check_number("ramp_epochs", ramp_epochs, 0, integer=True)
    check_number("kappa_end", kappa_end, 0.0, 1.0)
    device = next(model.parameters()).device
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
            xb, yb = x[idx].to(device), y[idx].to(device)
            frac = min(1.0, (step + 1) / ramp_steps) if ramp_steps else 1.0
            eps_now, kappa = eps * frac, 1.0 - (1.0 - kappa_end) * frac
            worst = -margin_lower_bounds(model, xb, yb, eps_now, bounds)
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
