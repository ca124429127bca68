"""FGSM (Goodfellow et al., ICLR 2015), L-inf.

    x' = clip_bounds( x + eps * sign(grad_x L(f(x), y)) )

(targeted: x - eps * sign(grad_x L(f(x), t))).

Example::

    atk = FGSM(model, eps=0.1)
    result = atk(images, labels)      # images (N, C, H, W) in [0, 1]
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.evasion.base import Attack, box_units, eps_to_pixels, input_gradient
from advlab.attacks.evasion.criteria import Criterion
from advlab.utils.validation import BudgetLike, budget_on, clip


class FGSM(Attack):
    """One signed-gradient step of size eps (L-inf), clipped to the model's bounds.

    Parameters
    ----------
    model : Model or torch.nn.Module
        The classifier: an ``Model`` (module, input bounds,
        preprocessing) or a bare module, read as bounds (0, 1) and no preprocessing.
    eps : float or array-like
        L-inf budget, >= 0 and finite, in ``eps_units``; or one per feature (an array of the
        shape of one input, or broadcastable to it; 0 where a feature must not move).
    eps_units : {"pixel", "standardized"}, default="pixel"
        Unit of ``eps`` and ``eps_step``: input units, or multiples of the model's per-channel
        input std (``Model.input_std``).
    criterion : Criterion or None, default=None
        When a sample counts as adversarial; None means
        ``Misclassification``.
    batch_size : int, default=256
        Samples per batch (memory, not results).
    units : array-like or None, default=None
        Per-feature units s_d >= 0 (the shape of one input, or broadcastable to it; 0 freezes a
        feature), with eps one number in multiples of them: the box eps * s_d, and
        ``AttackResult.distances`` in the weighted norm max_d |delta_d| / s_d. ``eps_units``
        must be 'pixel'.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: BudgetLike,
        eps_units: str = "pixel",
        criterion: Criterion | None = None,
        batch_size: int = 256,
        units: BudgetLike | None = None,
    ) -> None:
        super().__init__(model, criterion, batch_size)
        self.units = box_units(units, eps, eps_units)
        self.eps = eps_to_pixels(eps, eps_units, self.model.input_std, self.model.axis)
        if self.units is not None:  # the box eps * s_d; distances in the weighted norm
            self.eps, self.scale = self.eps * self.units, self.units

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        grad = input_gradient(self.model, x, y, target)
        return clip(x + budget_on(self.eps, x) * grad.sign(), self.bounds)
