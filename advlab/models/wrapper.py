"""A classifier as attacks see it, in Foolbox 3's sense: the user's ``nn.Module`` together with
the bounds of its input space and its preprocessing.

    model = Model(net, bounds=(0, 1), preprocessing=dict(mean=[0.485, 0.456, 0.406],
                                                         std=[0.229, 0.224, 0.225], axis=-3))
    PGD(model, eps=8 / 255, max_iter=10)(images, labels)     # images in [0, 1], any C, H, W

``model(x) = net((x - mean) / std)``, cast to the network's dtype (``model_dtype``: float32
images feed a user's ``.double()`` network): attacks work in the input space the user holds
(pixels in ``bounds``), the wrapper normalises. The per-channel ``std`` also gives
"standardized" budgets their meaning: eps in standardized units is eps * std_c pixels in
channel c.

A bare ``nn.Module`` passed to an attack is wrapped by ``as_model`` with bounds (0, 1) and
no preprocessing; if it normalises inside itself it may declare its per-channel std as an
attribute ``input_std`` (the zoo's models do), which standardized budgets then use.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from advlab.utils.validation import Bounds, check_bounds

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _broadcast_axis(value: Any, name: str) -> int | None:
    """The channel axis a mean or std shaped to broadcast implies ((C, 1, 1) or (1, C, 1, 1):
    -3; (1, 1, 1, C): -1); None for a number or a flat sequence."""
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.ndim <= 1 or t.numel() == 1:
        return None
    shape = list(t.shape)
    while shape[0] == 1:  # a batch axis, or leading axes of size 1
        shape.pop(0)
    if any(size != 1 for size in shape[1:]):
        raise ValueError(
            f"preprocessing {name} must be a number, one value per channel, or shaped to "
            f"broadcast along one axis such as (C, 1, 1); got shape {tuple(t.shape)}"
        )
    return -len(shape)


def _preprocessing_axis(pre: dict[str, Any]) -> int:
    """The channel axis: ``axis`` as given, else the one a mean or std shaped to broadcast
    implies, else -3 (NCHW); an ``axis`` that the shapes contradict is refused."""
    implied = {
        a for a in (_broadcast_axis(pre.get(k, 0.0), k) for k in ("mean", "std")) if a is not None
    }
    if len(implied) > 1:
        raise ValueError(f"preprocessing mean and std are shaped for different axes {implied}")
    if "axis" not in pre:
        return implied.pop() if implied else -3
    axis = int(pre["axis"])
    if implied and implied != {axis}:
        raise ValueError(
            f"preprocessing axis={axis}, but mean and std are shaped for axis {implied.pop()}"
        )
    return axis


def _channel_stat(
    value: float | Sequence[float] | torch.Tensor, axis: int, name: str
) -> torch.Tensor:
    """A scalar stays 0-d; a per-channel sequence (or a tensor shaped to broadcast, flattened
    first) is shaped to broadcast along ``axis``."""
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.ndim > 1:  # (its shape checked by _preprocessing_axis: one axis of channels)
        t = t.reshape(-1) if t.numel() > 1 else t.reshape(())
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"preprocessing {name} must be finite, got {value!r}")
    if t.ndim == 1:
        if axis >= 0:
            raise ValueError(f"preprocessing axis must be negative (e.g. -3 for NCHW), got {axis}")
        t = t.reshape(-1, *([1] * (-axis - 1)))
    return t


class Model(nn.Module):
    """``module`` with input ``bounds`` and optional ``preprocessing``.

    Parameters
    ----------
    module : torch.nn.Module
        Maps preprocessed inputs (N, ...) to logits (N, n_classes).
    bounds : (float, float) or (array_like, array_like), default=(0.0, 1.0)
        (lower, upper) of the inputs attacks produce: (0, 1) for images in [0, 1], infinite
        bounds ``(-inf, inf)`` for unbounded feature spaces, or one box per feature (either
        side an array of one input's shape or broadcastable to it, such as (D,) for tabular
        rows; a lower bound of 0 with an upper of inf is a non-negative feature, equal finite
        bounds a fixed one). Attacks clip to it, certificates and verifiers bound the eps-ball
        intersected with it.
    preprocessing : dict or None, default=None
        ``dict(mean=..., std=..., axis=-3)``: mean and std are numbers or one value per channel
        along ``axis`` (default -3, the channel axis of NCHW); ``model(x) = module((x - mean) /
        std)``. Tensors shaped to broadcast, such as (C, 1, 1), (1, C, 1, 1) or (1, 1, 1, C),
        are taken too, and imply the axis.

    Attributes
    ----------
    bounds : (float, float) or (torch.Tensor, torch.Tensor)
        As given: two floats, or two float64 CPU tensors of one shape (``check_bounds``).
    mean, std : torch.Tensor
        Buffers, broadcastable to the input.
    input_std : torch.Tensor or None
        The per-channel std that standardized budgets use: ``std`` when preprocessing is
        given, else the module's own ``input_std`` if it declares one, else None.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        module: nn.Module,
        bounds: Bounds = (0.0, 1.0),
        preprocessing: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch nn.Module, got {type(module).__name__}")
        self.bounds: Bounds = check_bounds(bounds)
        self.module = module
        self.training = module.training  # the wrapper's mode is the network's
        pre = dict(preprocessing or {})
        unknown = set(pre) - {"mean", "std", "axis"}
        if unknown:
            raise ValueError(f"preprocessing takes mean, std and axis; got {sorted(unknown)}")
        axis = _preprocessing_axis(pre)
        self.register_buffer("mean", _channel_stat(pre.get("mean", 0.0), axis, "mean"))
        self.register_buffer("std", _channel_stat(pre.get("std", 1.0), axis, "std"))
        if not bool((self.std > 0).all()):
            raise ValueError("preprocessing std must be > 0")
        self.has_preprocessing = "mean" in pre or "std" in pre
        self.axis = axis
        self.channels = max(self.mean.numel(), self.std.numel())
        if self.mean.numel() > 1 and self.std.numel() > 1 and self.mean.numel() != self.std.numel():
            raise ValueError("preprocessing mean and std must have the same number of channels")
        self.input_std: torch.Tensor | float | None = (
            self.std if "std" in pre else getattr(module, "input_std", None)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_preprocessing:
            if self.channels > 1 and (x.ndim < -self.axis or x.shape[self.axis] != self.channels):
                raise ValueError(
                    f"the preprocessing has {self.channels} channels along axis {self.axis}, "
                    f"but the input has shape {tuple(x.shape)}"
                )
            x = (x - self.mean) / self.std
        return self.module(x.to(model_dtype(self)))

    def extra_repr(self) -> str:
        lo = self.bounds[0]
        bounds = f"per-feature {tuple(lo.shape)}" if isinstance(lo, torch.Tensor) else self.bounds
        return f"bounds={bounds}, preprocessing={self.has_preprocessing}"


def as_model(model: nn.Module) -> Model:
    """``model`` itself if it is a ``Model``, else ``Model(model)`` (bounds (0, 1), no
    preprocessing).

    Parameters
    ----------
    model : torch.nn.Module
        A Model or a bare module.

    Returns
    -------
    Model
        The wrapped model.
    """
    return model if isinstance(model, Model) else Model(model)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating-point dtype the network computes in: that of its first floating-point
    parameter or buffer (a user's ``.double()`` network takes float64 inputs), float32 when it
    has none. A ``Model``'s own preprocessing buffers are float32 whatever its network's dtype
    and are skipped.

    Parameters
    ----------
    model : torch.nn.Module
        A Model or a bare module.

    Returns
    -------
    torch.dtype
        The dtype attacks, certificates and verification cast inputs to.
    """
    module = model.module if isinstance(model, Model) else model
    tensors = itertools.chain(module.parameters(), module.buffers())
    return next((t.dtype for t in tensors if torch.is_floating_point(t)), torch.float32)


def at_least_float32(model: ModuleT) -> ModuleT:
    """``model`` itself where it computes in float32 or float64; for a half or bfloat16
    network a float32 copy of it, whose weights are the network's exactly (both formats fit
    in float32). Certificates and verification bound this copy: bounds propagated in a
    format of 8 or 11 significant bits would be rounded past the values they bound.

    Parameters
    ----------
    model : torch.nn.Module
        A Model or a bare module.

    Returns
    -------
    torch.nn.Module
        ``model``, or its float32 copy (the user's network is left as it is).
    """
    if model_dtype(model) in (torch.float32, torch.float64):
        return model
    return copy.deepcopy(model).float()


@contextlib.contextmanager
def autograd_enabled() -> Iterator[None]:
    """Autograd on for the block (or the decorated function), whatever the caller's context:
    attacks and training called inside ``torch.no_grad()`` or ``torch.inference_mode()``, as
    evaluation code often is, compute their gradients all the same.

    Yields
    ------
    None
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block; on exit every module gets back its own mode (not the root's:
    a root in training mode around a network in eval mode must not switch the network's batch
    norm and dropout to training on the way out).

    Parameters
    ----------
    model : torch.nn.Module
        The network.

    Yields
    ------
    torch.nn.Module
        ``model``, in eval mode.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
