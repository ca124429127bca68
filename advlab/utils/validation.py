"""Input checks shared by attacks, defenses and metrics (one place, one wording)."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from numbers import Real

import numpy as np
import torch

BOUNDS_REMEDY = (
    "set bounds=(lo, hi) to your data's range on Model(...) or on the k-means attack, "
    "(-inf, inf) where it is unbounded"
)


def caller_stacklevel() -> int:
    """The ``stacklevel`` of a warning raised by the calling function that points at the first
    frame outside advlab and the decorators around its methods (``contextlib``'s, scikit-learn's
    ``_fit_context``): the user's own call, however deep advlab's calls go."""
    import contextlib

    import sklearn.base

    skipped = (
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
        os.path.abspath(contextlib.__file__),
        os.path.abspath(sklearn.base.__file__),
    )
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        skipped
    ):
        frame, level = frame.f_back, level + 1
    return level


def check_device(device: str | torch.device) -> str | torch.device:
    """``device`` as given if torch knows it and this machine has it ("cpu", "cuda", "cuda:1",
    "mps"); ``ValueError`` naming what is missing otherwise (torch's own errors are an
    AssertionError, 'Torch not compiled with CUDA enabled', or a list of 20 device types)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(device)!r}: this torch build or machine has no CUDA GPU; use 'cpu'"
        )
    if (
        parsed.type == "cuda"
        and parsed.index is not None
        and parsed.index >= torch.cuda.device_count()
    ):
        raise ValueError(
            f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) here"
        )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r}: MPS is not available here; use 'cpu'")
    return device


BoundValue = float | torch.Tensor  # one bound for every feature, or one per feature
Bounds = tuple[BoundValue, BoundValue]  # (lower, upper) of the inputs, as ``check_bounds`` gives


def _held(value: object) -> float | None:
    """``value`` as a float when it is one number (a 0-d tensor or array included), else
    None."""
    held = value.item() if getattr(value, "ndim", None) == 0 and hasattr(value, "item") else value
    return float(held) if isinstance(held, Real) and not isinstance(held, bool) else None


def check_bounds(value: object, name: str = "bounds") -> Bounds:
    """The box of the inputs, (lower, upper): two numbers, returned as floats (-inf and inf
    for an open side), or per-feature bounds (either side a sequence, array or tensor of one
    input's shape or one that broadcasts to it, such as (D,) for tabular rows; the other side
    may be one number), returned as two float64 CPU tensors of one shape; a feature whose
    lower and upper bounds are equal (finite) is fixed: no attack moves it. ``ValueError``
    naming the problem unless every lower bound is below its upper bound (at most equal to it
    per feature, and not for every feature; NaN, booleans, strings and empty arrays refused).
    ``check_bounds_shape`` checks the shape against the inputs."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or len(value) != 2:
        raise ValueError(f"{name} must be (lower, upper), got {value!r}")
    low, high = _held(value[0]), _held(value[1])
    if low is not None and high is not None:
        if math.isnan(low) or math.isnan(high) or not low < high:
            raise ValueError(f"{name} must be (lower, upper) with lower < upper, got {value!r}")
        return low, high
    sides = []
    for side, given in zip(("lower", "upper"), value, strict=True):
        if isinstance(given, str | bytes):
            raise ValueError(f"{name}' {side} side must be a number or an array, got {given!r}")
        try:
            held = given.detach().cpu() if isinstance(given, torch.Tensor) else np.asarray(given)
            tensor = torch.as_tensor(held, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{name}' {side} side must be a number or an array of numbers, "
                             f"got {given!r}") from err  # fmt: skip
        if held.dtype in (torch.bool, np.bool_):
            raise ValueError(f"{name}' {side} side must hold numbers, got booleans")
        if tensor.numel() == 0:
            raise ValueError(f"{name}' {side} side is empty (shape {tuple(tensor.shape)})")
        if bool(torch.isnan(tensor).any()):
            raise ValueError(f"{name}' {side} side contains NaN")
        sides.append(tensor)
    try:
        lo, hi = (t.clone() for t in torch.broadcast_tensors(*sides))
    except RuntimeError as err:
        raise ValueError(
            f"{name}' lower side has shape {tuple(sides[0].shape)} and its upper side "
            f"{tuple(sides[1].shape)}, which do not broadcast to one shape"
        ) from err
    wrong = torch.nonzero((lo > hi) | ((lo == hi) & torch.isinf(lo)))
    if len(wrong):
        at = tuple(int(i) for i in wrong[0])
        raise ValueError(
            f"{name} must have lower <= upper (finite where equal) for every feature; at index "
            f"{at} the lower bound is {float(lo[at]):g} and the upper bound {float(hi[at]):g}"
        )
    if bool((lo == hi).all()):
        raise ValueError(f"{name} fix every feature (lower == upper): no input can move")
    return lo, hi


def per_feature(bounds: Bounds) -> bool:
    """Whether checked ``bounds`` hold one box per feature (tensors), not two numbers."""
    return isinstance(bounds[0], torch.Tensor)


def describe_bounds(bounds: Bounds) -> str:
    """Checked ``bounds`` in words for messages: "[0, 1]", or "per-feature bounds of shape
    (30,) (lower from 0 to 1, upper from 1 to inf)"."""
    lo, hi = bounds
    if not isinstance(lo, torch.Tensor) or not isinstance(hi, torch.Tensor):
        return f"[{lo:g}, {hi:g}]"
    return (
        f"per-feature bounds of shape {tuple(lo.shape)} (lower from {float(lo.min()):g} to "
        f"{float(lo.max()):g}, upper from {float(hi.min()):g} to {float(hi.max()):g})"
    )


def _broadcasts_to(shape: tuple[int, ...], sample_shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` broadcasts to ``sample_shape`` without growing it."""
    try:
        return torch.broadcast_shapes(shape, sample_shape) == tuple(sample_shape)
    except RuntimeError:
        return False


def check_bounds_shape(bounds: Bounds, sample_shape: tuple[int, ...], name: str = "bounds") -> None:
    """Refuse per-feature ``bounds`` (``check_bounds``) that do not broadcast to one input of
    shape ``sample_shape`` without growing it."""
    lo = bounds[0]
    if isinstance(lo, torch.Tensor) and not _broadcasts_to(tuple(lo.shape), sample_shape):
        raise ValueError(
            f"{name} have shape {tuple(lo.shape)}, which does not broadcast to one input "
            f"of shape {tuple(sample_shape)}: give one bound per feature in that shape (or a "
            "shape that broadcasts to it, such as (C, 1, 1) per channel)"
        )


def bounds_on(bounds: Bounds, x: torch.Tensor, outward: bool = False) -> Bounds:
    """Checked ``bounds`` to clip x with: floats as they are; per-feature tensors on x's device
    in its dtype, rounded inwards (a lower bound up, an upper bound down, to the next value of
    x's dtype) so that a clipped value never leaves the float64 box, or with ``outward`` the
    other way, so that the box holds every value of x's dtype that rounds into it (the
    inputs ``check_images`` accepts: a certificate's box must contain x itself)."""
    lo, hi = bounds
    if not isinstance(lo, torch.Tensor) or not isinstance(hi, torch.Tensor):
        return bounds
    low, high = lo.to(x.dtype), hi.to(x.dtype)
    inf = low.new_tensor(math.inf)
    if outward:  # the next value of x's dtype below lo, above hi, where rounding crossed them
        low = torch.where(low.double() > lo, torch.nextafter(low, -inf), low)
        high = torch.where(high.double() < hi, torch.nextafter(high, inf), high)
    else:  # the next value above lo, below hi
        low = torch.where(low.double() < lo, torch.nextafter(low, inf), low)
        high = torch.where(high.double() > hi, torch.nextafter(high, -inf), high)
    return low.to(x.device), high.to(x.device)


def clip(x: torch.Tensor, bounds: Bounds, outward: bool = False) -> torch.Tensor:
    """x clipped to checked ``bounds`` (two numbers, or one box per feature; per-feature
    bounds rounded to x's dtype as ``bounds_on`` does)."""
    return clamp_between(x, *bounds_on(bounds, x, outward))


def clamp_between(x: torch.Tensor, lo: BoundValue, hi: BoundValue) -> torch.Tensor:
    """``torch.clamp(x, lo, hi)`` for two numbers or two tensors (torch takes no mix)."""
    if isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor):
        return torch.clamp(x, torch.as_tensor(lo, dtype=x.dtype, device=x.device),
                           torch.as_tensor(hi, dtype=x.dtype, device=x.device))  # fmt: skip
    return torch.clamp(x, lo, hi)


def flat_bounds(
    bounds: Bounds, sample_shape: tuple[int, ...]
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Checked ``bounds`` for one flattened input of ``sample_shape``: floats as they are, or
    float64 arrays of prod(sample_shape) lower and upper bounds."""
    lo, hi = bounds
    if not isinstance(lo, torch.Tensor) or not isinstance(hi, torch.Tensor):
        return float(lo), float(hi)
    return (
        np.broadcast_to(lo.numpy(), sample_shape).reshape(-1).copy(),
        np.broadcast_to(hi.numpy(), sample_shape).reshape(-1).copy(),
    )


def same_bounds(first: Bounds, second: Bounds) -> bool:
    """Whether two checked boxes are the same box (a number equals per-feature bounds that
    hold it everywhere)."""
    try:
        pairs = [torch.broadcast_tensors(torch.as_tensor(a, dtype=torch.float64),
                                         torch.as_tensor(b, dtype=torch.float64))
                 for a, b in zip(first, second, strict=True)]  # fmt: skip
    except RuntimeError:
        return False
    return all(bool(torch.equal(a, b)) for a, b in pairs)


def check_images(
    x: torch.Tensor,
    name: str = "x",
    bounds: Bounds = (0.0, 1.0),
    dtype: torch.dtype = torch.float32,
    remedy: str = BOUNDS_REMEDY,
) -> torch.Tensor:
    """A floating-point batch (N, ...) of finite values inside ``bounds`` (two numbers, or
    per-feature bounds from ``check_bounds``, whose shape must broadcast to one input),
    returned in ``dtype``; ``remedy`` ends the out-of-bounds error (what the caller should
    change)."""
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor in {describe_bounds(bounds)}, got {type(x).__name__}"
                         f"{'' if not isinstance(x, torch.Tensor) else ' of dtype ' + str(x.dtype)}")  # fmt: skip
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (N, ...), got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    values = x.detach()  # (the checks only read x; what is returned keeps its graph)
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if per_feature(bounds):
        _check_inside(values, name, bounds, remedy)
        return x.to(dtype)
    lo, hi = bounds
    low, high = float(values.min()), float(values.max())
    if low < lo or high > hi:
        raise ValueError(
            f"{name} must lie in [{lo:g}, {hi:g}]; got range [{low:.3g}, {high:.3g}]; {remedy}"
        )
    return x.to(dtype)


def _check_inside(values: torch.Tensor, name: str, bounds: Bounds, remedy: str) -> None:
    """Refuse ``values`` (N, ...) with an entry outside its feature's bounds, naming it. The
    bounds are rounded outwards to the values' dtype: float32 data whose largest value rounds
    above a float64 maximum taken from the same data is inside."""
    sample_shape = tuple(values.shape[1:])
    check_bounds_shape(bounds, sample_shape)
    lo, hi = (torch.as_tensor(b).to(values.device) for b in bounds)
    low, high = bounds_on(bounds, values, outward=True)
    outside = torch.nonzero((values < low) | (values > high))
    if len(outside):
        at = tuple(int(i) for i in outside[0])
        feature = at[1:]
        lo_d, hi_d = (float(torch.broadcast_to(b, sample_shape)[feature]) for b in (lo, hi))
        raise ValueError(
            f"{name} must lie in its per-feature bounds; input {at[0]}, feature "
            f"{feature if len(feature) > 1 else feature[0]} is {float(values[at]):.6g}, outside "
            f"[{lo_d:g}, {hi_d:g}] ({len(outside)} entries outside); {remedy}"
        )


def check_number(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    integer: bool = False,
    allow_inf: bool = False,
) -> float:
    """``value`` as a number, refused with its parameter's name when it is not a real number
    (bool included), NaN, infinite (unless ``allow_inf``), not an integer when ``integer``,
    or outside [low, high] (``(low, high]`` with ``low_open``). A 0-d tensor or array is the
    number it holds."""
    kind = "an integer" if integer else "a number"
    held = value.item() if getattr(value, "ndim", None) == 0 and hasattr(value, "item") else value
    if isinstance(held, bool) or not isinstance(held, Real):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    v = float(held)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if integer and v != int(v):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high:g}, got {value!r}")
    return v


Budget = float | torch.Tensor  # one L-inf budget for every feature, or one per feature
BudgetLike = float | Sequence[float] | np.ndarray | torch.Tensor  # what check_budget takes
BoundsLike = tuple[BudgetLike, BudgetLike]  # what check_bounds takes: (lower, upper)


def check_budget(name: str, value: object) -> Budget:
    """An L-inf budget: one number (``check_number``: >= 0 and finite), returned as a float, or
    one per feature (a sequence, array or tensor of them, the shape of one input or
    broadcastable to it: (D,) for tabular rows, (C, 1, 1) per channel of an image, 0 where a
    feature must not move), returned as a float64 CPU tensor; ``ValueError`` naming the first
    problem. ``check_budget_shape`` checks the shape against the inputs."""
    if getattr(value, "ndim", None) == 0 or isinstance(value, Real):
        return check_number(name, value, 0.0)
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        raise ValueError(f"{name} must be a number or an array of them, got {value!r}")
    try:
        held = value.detach().cpu() if isinstance(value, torch.Tensor) else np.asarray(value)
        budget = torch.as_tensor(held, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from err
    if held.dtype in (torch.bool, np.bool_):
        raise ValueError(f"{name} must hold numbers, got booleans")
    if budget.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(budget.shape)})")
    if not bool(torch.isfinite(budget).all()):
        raise ValueError(f"{name} must be finite, got NaN or infinite entries")
    if bool((budget < 0).any()):
        raise ValueError(f"{name} must be >= 0, got {float(budget.min()):g} in one entry")
    return budget


def check_units(name: str, value: object) -> Budget:
    """Per-feature units, or a budget that must let something move: ``check_budget``, and not
    0 (one number) nor 0 for every feature (one per feature); ``ValueError`` otherwise."""
    units = check_budget(name, value)
    moves = units > 0 if isinstance(units, float) else bool((units > 0).any())
    if not moves:
        raise ValueError(f"{name} is 0 for every feature: no perturbation is possible")
    return units


def check_budget_shape(name: str, budget: Budget | None, sample_shape: tuple[int, ...]) -> None:
    """Refuse a per-feature ``budget`` (``check_budget``) that does not broadcast to one input
    of shape ``sample_shape`` without growing it."""
    if isinstance(budget, torch.Tensor) and not _broadcasts_to(tuple(budget.shape), sample_shape):
        raise ValueError(
            f"{name} has shape {tuple(budget.shape)}, which does not broadcast to one input of "
            f"shape {tuple(sample_shape)}: give one budget per feature in that shape (or a "
            "shape that broadcasts to it, such as (C, 1, 1) per channel)"
        )


def check_input_budget(name: str, value: object, x: torch.Tensor) -> Budget:
    """``check_budget`` and ``check_budget_shape`` against one input of the batch ``x``."""
    budget = check_budget(name, value)
    if getattr(x, "ndim", 0) >= 1:
        check_budget_shape(name, budget, tuple(x.shape[1:]))
    return budget


def budget_on(budget: Budget, x: torch.Tensor) -> Budget:
    """A checked budget to add to x: a float as it is, a tensor on x's device, in its dtype."""
    return budget.to(x.device, x.dtype) if isinstance(budget, torch.Tensor) else budget


def flat_budget(budget: Budget, sample_shape: tuple[int, ...]) -> float | np.ndarray:
    """A checked budget for one flattened input of ``sample_shape``: a float as it is, a
    per-feature tensor as a float64 array of its prod(sample_shape) half-widths."""
    if not isinstance(budget, torch.Tensor):
        return budget
    return np.broadcast_to(budget.numpy(), sample_shape).reshape(-1).copy()


def integral_labels(labels: np.ndarray) -> bool:
    """Whether ``labels`` hold integers: an integer or boolean dtype, or floats that are all
    whole numbers (NaN is not)."""
    return labels.dtype.kind in "iub" or (
        labels.dtype.kind == "f" and np.array_equal(labels, np.round(labels))
    )


def check_class_labels(
    y: object,
    n: int | None = None,
    name: str = "y",
    non_negative: bool = False,
    n_classes: int | None = None,
) -> np.ndarray:
    """Class labels as an int64 array of shape (n,): integer, boolean or integral float values.
    Strings, fractions and NaN get an error that points to scikit-learn's ``LabelEncoder``;
    ``non_negative`` also refuses labels below 0 (-1 marks "no label" where it is allowed), and
    ``n_classes`` labels at or above it (a model's output count)."""
    labels = np.asarray(y)
    if labels.ndim != 1 or (n is not None and len(labels) != n):
        expected = f"({n},)" if n is not None else "(n_samples,)"
        raise ValueError(f"{name} must have shape {expected}, got {labels.shape}")
    if not integral_labels(labels):
        raise ValueError(
            f"{name} must hold integer class labels, got dtype {labels.dtype}; encode others "
            "with sklearn.preprocessing.LabelEncoder"
        )
    labels = labels.astype(np.int64)
    if non_negative and labels.size and labels.min() < 0:
        raise ValueError(f"{name} must hold non-negative class labels, got {labels.min()}")
    if n_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{name} must lie in [0, {n_classes}), got [{labels.min()}, {labels.max()}]"
        )
    return labels


def check_label_tensor(
    y: object, n: int, name: str = "y", n_classes: int | None = None
) -> torch.Tensor:
    """``check_class_labels`` (non-negative) for labels given as a tensor on any device, an
    array or a list: an int64 CPU tensor of shape (n,), below ``n_classes`` when given. A
    floating-point or boolean tensor is refused (torch takes class labels as integers; such a
    tensor is a mistake even when its values are whole)."""
    if isinstance(y, torch.Tensor) and (torch.is_floating_point(y) or y.dtype == torch.bool):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    values = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y
    labels = check_class_labels(values, n, name, non_negative=True, n_classes=n_classes)
    return torch.from_numpy(labels)
