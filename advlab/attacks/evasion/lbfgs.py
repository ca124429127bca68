"""Box-constrained L-BFGS attack (Szegedy et al., ICLR 2014), eq. (1) of Mygdalis et al.:

    min_n  c * ||n||_2 + L_f(f(x + n), t)   subject to x + n in [0, 1]^D,

with L_f the cross-entropy towards the target t (default: the label the model ranks 2nd, as
Mygdalis et al. do), solved per sample by scipy's L-BFGS-B with exact torch gradients. The
constant c is searched as Foolbox v1 did: doubled while the attack still succeeds, then bisected
between the last success and the first failure; the smallest successful perturbation is kept.
(||n||_2 is smoothed as sqrt(||n||^2 + 1e-12) so the objective is differentiable at n = 0.)

Example::

    result = LBFGS(model)(images, labels)          # targets the 2nd-ranked label
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize
from torch import nn

from advlab.attacks.evasion.base import Attack, AttackResult


class LBFGS(Attack):
    """Args: model; initial_const (0.01); doublings (8); bisections (6); max_iter per solve (100)."""

    def __init__(
        self,
        model: nn.Module,
        initial_const: float = 0.01,
        doublings: int = 8,
        bisections: int = 6,
        max_iter: int = 100,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model, targeted=True, batch_size=batch_size)
        if not initial_const > 0 or doublings < 0 or bisections < 0 or max_iter < 1:
            raise ValueError(
                "need initial_const > 0, doublings >= 0, bisections >= 0, max_iter >= 1"
            )
        self.c0, self.doublings, self.bisections, self.max_iter = (
            initial_const,
            doublings,
            bisections,
            max_iter,
        )

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> AttackResult:
        """``target`` defaults to the label ranked 2nd by the model on the clean input."""
        if target is None:
            with torch.no_grad():
                target = self.model(x.float()).topk(2, dim=1).indices[:, 1].cpu()
        return super().__call__(x, y, target)

    def _solve(
        self, x: np.ndarray, t: int, c: float, shape: tuple[int, ...], device: torch.device
    ) -> np.ndarray:
        def objective(n: np.ndarray) -> tuple[float, np.ndarray]:
            nt = torch.tensor(n, dtype=torch.float64, requires_grad=True)
            xa = (torch.as_tensor(x, dtype=torch.float64) + nt).float().reshape(shape).to(device)
            ce = nn.functional.cross_entropy(self.model(xa), torch.tensor([t], device=device))
            value = c * torch.sqrt((nt * nt).sum() + 1e-12) + ce.double()
            (grad,) = torch.autograd.grad(value, nt)
            return float(value.detach()), grad.numpy()

        bounds = list(zip((-x).tolist(), (1.0 - x).tolist(), strict=True))
        res = minimize(objective, np.zeros_like(x), jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": self.max_iter})  # fmt: skip
        return np.clip(x + res.x, 0.0, 1.0)

    def _hits(self, xa: np.ndarray, t: int, shape: tuple[int, ...], device: torch.device) -> bool:
        with torch.no_grad():
            return (
                int(
                    self.model(
                        torch.as_tensor(xa, dtype=torch.float32).reshape(shape).to(device)
                    ).argmax(1)
                )
                == t
            )

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        assert target is not None
        out = x.clone()
        shape = (1, *x.shape[1:])
        for i in range(len(x)):
            xi, ti = x[i].detach().cpu().double().flatten().numpy(), int(target[i])
            best, best_norm = None, np.inf
            c, lo, hi = self.c0, 0.0, None
            for step in range(self.doublings + self.bisections + 1):
                xa = self._solve(xi, ti, c, shape, x.device)
                if self._hits(xa, ti, shape, x.device):
                    norm = float(np.linalg.norm(xa - xi))
                    if norm < best_norm:
                        best, best_norm = xa, norm
                    lo = c
                    c = c * 2 if hi is None else (c + hi) / 2
                else:
                    hi = c
                    c = (lo + c) / 2 if lo > 0 else c / 2
                if hi is not None and step >= self.doublings and lo > 0 and hi / lo < 1.05:
                    break
            if best is not None:
                out[i] = torch.as_tensor(best, dtype=x.dtype).reshape(x.shape[1:])
        return out
