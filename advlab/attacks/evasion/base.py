"""Shared machinery of the evasion attacks.

Following Foolbox 3, three things are kept apart:

- the **model**: any ``nn.Module`` mapping images in [0, 1] to logits (normalisation inside);
- the **criterion**: what counts as success, :class:`Misclassification` (untargeted,
  ``argmax f(x') != y``) or :class:`TargetedMisclassification` (``argmax f(x') == t``);
- the **attack**: how to search. Subclasses implement :meth:`Attack._perturb` on one batch;
  the base class validates inputs, batches, puts the model in eval mode (restored after),
  keeps gradients off the model's parameters, and evaluates the criterion.

Every attack returns an :class:`AttackResult` whose ``x_adv`` lies in [0, 1] (and, for
norm-bounded attacks, in the eps-ball around ``x``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from advlab.utils.progress import progress
from advlab.utils.validation import check_images

EPS_UNITS = ("pixel", "standardized")
MNIST_PIXEL_STD = 0.3081


@dataclass
class AttackResult:
    """``x_adv`` (same shape as x), per-sample ``success`` (bool) and ``pred`` (model's label)."""

    x_adv: torch.Tensor
    success: torch.Tensor
    pred: torch.Tensor

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self.success) else 0.0


class Misclassification:
    """Untargeted success: the predicted label differs from the true label."""

    targeted = False

    def __call__(
        self, pred: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        return pred != y


class TargetedMisclassification:
    """Targeted success: the predicted label equals the target label."""

    targeted = True

    def __call__(
        self, pred: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        assert target is not None
        return pred == target


def eps_to_pixels(eps: float, eps_units: str, pixel_std: float = MNIST_PIXEL_STD) -> float:
    """Convert a budget to pixel units ([0, 1] images).

    ``"pixel"``: eps as is. ``"standardized"``: eps is in units of the dataset's pixel standard
    deviation, as if the surrogate ran on mean/std-normalised inputs (the reading under which
    Omari et al.'s "epsilon = 1" on "0 to 255 normalised" images is not destructive):
    eps_pixel = eps * std (MNIST: 0.3081).
    """
    if eps_units not in EPS_UNITS:
        raise ValueError(f"eps_units={eps_units!r}: use one of {EPS_UNITS}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return float(eps) * (pixel_std if eps_units == "standardized" else 1.0)


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` on every parameter; both restored on exit."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


class Attack:
    """Base class: validation, batching, device, eval mode, criterion.

    Args:
        model: maps images in [0, 1] to logits.
        targeted: use :class:`TargetedMisclassification` (targets passed to ``__call__``).
        batch_size: samples per forward/backward pass.
    """

    def __init__(self, model: nn.Module, targeted: bool = False, batch_size: int = 256) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.criterion = TargetedMisclassification() if targeted else Misclassification()
        self.batch_size = batch_size

    @property
    def targeted(self) -> bool:
        return self.criterion.targeted

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> AttackResult:
        x_adv, pred, y, target = self._run(x, y, target, predict=True)
        assert pred is not None
        success = self.criterion(
            pred, y.to(pred.device), None if target is None else target.to(pred.device)
        )
        return AttackResult(x_adv, success, pred)

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
        with frozen_eval(self.model):
            n_classes = self._n_classes(x, device)
            x, y, target = self._validate(x, y, target, n_classes)
            adv, preds = [], []
            batches = range(0, len(x), self.batch_size)
            for start in progress(batches, desc=type(self).__name__):
                sl = slice(start, start + self.batch_size)
                xb, yb = x[sl].to(device), y[sl].to(device)
                tb = None if target is None else target[sl].to(device)
                xa = self._perturb(xb, yb, tb).detach()
                if predict:
                    with torch.no_grad():
                        preds.append(self.model(xa).argmax(1))
                adv.append(xa)
        return torch.cat(adv), torch.cat(preds) if predict else None, y, target

    def _n_classes(self, x: torch.Tensor, device: torch.device) -> int:
        if not isinstance(x, torch.Tensor) or len(x) == 0:
            raise ValueError("x must be a non-empty torch tensor of images")
        with torch.no_grad():
            return int(self.model(x[:1].to(device, torch.float32)).shape[1])

    def _validate(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, n_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x = check_images(x)
        y = _check_labels(y, len(x), n_classes, "y")
        if self.targeted:
            if target is None:
                raise ValueError("a targeted attack needs target labels")
            target = _check_labels(target, len(x), n_classes, "target")
        return x, y, target


def _check_labels(y: torch.Tensor, n: int, n_classes: int, name: str) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(y.shape)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(
            f"{name} must lie in [0, {n_classes}), got [{int(y.min())}, {int(y.max())}]"
        )
    return y.long()


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
