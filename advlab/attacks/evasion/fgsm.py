"""FGSM (Goodfellow et al., ICLR 2015), L-inf.

    x' = clip_[0,1]( x + eps * sign(grad_x L(f(x), y)) )

(targeted: x - eps * sign(grad_x L(f(x), t))).

Example::

    atk = FGSM(model, eps=0.1)
    result = atk(images, labels)      # images (N, C, H, W) in [0, 1]
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.evasion.base import MNIST_PIXEL_STD, Attack, eps_to_pixels, input_gradient


class FGSM(Attack):
    """Args: model; eps (>= 0, in ``eps_units``); eps_units ``"pixel"`` or ``"standardized"``;
    targeted; batch_size."""

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        eps_units: str = "pixel",
        pixel_std: float = MNIST_PIXEL_STD,
        targeted: bool = False,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model, targeted, batch_size)
        self.eps = eps_to_pixels(eps, eps_units, pixel_std)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        grad = input_gradient(self.model, x, y, target)
        return torch.clamp(x + self.eps * grad.sign(), 0.0, 1.0)
