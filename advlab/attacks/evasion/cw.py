"""Carlini & Wagner L2 (IEEE S&P 2017), batched, with a binary search over the constant c.

Change of variables x' = lo + (tanh(w) + 1) / 2 (hi - lo) keeps x' in the model's bounds
[lo, hi]. For each c, Adam minimises

    ||x' - x||_2^2 / (hi - lo)^2 + c * max(Z_y(x') - max_{j != y} Z_j(x'), -kappa)   (untargeted)
    ||x' - x||_2^2 / (hi - lo)^2 + c * max(max_{j != t} Z_j(x') - Z_t(x'), -kappa)   (targeted)

and the smallest successful x' is kept; c is bisected per sample (multiplied by 10 until the
first success). The distance is measured in units of the input range, as in Carlini & Wagner's
code, whose images span a range of 1: c then means the same for a model on [0, 255] as on
[0, 1] (in raw units it would have to be 255^2 times larger there, beyond the default search's
reach); on [0, 1] nothing changes. With per-feature bounds (``Model(net, bounds=(lo, hi))``
with arrays) each feature is measured in units of its own range, sum_d ((x'_d - x_d) /
(hi_d - lo_d))^2, the unit box of L-BFGS. A feature with an open side (unbounded tabular
features, or a non-negative one, [0, inf)) has no range to map tanh onto: it is optimised
in its own units, x'_d = clip(w_d, lo_d, hi_d) from w_d = x_d (the clipped gradient descent
of Carlini & Wagner's section V), and measured in its own units, as L-BFGS leaves unbounded
features. Defaults as Foolbox 3: 9 binary-search steps, initial
c = 1e-3, lr 1e-2, kappa = 0, 10,000 Adam steps per c (``steps``; fewer for quick runs), and
early abort: every steps / 10 steps the optimisation for the current c stops when the total
loss has not fallen below 0.9999 times its value at the previous check.

Example::

    result = CarliniWagnerL2(model, steps=200)(images, labels)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from advlab.attacks.evasion.base import MinimizationAttack, margin
from advlab.attacks.evasion.criteria import Criterion
from advlab.utils.validation import BoundValue, bounds_on, check_number, clamp_between


def _squared_distance(delta: torch.Tensor, span: float | torch.Tensor) -> torch.Tensor:
    """||delta / span||_2^2 per sample: span one number (the range) or one per feature."""
    if isinstance(span, torch.Tensor):
        return (delta / span).flatten(1).pow(2).sum(1)
    return delta.flatten(1).pow(2).sum(1) / span**2


def _open_features(lo: BoundValue, hi: BoundValue) -> torch.Tensor | None:
    """Where a side of the bounds is open (a bool tensor), or None when every feature has a
    finite range for the tanh map."""
    open_side = ~(torch.isfinite(torch.as_tensor(lo)) & torch.isfinite(torch.as_tensor(hi)))
    return open_side if bool(open_side.any()) else None


class CarliniWagnerL2(MinimizationAttack):
    """Carlini & Wagner's L2 attack (2017): the tanh change of variables maps onto the
    model's bounds; a feature with an open side is clipped instead (module docstring).

    Parameters
    ----------
    model : Model or torch.nn.Module
        The classifier: an ``Model`` (module, input bounds,
        preprocessing) or a bare module, read as bounds (0, 1) and no preprocessing.
    binary_search_steps : int, default=9
        Steps of the binary search over the constant c, >= 1.
    steps : int, default=10000
        Adam steps per value of c, >= 1.
    lr : float, default=1e-2
        Adam's learning rate, in the tanh space. Carlini's 1e-2 is made for thousands of
        steps: with ``steps`` in the hundreds raise it (on small_cnn and 100 MNIST test images,
        100 steps x 5 values of c succeeded on 36 images at 1e-2 and on all 100 at 5e-2;
        one-off measurement, ``configs/evaluate-mnist-small_cnn.yaml``).
    initial_const : float, default=1e-3
        First c, finite and > 0.
    confidence : float, default=0.0
        The margin kappa of the logit loss, finite and >= 0 (in logits).
    abort_early : bool, default=True
        Stop a value of c when the loss has not improved for steps / 10 steps.
    criterion : Criterion or None, default=None
        Misclassification (None) or ``TargetedMisclassification``.
    batch_size : int, default=256
        Samples per batch. With ``abort_early`` a batch stops as one when its total loss
        stalls (as in Carlini's and Foolbox's code), so the examples depend on it a little;
        without, only memory does.
    """

    def __init__(
        self,
        model: nn.Module,
        binary_search_steps: int = 9,
        steps: int = 10000,
        lr: float = 1e-2,
        initial_const: float = 1e-3,
        confidence: float = 0.0,
        abort_early: bool = True,
        criterion: Criterion | None = None,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model, criterion, batch_size)
        self.search = int(check_number("binary_search_steps", binary_search_steps, 1, integer=True))
        self.steps = int(check_number("steps", steps, 1, integer=True))
        self.lr = check_number("lr", lr, 0.0, low_open=True)
        self.c0 = check_number("initial_const", initial_const, 0.0, low_open=True)
        self.kappa = check_number("confidence", confidence, 0.0)
        self.abort_early = abort_early

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        label = target if target is not None else y
        targeted = target is not None
        to_input, w0, span = self._change_of_variables(x)
        c = torch.full((len(x),), self.c0, device=x.device, dtype=x.dtype)
        lower, upper = torch.zeros_like(c), torch.full_like(c, float("inf"))
        best, best_l2 = x.clone(), torch.full_like(c, float("inf"))
        for _ in range(self.search):
            w = w0.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros_like(c, dtype=torch.bool)
            check_every, previous = max(1, -(-self.steps // 10)), float("inf")
            for step in range(self.steps):
                x_adv = to_input(w)
                l2 = _squared_distance(x_adv - x, span)  # in units of the range
                m = margin(self.model(x_adv), label, targeted)  # > 0 once the attack succeeds
                loss = (l2 + c * torch.clamp(self.kappa - m, min=0)).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    ok = m > self.kappa - 1e-12 if self.kappa > 0 else m > 0
                    better = ok & (l2 < best_l2)
                    best[better], best_l2[better] = x_adv[better].detach(), l2[better].detach()
                    succeeded |= ok
                if self.abort_early and step % check_every == 0:
                    value = float(loss.detach())
                    if not value <= 0.9999 * previous:
                        break
                    previous = value
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(torch.isinf(upper), c * 10, (lower + upper) / 2)
        return best

    def _change_of_variables(
        self, x: torch.Tensor
    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, BoundValue]:
        """(w -> x', w at x, the units of the distance): x' = lo + (tanh(w) + 1) / 2 (hi - lo)
        in units of the range (hi - lo; 0 for a fixed feature, which stays at lo), and where a
        side is open x' = clip(w, lo, hi) in the feature's own units."""
        lo, hi = bounds_on(self.bounds, x)
        open_side = _open_features(lo, hi)
        if open_side is None:
            width = hi - lo  # 0 for a fixed feature: x' = lo whatever w
            span = torch.where(width > 0, width, 1.0) if isinstance(width, torch.Tensor) else width
            w0 = torch.atanh((2 * (x - lo) / span - 1).clamp(-1 + 1e-6, 1 - 1e-6))
            return (lambda w: lo + (torch.tanh(w) + 1) / 2 * width), w0, span
        opened = open_side.to(x.device)
        low, high = (torch.as_tensor(b, dtype=x.dtype, device=x.device) for b in (lo, hi))
        base = torch.where(opened, 0.0, low)  # (finite everywhere: no inf in either branch)
        width = torch.where(opened, 0.0, high - low)
        span = torch.where(opened | (width <= 0), 1.0, width)
        w0 = torch.where(
            opened, x, torch.atanh((2 * (x - base) / span - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        )

        def to_input(w: torch.Tensor) -> torch.Tensor:
            return torch.where(
                opened, clamp_between(w, low, high), base + (torch.tanh(w) + 1) / 2 * width
            )

        return to_input, w0, span
