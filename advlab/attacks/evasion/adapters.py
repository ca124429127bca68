"""Use a torchattacks attack wherever an advlab attack is expected.

    from torchattacks import BIM
    atk = TorchattacksAdapter(BIM(model, eps=0.3, alpha=0.075, steps=10))
    result = atk(images, labels)      # an AttackResult, like every advlab attack

The wrapped object does the search; advlab adds input validation, batching and the criterion.
torchattacks clamps its examples to [0, 1]; for a model read on another box [lo, hi],
``TorchattacksAdapter.build`` builds the attack on the model read on [0, 1]:

    atk = TorchattacksAdapter.build(torchattacks.PGD, model, eps=8.0, alpha=2.0, steps=10)

runs PGD on u -> model(lo + (hi - lo) u) with eps and alpha divided by hi - lo, and maps the
inputs to [0, 1] and the examples back (x = lo + (hi - lo) u: the same examples as on a [0, 1]
model, scaled; budgets, examples and distances in the model's units).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advlab.attacks.evasion.base import Attack
from advlab.attacks.evasion.criteria import Criterion
from advlab.models.wrapper import Model, as_model
from advlab.utils.validation import describe_bounds, same_bounds

UNIT_PARAMS = ("eps", "alpha")  # torchattacks' parameters in input units: budget, step size


class _UnitBox(nn.Module):
    """``model`` read on [0, 1]: u -> model(lo + span * u)."""

    def __init__(self, model: Model, lo: float, span: float) -> None:
        super().__init__()
        self.model, self.lo, self.span = model, lo, span

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(self.lo + self.span * u)


class TorchattacksAdapter(Attack):
    """Wrap a ``torchattacks.Attack`` instance (its ``model`` is used for the criterion); a
    criterion that needs targets switches it to targeted-by-label mode. torchattacks clamps
    its examples to [0, 1], so a model (an advlab ``Model``) with other bounds is refused
    here: ``build`` makes the attack for it.

    Parameters
    ----------
    attack : torchattacks.Attack
        A torchattacks attack instance (its model is used for the criterion).
    criterion : Criterion or None, default=None
        None means misclassification; a targeted criterion switches the attack to targeted-by-label
        mode.
    batch_size : int, default=256
        Samples per call of the wrapped attack.
    """

    def __init__(
        self, attack: Any, criterion: Criterion | None = None, batch_size: int = 256
    ) -> None:
        if not callable(attack) or not hasattr(attack, "model"):
            raise TypeError("expected a torchattacks attack instance (callable, with a .model)")
        super().__init__(attack.model, criterion, batch_size)
        if not same_bounds(self.model.bounds, (0.0, 1.0)):  # its steps end in clamp(0, 1)
            raise ValueError(
                f"torchattacks clamps inputs to [0, 1], but the model's bounds are "
                f"{describe_bounds(self.model.bounds)}; build the attack with "
                "TorchattacksAdapter.build(attack_class, model, eps=..., ...), which reads the "
                "model on [0, 1]"
            )
        self.attack = attack
        self._box: tuple[float, float] | None = None  # (lo, hi - lo) where build reads the
        # model on [0, 1]
        if self.criterion.needs_target:
            attack.set_mode_targeted_by_label(quiet=True)

    @classmethod
    def build(
        cls,
        attack_class: Any,
        model: nn.Module,
        criterion: Criterion | None = None,
        batch_size: int = 256,
        **params: Any,
    ) -> TorchattacksAdapter:
        """torchattacks' ``attack_class`` on ``model`` whatever its box [lo, hi] (two finite
        numbers): built on the model read on [0, 1], u -> model(lo + (hi - lo) u), with the
        parameters in input units (``UNIT_PARAMS``: eps, alpha) divided by hi - lo and the
        others as given; the inputs are mapped to u = (x - lo) / (hi - lo) and the examples
        back, so that budgets, examples and distances are in the model's units (on a [0, 1]
        model: ``TorchattacksAdapter(attack_class(model, **params))``).

        Parameters
        ----------
        attack_class : type
            A torchattacks attack class (``torchattacks.PGD``, ``torchattacks.APGD``, ...).
        model : torch.nn.Module
            An advlab ``Model`` (its bounds) or a bare module (bounds (0, 1)).
        criterion : Criterion or None, default=None
            As for the constructor.
        batch_size : int, default=256
            Samples per call of the wrapped attack.
        **params
            The attack class's own parameters, eps and alpha in the model's input units.

        Returns
        -------
        TorchattacksAdapter
        """
        model = as_model(model)
        bounds = model.bounds
        if isinstance(bounds[0], torch.Tensor) or isinstance(bounds[1], torch.Tensor):
            raise ValueError("torchattacks takes one budget for every feature: a model with "
                             "per-feature bounds needs advlab's attacks")  # fmt: skip
        lo, hi = float(bounds[0]), float(bounds[1])
        if not (torch.isfinite(torch.tensor([lo, hi])).all() and hi > lo):
            raise ValueError(f"torchattacks needs a finite box; the model's bounds are "
                             f"{describe_bounds(bounds)}")  # fmt: skip
        span = hi - lo
        scaled = {k: v / span if k in UNIT_PARAMS and v is not None else v
                  for k, v in params.items()}  # fmt: skip
        adapter = cls(attack_class(_UnitBox(model, lo, span), **scaled), criterion, batch_size)
        adapter.model, adapter._box = model, (lo, span)  # (the criterion on the model itself)
        return adapter

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        labels = target if target is not None else y
        if self._box is None:
            return self.attack(x, labels)
        lo, span = self._box
        unit = ((x - lo) / span).clamp(0.0, 1.0)  # (rounding kept inside torchattacks' box)
        return (lo + span * self.attack(unit, labels)).clamp(lo, lo + span)
