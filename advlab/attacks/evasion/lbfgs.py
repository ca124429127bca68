"""Box-constrained L-BFGS attack (Szegedy et al., ICLR 2014), eq. (1) of Mygdalis et al.:

    min_n  c * ||n||_2 + L_f(f(x + n), t)   subject to x + n in the model's bounds (e.g. [0, 1]^D),

with L_f the cross-entropy towards the target t (default: the label the model ranks 2nd, as
Mygdalis et al. do), solved by scipy's L-BFGS-B with exact torch gradients. The constant c is
searched per sample as Foolbox v1 did: doubled while the attack still succeeds, then bisected
between the last success and the first failure; the smallest successful perturbation is kept
(samples never reached are returned unchanged). ||n||_2 is smoothed as sqrt(||n||^2 + 1e-12)
so the objective is differentiable at n = 0.

Units: the problem is solved on the unit box, x_u = (x - lo) / (hi - lo) for the model's bounds
(lo, hi), so ||n||_2 (and K-A3's CW-SSIM) is measured in units of the input range, as Foolbox
v1's L-BFGS divides its distance by the squared range. c then means the same for a model on
[0, 255] as on [0, 1], and the attack gives the same examples, scaled; with ||n||_2 in raw
units c would have to be 255 times smaller there, beyond reach of the default c search. On
[0, 1] the map is the identity. With per-feature bounds each feature is mapped by its own
range (x_u,d = (x_d - lo_d) / (hi_d - lo_d); a feature with an open side is left in its
units), so ||n||_2 weighs every feature in units of its range.

Batching: the objective is a sum of independent per-sample terms (each with its own c), so
a whole batch is solved as one L-BFGS-B problem over the concatenated perturbations: one
forward/backward pass per evaluation for the batch instead of one per sample. The minimiser
is the same as per-sample solves; convergence per iteration budget differs slightly, so the
default iteration budget scales with the batch (``max_iter`` per sample-solve, times
``sqrt(batch)``).

Threads: scipy's L-BFGS-B runs on the BLAS scipy ships (OpenBLAS), whose threads busy-wait
between calls and take the cores torch's OpenMP threads need for the objective. With two of
each on two cores the attack ran 3-4 times slower than with one, so each solve runs with
scipy's BLAS on ``SCIPY_BLAS_THREADS`` thread (its vectors are one batch of images; torch keeps
its threads). ``benchmarks/ka3_speed.py`` measures this side by side.

Example::

    result = LBFGS(model)(images, labels)          # targets the 2nd-ranked label
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import Bounds, minimize
from threadpoolctl import threadpool_limits
from torch import nn

from advlab.attacks.evasion.base import AttackResult, MinimizationAttack, model_device
from advlab.attacks.evasion.criteria import Criterion, TargetedMisclassification
from advlab.utils.validation import (
    BoundValue,
    bounds_on,
    check_images,
    check_number,
    clamp_between,
    clip,
)

_SMOOTH = 1e-12
SCIPY_BLAS_THREADS: int | None = 1  # None leaves scipy's BLAS at its own thread count


class LBFGS(MinimizationAttack):
    """Box-constrained L-BFGS (Szegedy et al. 2014): min c ||n||^2 + loss(x + n, t) over the
    box, with a search over c.

    Parameters
    ----------
    model : Model or torch.nn.Module
        The classifier: an ``Model`` (module, input bounds,
        preprocessing) or a bare module, read as bounds (0, 1) and no preprocessing.
    initial_const : float, default=0.01
        First c, finite and > 0; c multiplies ||n||_2 measured in units of the input range
        (hi - lo of the model's bounds).
    doublings : int, default=8
        Steps of the c search before it may stop early: c doubles while the attack succeeds
        (halves while it fails) until a failure and a success bracket it, >= 0.
    bisections : int, default=6
        Bisections of c between the last failure and the first success, >= 0.
    max_iter : int, default=100
        Iterations of each L-BFGS-B solve (scaled by sqrt(batch) for a batched solve), >= 1.
    batch_size : int, default=32
        Samples solved together, as one L-BFGS-B problem: the examples depend on it.
    criterion : Criterion or None, default=None
        None means ``TargetedMisclassification``; subclasses pass
        their own.
    """

    def __init__(
        self,
        model: nn.Module,
        initial_const: float = 0.01,
        doublings: int = 8,
        bisections: int = 6,
        max_iter: int = 100,
        batch_size: int = 32,
        criterion: Criterion | None = None,
    ) -> None:
        super().__init__(model, criterion or TargetedMisclassification(), batch_size)
        self.c0 = check_number("initial_const", initial_const, 0.0, low_open=True)
        self.doublings = int(check_number("doublings", doublings, 0, integer=True))
        self.bisections = int(check_number("bisections", bisections, 0, integer=True))
        self.max_iter = int(check_number("max_iter", max_iter, 1, integer=True))

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> AttackResult:
        """``target`` defaults to the label ranked 2nd by the model on the clean input."""
        if target is None:
            target = self._ranked_labels(x, positions=slice(1, 2))[:, 0]
        return super().__call__(x, y, target)

    # -- pieces that K-A3 overrides -------------------------------------------------------
    def _ranked_labels(self, x: torch.Tensor, positions: slice) -> torch.Tensor:
        """Labels at the given rank positions (0 = top) of the model on clean x, (N, len)."""
        x = check_images(x, "x", self.bounds).detach()
        device, out = model_device(self.model), []
        self._n_classes(x, device)  # explains a shape mismatch before any work
        with torch.no_grad():
            for start in range(0, len(x), 1024):
                logits = self.model(x[start : start + 1024].to(device, self.dtype))
                out.append(logits.argsort(1, descending=True)[:, positions].cpu())
        return torch.cat(out)

    def _targets(self, target: torch.Tensor | None) -> torch.Tensor:
        """(B, T) target labels per sample, -1 where unused."""
        assert target is not None
        return target[:, None] if target.ndim == 1 else target

    def _distortion(self, x: torch.Tensor, xa: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """D(x, x + n) per sample, multiplied by c in the objective: the L2 norm of n."""
        return torch.sqrt((n * n).sum(1) + _SMOOTH)

    def _penalty(self, x: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
        """A term added to the objective outside c, per sample: none for L-BFGS."""
        return torch.zeros(len(x), device=x.device, dtype=x.dtype)

    def _selection_size(self, x: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
        """The size by which the c search keeps its best successful example: the L2 norm."""
        return (xa - x).flatten(1).norm(dim=1)

    def _reached(
        self, logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Whether the attack's criterion holds (L-BFGS: the model predicts the target)."""
        return self.criterion(logits, y, targets)

    # -- the search ---------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """sum over the sample's targets of CE(f(x + n), t), per sample."""
        logp = logits.log_softmax(1)
        valid = targets >= 0
        picked = logp.gather(1, targets.clamp_min(0))
        return -(picked * valid).sum(1)

    def _unit_map(self, like: torch.Tensor) -> tuple[BoundValue, BoundValue]:
        """(offset, span) of the map x -> (x - offset) / span onto the space the problem is
        solved in: the unit box for finite bounds (so that c weighs the perturbation in units
        of the input range), the inputs as they are for unbounded ones; per feature (tensors
        on ``like``'s device, in its dtype) for per-feature bounds."""
        low, high = bounds_on(self.bounds, like)
        if isinstance(low, torch.Tensor) and isinstance(high, torch.Tensor):
            finite = torch.isfinite(low) & torch.isfinite(high) & (high > low)  # (not fixed)
            return torch.where(finite, low, 0.0), torch.where(finite, high - low, 1.0)
        if math.isfinite(low) and math.isfinite(high):
            return low, high - low
        return 0.0, 1.0

    def _box(self, like: torch.Tensor) -> tuple[BoundValue, BoundValue]:
        """The model's bounds in the problem's space: (0, 1), or infinite (per feature for
        per-feature bounds)."""
        (low, high), (offset, span) = bounds_on(self.bounds, like), self._unit_map(like)
        return (low - offset) / span, (high - offset) / span

    def _from_unit(self, xu: torch.Tensor) -> torch.Tensor:
        """Problem-space inputs back in the model's units: offset + xu span (exact on [0, 1])."""
        offset, span = self._unit_map(xu)
        return offset + xu * span

    def _logits(self, xu: torch.Tensor) -> torch.Tensor:
        """The model on unit-box images xu."""
        return self.model(self._from_unit(xu))

    def _solve(
        self, x: torch.Tensor, targets: torch.Tensor, c: torch.Tensor, start: torch.Tensor
    ) -> torch.Tensor:
        """One L-BFGS-B solve of sum_i c_i D_i + L_i over the whole batch from x + ``start``,
        x in the problem's space (``_unit_map``); returns x + n (objective in x's dtype, float64
        iterates in scipy)."""
        b, shape = len(x), x.shape
        flat_x = x.detach().reshape(b, -1)

        def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
            n = torch.from_numpy(flat).to(x.device, x.dtype).view(b, -1).requires_grad_(True)
            xa = (flat_x + n).view(shape)
            value = (
                (c * self._distortion(x, xa, n)).sum()
                + self._penalty(x, xa).sum()
                + self._loss(self._logits(xa), targets).sum()
            )
            (grad,) = torch.autograd.grad(value, n)
            return float(value.detach()), grad.cpu().double().numpy().ravel()

        box_low, box_high = self._box(x)
        lower = (box_low - x.detach()).double().cpu().numpy().ravel()
        upper = (box_high - x.detach()).double().cpu().numpy().ravel()
        with threadpool_limits(SCIPY_BLAS_THREADS, user_api="blas"):
            res = minimize(
                objective,
                start.reshape(-1).double().cpu().numpy(),
                jac=True,
                method="L-BFGS-B",
                bounds=Bounds(lower, upper),
                options={"maxiter": int(self.max_iter * math.sqrt(b))},
            )
        n = torch.as_tensor(res.x, dtype=x.dtype, device=x.device).view(b, -1)
        return clamp_between((flat_x + n).view(shape), box_low, box_high)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        targets = self._targets(target).to(x.device)
        offset, span = self._unit_map(x)
        best, x = x.clone(), (x - offset) / span  # the problem on the unit box (if bounded)
        b = len(x)
        best_norm = torch.full((b,), math.inf, device=x.device, dtype=x.dtype)
        c = torch.full((b,), self.c0, device=x.device, dtype=x.dtype)
        lo = torch.zeros_like(c)
        hi = torch.full_like(c, math.inf)
        start = torch.zeros_like(x)
        for step in range(self.doublings + self.bisections + 1):
            xa = self._solve(x, targets, c, start)
            start = xa - x  # warm start: the next c is close to this one
            with torch.no_grad():
                ok = self._reached(self._logits(xa), y, targets)
            with torch.no_grad():
                norm = self._selection_size(x, xa)
            better = ok & (norm < best_norm)
            best[better] = clip(self._from_unit(xa[better]), self.bounds)
            best_norm[better] = norm[better]
            lo, hi = torch.where(ok, c, lo), torch.where(ok, hi, c)
            grow = torch.where(torch.isinf(hi), 2 * c, (c + hi) / 2)
            shrink = torch.where(lo > 0, (lo + c) / 2, c / 2)
            c = torch.where(ok, grow, shrink)
            settled = torch.isfinite(hi) & (lo > 0) & (hi / lo.clamp_min(1e-30) < 1.05)
            if step >= self.doublings and bool(settled.all()):
                break
        return best
