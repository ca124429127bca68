"""DeepFool (Moosavi-Dezfooli et al., CVPR 2016), multiclass, L2, batched.

At each step, with k0 the original prediction and for every other class k,
f'_k = z_k(x_i) - z_k0(x_i) and w'_k = grad z_k(x_i) - grad z_k0(x_i); the closest linearised
boundary is l = argmin_k |f'_k| / ||w'_k||_2 and the step is
r_i = (|f'_l| + 1e-4) / ||w'_l||^2 * w'_l (eq. 8 of the paper, multiclass algorithm 2).
The output is clip(x + (1 + overshoot) * sum_i r_i) to the model's bounds; a sample stops once
its label changed. Only the ``candidates`` classes ranked highest on the clean input are
linearised (Foolbox's ``candidates``, ART's ``nb_grads``; default 10): each costs a backward
pass and B x D memory per step, so a 1,000-class model would otherwise take 1,000 of each.
Defaults as Foolbox / torchattacks: overshoot 0.02, 50 steps.

Example::

    result = DeepFool(model)(images, labels)
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.evasion.base import MinimizationAttack
from advlab.utils.validation import check_number, clip


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
    candidates : int or None, default=10
        Classes linearised per sample: the ``candidates`` ranked highest on the clean input
        (the original prediction included), >= 2; None: every class.
    batch_size : int, default=256
        Samples per batch (memory, not results).
    """

    def __init__(
        self,
        model: nn.Module,
        max_iter: int = 50,
        overshoot: float = 0.02,
        candidates: int | None = 10,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model, None, batch_size)
        self.max_iter = int(check_number("max_iter", max_iter, 1, integer=True))
        self.overshoot = check_number("overshoot", overshoot, 0.0)
        if candidates is not None:
            candidates = int(check_number("candidates", candidates, 2, integer=True))
        self.candidates = candidates

    def _class_gradients(
        self, x: torch.Tensor, classes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits (B, C), those of ``classes`` (B, m) and their input gradients (B, m, D)."""
        x = x.detach().requires_grad_(True)
        logits = self.model(x)
        picked = logits.gather(1, classes)
        grads = [torch.autograd.grad(picked[:, j].sum(), x, retain_graph=True)[0].flatten(1)
                 for j in range(classes.shape[1])]  # fmt: skip
        return logits.detach(), picked.detach(), torch.stack(grads, 1)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        rows = torch.arange(len(x), device=x.device)
        with torch.no_grad():
            clean = self.model(x)
        k0 = clean.argmax(1)
        n_classes = clean.shape[1]
        if self.candidates is None or self.candidates >= n_classes:
            classes = torch.arange(n_classes, device=x.device).expand(len(x), n_classes)
        else:  # the top candidates, k0 first (argmax's tie-break kept)
            ranked = clean.scatter(1, k0[:, None], float("inf"))
            classes = ranked.topk(self.candidates, dim=1).indices
        own = (classes == k0[:, None]).int().argmax(1)  # k0's column in ``classes``
        r_tot = torch.zeros_like(x).flatten(1)
        x_adv = x.clone()
        for _ in range(self.max_iter):
            logits, picked, grads = self._class_gradients(x_adv, classes)
            active = logits.argmax(1) == k0
            if not bool(active.any()):
                break
            f = picked - picked[rows, own][:, None]  # (B, m)
            w = grads - grads[rows, own][:, None, :]  # (B, m, D)
            dist = f.abs() / w.norm(dim=2).clamp(min=1e-12)
            dist[rows, own] = float("inf")
            best = dist.argmin(1)
            w_l, f_l = w[rows, best], f[rows, best]
            step = ((f_l.abs() + 1e-4) / w_l.pow(2).sum(1).clamp(min=1e-12))[:, None] * w_l
            r_tot = r_tot + step * active[:, None]
            x_adv = clip(x + (1 + self.overshoot) * r_tot.view_as(x), self.bounds)
        return x_adv
