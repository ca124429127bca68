"""PGD (Madry et al., ICLR 2018) in L-inf and L2, with random start.

L-inf:  x_{t+1} = clip_B( Proj_{B_inf(x, eps)}( x_t + a * sign(g_t) ) )
L2:     x_{t+1} = clip_B( Proj_{B_2(x, eps)}( x_t + a * g_t / ||g_t||_2 ) )

with clip_B the clipping to the model's input bounds ([0, 1] for images).

With per-feature units s (``units``; s_d = 0 freezes feature d) the budget is the weighted ball
||(x' - x) / s|| <= eps. In L-inf it is the box |x'_d - x_d| <= eps * s_d. In L2 it is the
ellipsoid sum_d ((x'_d - x_d) / s_d)^2 <= eps^2, and PGD runs in the coordinates
delta' = delta / s, where it is the plain L2 PGD above (eq. W):

    g' = s * g_t,   x_{t+1} = clip_B( x + Proj_E( x_t - x + a * s * g' / ||g'||_2 ) ),
    Proj_E(delta) = delta * min(1, eps / ||delta / s||_2),

a steepest-ascent step in the weighted norm and the radial projection onto the ellipsoid in
its own metric (the Euclidean projection onto an ellipsoid has no closed form).

g_t is the gradient of the loss (``"ce"`` cross-entropy or ``"margin"``, the CW margin).
Random start: uniform in the L-inf ball, or uniform in the L2 ball (direction ~ N(0, I),
radius ~ eps * U^(1/d)), drawn from a ``torch.Generator`` seeded by ``random_state`` as
uniforms, sample after sample (an L2 start takes d + 1: the normals are Phi^-1 of the first d),
so that the starts do not depend on ``batch_size``.

Example::

    atk = PGD(model, eps=0.3, eps_step=0.01, max_iter=40, norm="linf", random_state=0)
    result = atk(images, labels)
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.evasion.base import (
    Attack,
    box_units,
    check_norm,
    eps_to_pixels,
    input_gradient,
)
from advlab.attacks.evasion.criteria import Criterion
from advlab.utils.validation import (
    Budget,
    BudgetLike,
    bounds_on,
    budget_on,
    check_budget,
    check_number,
    clip,
)


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (t.ndim - 1)))


def project_l2(delta: torch.Tensor, eps: Budget) -> torch.Tensor:
    """Projection of the perturbation onto the L2 ball of radius eps (L-inf PGD clamps to a
    per-pixel box instead, in ``_perturb``)."""
    return delta * torch.clamp(eps / _flat_norm(delta), max=1.0)


def _unit_free(delta: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """delta / s, the perturbation in the coordinates of eq. W (a frozen feature, s_d = 0,
    has delta_d = 0 and stays 0)."""
    return delta / torch.where(units > 0, units, 1.0)


def _pgd_units(
    units: BudgetLike | None, eps: BudgetLike, eps_units: str, std: object, norm: str, axis: int
) -> torch.Tensor | None:
    """The per-feature units of the budget as a float64 tensor (``check_units``), None for
    none. An L2 budget in standardized units with one std per channel is the ellipsoid of the
    units std_c (eq. W); units beside standardized eps units, or beside an array eps (the
    units carry the per-feature part), are refused."""
    if units is not None:
        return box_units(units, eps, eps_units)
    if norm == "l2" and eps_units == "standardized" and std is not None:
        std_t = torch.as_tensor(std, dtype=torch.float64)
        if std_t.numel() > 1:  # the L2 ball of the standardized inputs
            return std_t.reshape(-1, *([1] * (-axis - 1)))
    return None


def seeded_generator(random_state: int | None) -> torch.Generator:
    """A local torch generator: seeded by ``random_state``, fresh entropy when None."""
    generator = torch.Generator()
    if random_state is None:
        generator.seed()
    else:
        generator.manual_seed(int(check_number("random_state", random_state, 0, integer=True)))
    return generator


class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018) in L-inf or L2.

    Parameters
    ----------
    model : Model or torch.nn.Module
        The classifier: an ``Model`` (module, input bounds,
        preprocessing) or a bare module, read as bounds (0, 1) and no preprocessing.
    eps : float or array-like
        Budget, >= 0 and finite, in ``eps_units`` (or in ``units``); in L-inf also one per
        feature (an array of the shape of one input, or broadcastable to it, such as (D,) for
        tabular rows; 0 where a feature must not move): the box |x'_d - x_d| <= eps_d.
    max_iter : int
        Number of steps, >= 1.
    eps_step : float, array-like or None, default=None
        Step size in ``eps_units`` (one per feature as ``eps``); None means eps / 4.
    norm : {"linf", "l2"}, default="linf"
        The norm of the budget.
    random_start : bool, default=True
        Start uniformly in the eps-ball.
    random_state : int or None, default=None
        Seed of the random start; None draws fresh randomness.
    loss : {"ce", "margin"}, default="ce"
        Cross-entropy or the C&W margin.
    eps_units : {"pixel", "standardized"}, default="pixel"
        Unit of ``eps`` and ``eps_step``: input units, or multiples of the model's per-channel
        input std (in L2 with one std per channel: the ellipsoid of those units, eq. W, the L2
        ball of the standardized inputs).
    criterion : Criterion or None, default=None
        When a sample counts as adversarial; None means misclassification, targeted attacks
        pass ``TargetedMisclassification``.
    batch_size : int, default=256
        Samples per batch (memory, not results).
    early_stop : bool, default=False
        Stop moving a sample once the criterion holds.
    units : array-like or None, default=None
        Per-feature units s_d >= 0 (the shape of one input, or broadcastable to it; 0 freezes a
        feature), with eps and eps_step one number each in multiples of them: the budget is
        ||(x' - x) / s|| <= eps in ``norm`` (L-inf: the box eps * s_d; L2: an ellipsoid, eq.
        W), and ``AttackResult.distances`` are measured in that weighted norm. ``eps_units``
        must be 'pixel'. None: every feature in input units.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: BudgetLike,
        max_iter: int,
        eps_step: BudgetLike | None = None,
        norm: str = "linf",
        random_start: bool = True,
        random_state: int | None = None,
        loss: str = "ce",
        eps_units: str = "pixel",
        criterion: Criterion | None = None,
        batch_size: int = 256,
        early_stop: bool = False,
        units: BudgetLike | None = None,
    ) -> None:
        super().__init__(model, criterion, batch_size)
        self.early_stop = early_stop
        check_norm(norm)
        max_iter = int(check_number("max_iter", max_iter, 1, integer=True))
        if loss not in ("ce", "margin"):
            raise ValueError(f"loss={loss!r}: use 'ce' or 'margin'")
        self.norm = norm
        std, axis = self.model.input_std, self.model.axis
        self.units = _pgd_units(units, eps, eps_units, std, norm, axis)
        if self.units is not None:  # eps counts units (eq. W): in input units from here on
            eps_units = "pixel"
            if units is not None:  # the user's units: distances in their weighted norm
                self.scale = self.units
        if eps_step is not None:
            check_budget("eps_step", eps_step)
        self.eps = eps_to_pixels(eps, eps_units, std, axis)
        self.eps_step = (
            self.eps / 4 if eps_step is None else eps_to_pixels(eps_step, eps_units, std, axis)
        )
        if norm == "l2" and any(
            isinstance(b, torch.Tensor) and b.numel() > 1 for b in (self.eps, self.eps_step)
        ):
            raise ValueError(
                "an L2 budget is one number: to give each feature its own units, pass "
                "units=s (the ellipsoid ||delta / s||_2 <= eps), or use norm='linf' for a box"
            )
        if norm == "linf" and self.units is not None:  # the box eps * s_d
            self.eps, self.eps_step = self.eps * self.units, self.eps_step * self.units
        self.max_iter, self.loss = int(max_iter), loss
        self.random_start = random_start
        self.generator = seeded_generator(random_state)

    def _random_delta(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            u = torch.rand(x.shape, generator=self.generator)
            return ((2 * u - 1) * budget_on(self.eps, u)).to(x.device, x.dtype)
        d = x[0].numel()
        # uniforms only: torch draws them one by one, normals in blocks (randn's stream
        # depends on the batch's size); direction Phi^-1(U_1..d) ~ N(0, I), radius by U_d+1
        uniform = torch.rand(len(x), d + 1, generator=self.generator, dtype=torch.float64)
        direction = torch.special.ndtri(uniform[:, :d].clamp(min=1e-300)).reshape(x.shape)
        radius = self.eps * uniform[:, d] ** (1.0 / d)
        delta = direction / _flat_norm(direction) * radius.view(-1, *([1] * (x.ndim - 1)))
        if self.units is not None:  # the ball of eq. W's coordinates, back in input units
            delta = delta * self.units
        return delta.to(x.device, x.dtype)

    def _ellipsoid(self, x: torch.Tensor) -> torch.Tensor | None:
        """An L2 budget's units on x's device, in its dtype (eq. W); None for the plain ball."""
        if self.norm == "linf" or self.units is None:
            return None
        return self.units.to(x.device, x.dtype)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        lo, hi = bounds_on(self.bounds, x)
        eps, eps_step = budget_on(self.eps, x), budget_on(self.eps_step, x)
        units = self._ellipsoid(x)
        x_adv = clip(x + self._random_delta(x), self.bounds) if self.random_start else x.clone()
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        if self.norm == "linf":  # the bounds box intersected with the eps-ball, a box per pixel
            lower, upper = (x - eps).clamp_(min=lo), (x + eps).clamp_(max=hi)
        for _ in range(self.max_iter):
            grad = input_gradient(self.model, x_adv, y, target, self.loss)
            if self.norm == "linf":
                step = grad.sign_()
            elif units is None:
                step = grad / _flat_norm(grad)
            else:  # s * g' / ||g'||, g' = s * g: the steepest step in the weighted norm
                grad = grad * units
                step = grad * units / _flat_norm(grad)
            if self.early_stop:  # samples that already succeed stop moving
                step = step * active.view(-1, *([1] * (x.ndim - 1)))
            if self.norm == "linf":  # clip(Proj(x_t + a s)) in one clamp, no x round trip
                if isinstance(eps_step, torch.Tensor):
                    x_adv = torch.clamp(x_adv.add_(step * eps_step), lower, upper)
                else:
                    x_adv = torch.clamp(x_adv.add_(step, alpha=eps_step), lower, upper)
            else:
                delta = x_adv + eps_step * step - x
                if units is None:
                    delta = project_l2(delta, eps)
                else:  # the radial projection onto the ellipsoid (eq. W)
                    delta = delta * torch.clamp(eps / _flat_norm(_unit_free(delta, units)), max=1)
                x_adv = clip(x + delta, self.bounds)
            if self.early_stop:
                with torch.no_grad():
                    active = ~self.criterion(self.model(x_adv), y, target)
                if not bool(active.any()):
                    break
        return x_adv
