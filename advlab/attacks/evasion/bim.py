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
from advlab.utils.validation import BudgetLike


class IFGSM(PGD):
    """Iterative FGSM (Kurakin et al. 2017): PGD in L-inf with cross-entropy and no random
    start (see ``PGD``).

    Parameters
    ----------
    model : Model or torch.nn.Module
        The classifier: an ``Model`` (module, input bounds,
        preprocessing) or a bare module, read as bounds (0, 1) and no preprocessing.
    eps : float or array-like
        L-inf budget, >= 0 and finite, in ``eps_units``; or one per feature (an array of the
        shape of one input, or broadcastable to it; 0 where a feature must not move).
    max_iter : int
        Number of steps, >= 1.
    eps_step : float, array-like or None, default=None
        Step size in ``eps_units`` (one per feature as ``eps``); None means eps / 4.
    eps_units : {"pixel", "standardized"}, default="pixel"
        Unit of ``eps`` and ``eps_step``: input units, or multiples of the model's per-channel
        input std (``Model.input_std``).
    early_stop : bool, default=False
        Stop moving a sample once the criterion holds.
    criterion : Criterion or None, default=None
        When a sample counts as adversarial; None means
        ``Misclassification``.
    batch_size : int, default=256
        Samples per batch (memory, not results).
    units : array-like or None, default=None
        Per-feature units s_d >= 0 (0 freezes a feature), with eps and eps_step in multiples
        of them: the box eps * s_d (see ``PGD``).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: BudgetLike,
        max_iter: int,
        eps_step: BudgetLike | None = None,
        eps_units: str = "pixel",
        early_stop: bool = False,
        criterion: Criterion | None = None,
        batch_size: int = 256,
        units: BudgetLike | None = None,
    ) -> None:
        super().__init__(
            model, eps, max_iter, eps_step, norm="linf", random_start=False, random_state=0,
            loss="ce", eps_units=eps_units, criterion=criterion, batch_size=batch_size,
            early_stop=early_stop, units=units,
        )  # fmt: skip


BIM = IFGSM
