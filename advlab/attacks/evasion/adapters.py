"""Use a torchattacks attack wherever an advlab attack is expected.

    from torchattacks import BIM
    atk = TorchattacksAdapter(BIM(model, eps=0.3, alpha=0.075, steps=10))
    result = atk(images, labels)      # an AttackResult, like every advlab attack

The wrapped object does the search; advlab adds input validation, batching and the criterion.
"""

from __future__ import annotations

from typing import Any

import torch

from advlab.attacks.evasion.base import Attack
from advlab.attacks.evasion.criteria import Criterion
from advlab.utils.validation import describe_bounds, same_bounds


class TorchattacksAdapter(Attack):
    """Wrap a ``torchattacks.Attack`` instance (its ``model`` is used for the criterion); a
    criterion that needs targets switches it to targeted-by-label mode. torchattacks clamps
    its examples to [0, 1], so a model (an advlab ``Model``) with other bounds is refused.

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
                f"{describe_bounds(self.model.bounds)}; use advlab's attacks for this model"
            )
        self.attack = attack
        if self.criterion.needs_target:
            attack.set_mode_targeted_by_label(quiet=True)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        return self.attack(x, target if target is not None else y)
