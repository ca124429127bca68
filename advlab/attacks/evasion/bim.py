"""I-FGSM / BIM (Kurakin et al., 2017), L-inf, as used by Omari et al. (via ART).

    x_0 = x,   x_{t+1} = clip_[0,1]( Proj_{||x' - x||_inf <= eps}( x_t + a * sign(grad L(f(x_t), y)) ) )

for ``max_iter`` steps of size ``a = eps_step`` (default eps / 4, the paper's setting; ART's
default ``max_iter`` is 100). No random start, so the attack is deterministic. With
``early_stop=True`` a sample stops moving once the criterion holds (off by default, as in ART
and torchattacks).

Example::

    atk = IFGSM(model, eps=0.3, max_iter=10)
    result = atk(images, labels)
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.evasion.base import MNIST_PIXEL_STD, Attack, eps_to_pixels, input_gradient


class IFGSM(Attack):
    """Args: model; eps (>= 0, in ``eps_units``); max_iter (number of steps, required);
    eps_step (step size in the same units; default eps / 4); eps_units ``"pixel"`` or
    ``"standardized"``; early_stop; targeted; batch_size."""

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        max_iter: int,
        eps_step: float | None = None,
        eps_units: str = "pixel",
        pixel_std: float = MNIST_PIXEL_STD,
        early_stop: bool = False,
        targeted: bool = False,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model, targeted, batch_size)
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.eps = eps_to_pixels(eps, eps_units, pixel_std)
        self.eps_step = (
            self.eps / 4 if eps_step is None else eps_to_pixels(eps_step, eps_units, pixel_std)
        )
        self.max_iter = max_iter
        self.early_stop = early_stop

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        x_adv = x.clone()
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.max_iter):
            grad = input_gradient(self.model, x_adv, y, target)
            step = self.eps_step * grad.sign()
            if self.early_stop:
                step = step * active.view(-1, *([1] * (x.ndim - 1)))
            x_adv = torch.clamp(torch.clamp(x_adv + step, x - self.eps, x + self.eps), 0.0, 1.0)
            if self.early_stop:
                with torch.no_grad():
                    pred = self.model(x_adv).argmax(1)
                active = ~self.criterion(pred, y, target)
                if not bool(active.any()):
                    break
        return x_adv


BIM = IFGSM
