"""PGD (Madry et al., ICLR 2018) in L-inf and L2, with random start.

L-inf:  x_{t+1} = clip_[0,1]( Proj_{B_inf(x, eps)}( x_t + a * sign(g_t) ) )
L2:     x_{t+1} = clip_[0,1]( Proj_{B_2(x, eps)}( x_t + a * g_t / ||g_t||_2 ) )

g_t is the gradient of the loss (``"ce"`` cross-entropy or ``"margin"``, the CW margin).
Random start: uniform in the L-inf ball, or uniform in the L2 ball (direction ~ N(0, I),
radius ~ eps * U^(1/d)), drawn from a ``torch.Generator`` seeded by ``random_state``.

Example::

    atk = PGD(model, eps=0.3, eps_step=0.01, max_iter=40, norm="linf", random_state=0)
    result = atk(images, labels)
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.evasion.base import MNIST_PIXEL_STD, Attack, eps_to_pixels, input_gradient


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (t.ndim - 1)))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Projection of the perturbation onto the eps-ball of ``norm``."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * torch.clamp(eps / _flat_norm(delta), max=1.0)


class PGD(Attack):
    """Args: model; eps; eps_step (default eps / 4); max_iter; norm ``"linf"`` or ``"l2"``;
    random_start (default True); random_state; loss ``"ce"`` or ``"margin"``;
    eps_units (``"pixel"``/``"standardized"``, L-inf only); targeted; batch_size; early_stop
    (a sample stops moving once the criterion holds; off by default)."""

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        max_iter: int,
        eps_step: float | None = None,
        norm: str = "linf",
        random_start: bool = True,
        random_state: int | None = None,
        loss: str = "ce",
        eps_units: str = "pixel",
        pixel_std: float = MNIST_PIXEL_STD,
        targeted: bool = False,
        batch_size: int = 256,
        early_stop: bool = False,
    ) -> None:
        super().__init__(model, targeted, batch_size)
        self.early_stop = early_stop
        if norm not in ("linf", "l2"):
            raise ValueError(f"norm={norm!r}: use 'linf' or 'l2'")
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        if loss not in ("ce", "margin"):
            raise ValueError(f"loss={loss!r}: use 'ce' or 'margin'")
        self.eps = eps_to_pixels(eps, eps_units, pixel_std)
        self.eps_step = (
            self.eps / 4 if eps_step is None else eps_to_pixels(eps_step, eps_units, pixel_std)
        )
        self.max_iter, self.norm, self.loss = max_iter, norm, loss
        self.random_start = random_start
        self.generator = torch.Generator().manual_seed(
            random_state if random_state is not None else 0
        )

    def _random_delta(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            u = torch.rand(x.shape, generator=self.generator)
            return ((2 * u - 1) * self.eps).to(x.device)
        direction = torch.randn(x.shape, generator=self.generator)
        d = x[0].numel()
        radius = self.eps * torch.rand(len(x), generator=self.generator) ** (1.0 / d)
        return (direction / _flat_norm(direction) * radius.view(-1, *([1] * (x.ndim - 1)))).to(
            x.device
        )

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        x_adv = torch.clamp(x + self._random_delta(x), 0.0, 1.0) if self.random_start else x.clone()
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        if self.norm == "linf":  # [0, 1] box intersected with the eps-ball, a box per pixel
            lower, upper = (x - self.eps).clamp_(min=0.0), (x + self.eps).clamp_(max=1.0)
        for _ in range(self.max_iter):
            grad = input_gradient(self.model, x_adv, y, target, self.loss)
            step = grad.sign_() if self.norm == "linf" else grad / _flat_norm(grad)
            if self.early_stop:  # samples that already succeed stop moving
                step = step * active.view(-1, *([1] * (x.ndim - 1)))
            if self.norm == "linf":  # clip_[0,1](Proj(x_t + a s)) in one clamp, no x round trip
                x_adv = torch.clamp(x_adv.add_(step, alpha=self.eps_step), lower, upper)
            else:
                delta = project(x_adv + self.eps_step * step - x, self.eps, self.norm)
                x_adv = torch.clamp(x + delta, 0.0, 1.0)
            if self.early_stop:
                with torch.no_grad():
                    active = ~self.criterion(self.model(x_adv).argmax(1), y, target)
                if not bool(active.any()):
                    break
        return x_adv
