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

from torch import nn

from advlab.attacks.evasion.criteria import Criterion
from advlab.attacks.evasion.pgd import PGD


class IFGSM(PGD):
    """Args: model; eps (>= 0, in ``eps_units``); max_iter (number of steps, required);
    eps_step (step size in the same units; default eps / 4); eps_units ``"pixel"`` or
    ``"standardized"``; early_stop; criterion; batch_size.

    PGD in L-inf with cross-entropy and no random start (see :class:`PGD`)."""

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        max_iter: int,
        eps_step: float | None = None,
        eps_units: str = "pixel",
        early_stop: bool = False,
        criterion: Criterion | None = None,
        batch_size: int = 256,
    ) -> None:
        super().__init__(
            model, eps, max_iter, eps_step, norm="linf", random_start=False, random_state=0,
            loss="ce", eps_units=eps_units, criterion=criterion, batch_size=batch_size,
            early_stop=early_stop,
        )  # fmt: skip


BIM = IFGSM
