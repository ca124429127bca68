"""DeepFool (Moosavi-Dezfooli et al., CVPR 2016), multiclass, L2, batched.

At each step, with k0 the original prediction and for every other class k,
f'_k = z_k(x_i) - z_k0(x_i) and w'_k = grad z_k(x_i) - grad z_k0(x_i); the closest linearised
boundary is l = argmin_k |f'_k| / ||w'_k||_2 and the step is
r_i = (|f'_l| + 1e-4) / ||w'_l||^2 * w'_l (eq. 8 of the paper, multiclass algorithm 2).
The output is clip(x + (1 + overshoot) * sum_i r_i) to the model's bounds; a sample stops once its label changed.
Defaults as Foolbox / torchattacks: overshoot 0.02, 50 steps.

Example::

    result = DeepFool(model)(images, labels)
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.evasion.base import MinimizationAttack
from advlab.utils.validation import check_number


class DeepFool(MinimizationAttack):
    """DeepFool (Moosavi-Dezfooli et al. 2016), L2, untargeted: the criterion is
    misclassification; the result's ``distances`` are the L2 sizes of the perturbations.

    Parameters
    ----------
    model : Model or torch.nn.Module
        The classifier: an ``Model`` (module, input bounds,
        preprocessing) or a bare module, read as bounds (0, 1) and no preprocessing.
    max_iter : int, default=50
        Linearisation steps, >= 1.
    overshoot : float, default=0.02
        Relative step past the boundary, finite and >= 0.
    batch_size : int, default=256
        Samples per batch (memory, not results).
    """

    def __init__(
        self, model: nn.Module, max_iter: int = 50, overshoot: float = 0.02, batch_size: int = 256
    ) -> None:
        super().__init__(model, None, batch_size)
        self.max_iter = int(check_number("max_iter", max_iter, 1, integer=True))
        self.overshoot = check_number("overshoot", overshoot, 0.0)

    def _class_gradients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, C) and their input gradients (B, C, D)."""
        x = x.detach().requires_grad_(True)
        logits = self.model(x)
        grads = [torch.autograd.grad(logits[:, c].sum(), x, retain_graph=True)[0].flatten(1)
                 for c in range(logits.shape[1])]  # fmt: skip
        return logits.detach(), torch.stack(grads, 1)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        with torch.no_grad():
            k0 = self.model(x).argmax(1)
        r_tot = torch.zeros_like(x).flatten(1)
        x_adv = x.clone()
        rows = torch.arange(len(x), device=x.device)
        for _ in range(self.max_iter):
            logits, grads = self._class_gradients(x_adv)
            active = logits.argmax(1) == k0
            if not bool(active.any()):
                break
            f = logits - logits[rows, k0][:, None]  # (B, C)
            w = grads - grads[rows, k0][:, None, :]  # (B, C, D)
            dist = f.abs() / w.norm(dim=2).clamp(min=1e-12)
            dist[rows, k0] = float("inf")
            best = dist.argmin(1)
            w_l, f_l = w[rows, best], f[rows, best]
            step = ((f_l.abs() + 1e-4) / w_l.pow(2).sum(1).clamp(min=1e-12))[:, None] * w_l
            r_tot = r_tot + step * active[:, None]
            x_adv = torch.clamp(x + (1 + self.overshoot) * r_tot.view_as(x), *self.bounds)
        return x_adv
