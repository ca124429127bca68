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

from advlab.attacks.evasion.base import Attack, eps_to_pixels, input_gradient
from advlab.attacks.evasion.criteria import Criterion


class FGSM(Attack):
    """Args: model (:class:`~advlab.models.Model` or ``nn.Module``); eps (>= 0, in
    ``eps_units``); eps_units ``"pixel"`` or ``"standardized"`` (times the model's per-channel
    std); criterion (default misclassification); batch_size."""

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        eps_units: str = "pixel",
        criterion: Criterion | None = None,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model, criterion, batch_size)
        self.eps = eps_to_pixels(eps, eps_units, self.model.input_std)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        grad = input_gradient(self.model, x, y, target)
        eps = self.eps.to(x.device) if isinstance(self.eps, torch.Tensor) else self.eps
        return torch.clamp(x + eps * grad.sign(), *self.bounds)
