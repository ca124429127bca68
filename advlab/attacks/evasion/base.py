"""Shared machinery of the evasion attacks.

Following Foolbox 3, three things are kept apart:

- the **model**: an ``advlab.models.Model`` (the user's module with its input bounds and
  preprocessing) or a bare ``nn.Module``, read as ``Model(module)``: inputs in [0, 1], no
  preprocessing;
- the **criterion**: what counts as success (``advlab.attacks.evasion.criteria``):
  ``Misclassification`` by default, ``TargetedMisclassification``,
  ``TrueLabelRank``;
- the **attack**: how to search. Subclasses implement ``Attack._perturb`` on one batch;
  the base class validates inputs before any work, batches, puts the model in eval mode
  (restored after), keeps gradients off the model's parameters, evaluates the criterion and
  refuses results that hold NaN.

Every attack returns an ``AttackResult`` on the input's device whose ``x_adv`` lies in the
model's bounds (and, for norm-bounded attacks, in the eps-ball around ``x``).
``MinimizationAttack`` is the base of the attacks that look for the smallest
perturbation (DeepFool, C&W, L-BFGS, K-A3, the k-means minimal attack).
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from advlab.attacks.evasion.criteria import (
    Criterion,
    Misclassification,
    TargetedMisclassification,
    TrueLabelRank,
)
from advlab.models.wrapper import Model, as_model, autograd_enabled, eval_mode, model_dtype
from advlab.utils.progress import progress
from advlab.utils.validation import (
    Bounds,
    BudgetLike,
    caller_stacklevel,
    check_budget,
    check_budget_shape,
    check_images,
    check_label_tensor,
    check_number,
    check_units,
)

__all__ = [
    "Attack",
    "AttackResult",
    "Criterion",
    "MinimizationAttack",
    "Misclassification",
    "TargetedMisclassification",
    "TrueLabelRank",
    "eps_to_pixels",
]

EPS_UNITS = ("pixel", "standardized")
NORMS = ("linf", "l2")


@dataclass
class AttackResult:
    """What an attack returns, on the input's device.

    Attributes
    ----------
    x_adv : torch.Tensor
        Adversarial inputs, same shape as x.
    success : torch.Tensor of bool, shape (N,)
        Whether the criterion holds on each x_adv.
    pred : torch.Tensor of shape (N,)
        The model's label on x_adv.
    distances : torch.Tensor of shape (N,) or None
        Size of x_adv - x in the attack's norm; for minimisation attacks inf where the attack
        failed.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    pred: torch.Tensor
    distances: torch.Tensor | None = None

    @property
    def success_rate(self) -> float:
        """Fraction in [0, 1] of successful samples."""
        return float(self.success.float().mean()) if len(self.success) else 0.0


def eps_to_pixels(
    eps: BudgetLike,
    eps_units: str,
    std: float | torch.Tensor | list[float] | None = None,
    axis: int = -3,
) -> float | torch.Tensor:
    """A budget in input units.

    ``"pixel"``: eps as is. ``"standardized"``: eps in units of the model's input standard
    deviation (as if the model ran on mean/std-normalised inputs): eps_c = eps * std_c per
    channel, a tensor shaped to broadcast along the channel ``axis`` (C, 1, 1) for NCHW, (C,)
    for channels last) when std has one value per channel. A per-feature budget (an array of
    the shape of one input, or broadcastable to it; ``check_budget``) is a box of half-widths
    eps_d instead of a cube, kept as a float64 tensor (times std in 'standardized' units).

    Parameters
    ----------
    eps : float or array-like
        The budget, >= 0 and finite; an array: one L-inf budget per feature.
    eps_units : {'pixel', 'standardized'}
        Unit of eps.
    std : float, sequence of float, torch.Tensor or None, default=None
        The model's input std (one value or one per channel); needed for 'standardized'.
    axis : int, default=-3
        The channel axis of the inputs, negative (``Model.axis``: -3 for NCHW, -1 for NHWC).

    Returns
    -------
    float or torch.Tensor
        eps in input units; a (C, 1, 1) tensor for a per-channel std, a tensor for a
        per-feature budget.
    """
    if eps_units not in EPS_UNITS:
        raise ValueError(f"eps_units={eps_units!r}: use one of {EPS_UNITS}")
    eps = check_budget("eps", eps)
    if eps_units == "pixel":
        return eps
    if std is None:
        raise ValueError(
            "eps_units='standardized' needs the input's std: pass "
            "Model(module, preprocessing=dict(mean=..., std=...)) or a module with `input_std`"
        )
    if isinstance(eps, torch.Tensor):  # per feature: eps_d * std (of d's channel), float64
        std_f = torch.as_tensor(std, dtype=torch.float64)
        return eps * (std_f if std_f.ndim == 0 else std_f.reshape(-1, *([1] * (-axis - 1))))
    if isinstance(std, int | float):
        return float(eps) * float(std)
    std_t = torch.as_tensor(std, dtype=torch.float32)
    if std_t.ndim == 0:
        return float(eps) * std_t
    return float(eps) * std_t.reshape(-1, *([1] * (-axis - 1)))


def check_norm(norm: object) -> str:
    """``norm`` if it is one of ``NORMS`` ("linf", "l2"); ``ValueError`` naming it otherwise."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: use 'linf' or 'l2'")
    return str(norm)


def box_units(units: BudgetLike | None, eps: BudgetLike, eps_units: str) -> torch.Tensor | None:
    """A budgeted attack's per-feature units s_d (``check_units``: >= 0, finite, not all 0) as
    a float64 tensor, None for None; eps then counts multiples of them, so it must be one
    number in 'pixel' units (the units carry the per-feature part, eps * s_d)."""
    if units is None:
        return None
    if eps_units != "pixel":
        raise ValueError(f"units scale eps per feature: use eps_units='pixel' with them, not "
                         f"{eps_units!r}")  # fmt: skip
    if isinstance(check_budget("eps", eps), torch.Tensor):
        raise ValueError("eps is one number when units are given: the units carry the "
                         "per-feature part of the budget (eps * units_d)")  # fmt: skip
    return torch.as_tensor(check_units("units", units), dtype=torch.float64)


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (``advlab.models.eval_mode``: each module's own mode restored on exit) and
    ``requires_grad=False`` on every parameter, restored on exit."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with eval_mode(model):
            yield model
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def perturbation_size(
    delta: torch.Tensor, norm: str, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """||delta_i|| per sample in ``norm`` ("linf" or "l2"); with per-feature units ``scale``
    (flattened, one per feature, or broadcastable to one sample's shape, such as (C, 1, 1))
    the weighted norm ||delta_i / scale|| (``weighted_norm``)."""
    if scale is not None and scale.numel() != delta[0].numel():
        scale = torch.broadcast_to(scale, delta.shape[1:])
    return weighted_norm(delta.flatten(1), norm, None if scale is None else scale.reshape(-1))


def weighted_norm(delta: torch.Tensor, norm: str, scale: torch.Tensor | None) -> torch.Tensor:
    """||delta / s|| in ``norm`` ("linf" or "l2") over the last axis; a frozen feature (s_d = 0,
    which no attack moves: delta_d = 0) adds nothing; the plain norm for ``scale`` None.

    Parameters
    ----------
    delta : torch.Tensor of shape (..., D)
        Perturbations.
    norm : {"linf", "l2"}
        The norm.
    scale : torch.Tensor of shape (D,) or None
        Per-feature units s_d >= 0.

    Returns
    -------
    torch.Tensor of shape (...)
        The sizes.
    """
    if scale is not None:
        scale = scale.to(delta.device, delta.dtype)
        delta = delta / torch.where(scale > 0, scale, 1.0)
    return delta.abs().amax(-1) if norm == "linf" else delta.norm(dim=-1)


class Attack:
    """Base class: validation, batching, device, eval mode, criterion.

    Subclasses implement ``_perturb(x, y, target)``; ``attack(x, y, target=None)`` returns an
    ``AttackResult`` and ``attack.generate(x, y)`` the adversarial inputs alone.

    Parameters
    ----------
    model : Model or torch.nn.Module
        A ``Model`` or a bare module (then bounds (0, 1), no preprocessing).
    criterion : Criterion or None, default=None
        When a sample counts as adversarial; None means ``Misclassification``.
    batch_size : int, default=256
        Samples per forward/backward pass.

    Attributes
    ----------
    norm : str
        The norm in which ``AttackResult.distances`` is measured (class attribute).
    input_dtype : torch.dtype or None
        The dtype inputs are computed in (class attribute); None: the model's own
        floating-point dtype (``model_dtype``) where it is float32 or float64, float32 for a
        half or bfloat16 model and for a model without parameters.
    scale : torch.Tensor or None
        Per-feature units of ``AttackResult.distances`` (flattened, one per feature, or
        broadcastable to one input's shape: the weighted norm ||delta / scale||); None (the
        class default): the plain norm.
    """

    norm = "linf"
    _init_args: dict[str, Any]
    input_dtype: torch.dtype | None = None  # inputs are cast to this dtype after the checks
    scale: torch.Tensor | None = None  # the units distances are measured in

    def __new__(cls, *args: Any, **kwargs: Any) -> Attack:
        self = super().__new__(cls)
        try:  # the constructor's arguments, for __repr__ (scikit-learn style)
            bound = inspect.signature(cls.__init__).bind(self, *args, **kwargs)
            self._init_args = {k: v for k, v in bound.arguments.items() if k != "self"}
        except TypeError:
            self._init_args = {}
        return self

    min_classes = 2  # a model with one output cannot be pushed to another class

    def __init__(
        self, model: nn.Module, criterion: Criterion | None = None, batch_size: int = 256
    ) -> None:
        check_number("batch_size", batch_size, 1, integer=True)
        if criterion is not None and not isinstance(criterion, Criterion):
            raise TypeError(f"criterion must be a Criterion, got {type(criterion).__name__}")
        self.model: Model = as_model(model)
        self.criterion = criterion if criterion is not None else Misclassification()
        self.batch_size = int(batch_size)

    def __repr__(self) -> str:
        parts = []
        for name, value in self._init_args.items():
            if isinstance(value, nn.Module):
                value = type(value).__name__
            elif hasattr(value, "shape") and hasattr(value, "dtype"):  # arrays: their shape only
                parts.append(f"{name}=<array of shape {tuple(value.shape)}>")
                continue
            elif isinstance(value, dict):
                parts += [f"{k}={v!r}" for k, v in value.items()]
                continue
            parts.append(f"{name}={value if name == 'model' else repr(value)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    @property
    def targeted(self) -> bool:
        return self.criterion.needs_target

    @property
    def bounds(self) -> Bounds:
        return self.model.bounds

    @property
    def dtype(self) -> torch.dtype:
        """The dtype inputs are computed in: ``input_dtype``, else the model's, at least
        float32. A half or bfloat16 network is attacked in float32 (its forward casts): in
        its own dtype, rounding ``x + delta`` would break the budget (bfloat16 keeps 8
        significant bits) and the steps of the iterative attacks would be rounded away."""
        return self.input_dtype or torch.promote_types(model_dtype(self.model), torch.float32)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> AttackResult:
        x_adv, logits, y, target = self._run(x, y, target, predict=True)
        assert logits is not None
        dev = logits.device
        success = self.criterion(logits, y.to(dev), None if target is None else target.to(dev))
        delta = x_adv - x.detach().to(x_adv.device, x_adv.dtype)
        distances = perturbation_size(delta, self.norm, self.scale)
        return AttackResult(x_adv, success.to(x.device), logits.argmax(1).to(x.device), distances)

    def generate(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The adversarial images only (ART's ``generate``): same inputs, checks and result as
        ``__call__(x, y, target).x_adv``, without the final forward pass that records each
        sample's prediction and success. Attacks that override ``__call__`` (to derive their
        targets) go through it."""
        if type(self).__call__ is not Attack.__call__:
            return self(x, y, target).x_adv
        return self._run(x, y, target, predict=False)[0]

    def _run(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, predict: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        device = model_device(self.model)
        with autograd_enabled(), frozen_eval(self.model):  # (the caller may be under no_grad)
            x = check_images(x, "x", self.bounds, self.dtype).detach()  # (x may need grad)
            for budget in ("eps", "eps_step", "units"):  # per-feature budgets fit one input
                check_budget_shape(budget, getattr(self, budget, None), tuple(x.shape[1:]))
            if x.is_inference():  # made under torch.inference_mode: autograd refuses it
                x = x.clone()
            _check_batch_axis(x, y)
            n_classes = self._n_classes(x, device)
            y, target = self._validate(x, y, target, n_classes)
            adv, logits = [], []
            batches = range(0, len(x), self.batch_size)
            for start in progress(batches, desc=type(self).__name__):
                sl = slice(start, start + self.batch_size)
                xb, yb = x[sl].to(device), y[sl].to(device)
                tb = None if target is None else target[sl].to(device)
                xa = self._perturb(xb, yb, tb).detach()
                if not bool(torch.isfinite(xa).all()):
                    raise FloatingPointError(
                        f"{type(self).__name__} produced NaN or infinite values; check its "
                        f"parameters ({self!r})"
                    )
                if predict:
                    with torch.no_grad():
                        logits.append(self.model(xa))
                adv.append(xa)
        x_adv = torch.cat(adv).to(x.device)
        return x_adv, torch.cat(logits) if predict else None, y, target

    def _n_classes(self, x: torch.Tensor, device: torch.device) -> int:
        """Run the model on one sample, explaining a shape mismatch before any real work."""
        try:
            with torch.no_grad():
                out = self.model(x[:1].to(device, self.dtype))
        except (RuntimeError, ValueError) as err:
            raise ValueError(
                f"the model cannot take inputs of shape {tuple(x.shape[1:])} (per sample): {err}. "
                "Check the channel count and image size the model expects."
            ) from err
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise ValueError(
                f"the model must return logits of shape (N, n_classes), got "
                f"{getattr(out, 'shape', type(out).__name__)}"
            )
        if out.shape[1] < self.min_classes:
            raise ValueError(
                f"the model returns {out.shape[1]} logit per sample; attacks need one logit per "
                "class (>= 2). Wrap a binary model with one logit z to return (0, z)."
            )
        _warn_if_probabilities(out)
        return int(out.shape[1])

    def _validate(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, n_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = check_label_tensor(y, len(x), "y", n_classes)
        if self.criterion.needs_target:
            if target is None:
                raise ValueError(f"{self.criterion!r} needs target labels")
            if torch.as_tensor(target).ndim == 1:
                target = check_label_tensor(target, len(x), "target", n_classes)
        return y, None if target is None else torch.as_tensor(target).long()


def _warn_if_probabilities(out: torch.Tensor) -> None:
    """Warn when the model's outputs are non-negative and sum to 1: a final softmax, whose
    saturated outputs give the cross-entropy and C&W's margin vanishing gradients (log-
    probabilities are fine: log-softmax leaves them as they are)."""
    out = out.detach().double()
    if bool((out >= 0).all()) and bool(((out.sum(1) - 1).abs() < 1e-4).all()):
        warnings.warn(
            "the model's outputs look like probabilities (non-negative, summing to 1); attacks "
            "expect logits: drop the final softmax, or return its log (torch.log_softmax)",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )


def _check_batch_axis(x: torch.Tensor, y: Any) -> None:
    """Before the model's first forward: a single image without its batch axis (one label, x
    read as a batch of its channels) is named, where the model would fail on its shape. Other
    label counts are ``check_label_tensor``'s to refuse."""
    if getattr(y, "ndim", 1) == 1 and hasattr(y, "__len__") and len(y) == 1 != len(x):
        raise ValueError(
            f"x holds {len(x)} samples along its first axis and y 1 label: a single image needs "
            f"a batch axis, x[None] of shape {(1, *x.shape)}"
        )


class MinimizationAttack(Attack):
    """An attack that searches for the smallest successful perturbation (in ``norm``, L2 by
    default); ``AttackResult.distances`` holds its size, inf where the attack failed."""

    norm = "l2"

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> AttackResult:
        result = Attack.__call__(self, x, y, target)
        assert result.distances is not None
        result.distances = torch.where(
            result.success, result.distances, torch.full_like(result.distances, float("inf"))
        )
        return result


def input_gradient(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    loss: str = "ce",
) -> torch.Tensor:
    """Gradient of the attack objective w.r.t. the input: ascend CE(f(x), y) when untargeted,
    descend CE(f(x), t) when targeted (``loss="ce"``); ``loss="margin"`` uses the CW margin
    max_{j != y} z_j - z_y (untargeted) or z_t - max_{j != t} z_j (targeted)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    if loss == "ce":
        value = (
            -nn.functional.cross_entropy(logits, target)
            if target is not None
            else nn.functional.cross_entropy(logits, y)
        )
    elif loss == "margin":
        value = margin(logits, y if target is None else target, targeted=target is not None).sum()
    else:
        raise ValueError(f"unknown loss {loss!r}: use 'ce' or 'margin'")
    (grad,) = torch.autograd.grad(value, x)
    return grad


def margin(logits: torch.Tensor, label: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Carlini-Wagner margin, positive when the attack has succeeded."""
    own = logits.gather(1, label[:, None])[:, 0]
    others = logits.clone()
    others.scatter_(1, label[:, None], float("-inf"))
    best_other = others.max(1).values
    return own - best_other if targeted else best_other - own
