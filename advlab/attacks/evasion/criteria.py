"""Success criteria, Foolbox 3 style: what counts as a successful adversarial example is an
object passed to the attack, kept out of the attack's search.

A criterion is called as ``criterion(logits, y, target) -> bool tensor (N,)`` on the model's
logits for the adversarial inputs, the true labels ``y`` and the attack's ``target`` (labels
(N,) for targeted attacks, a (N, T) matrix of ranked target labels padded with -1 for K-A3,
or None).
"""

from __future__ import annotations

import torch


class Criterion:
    """Base class; ``needs_target`` says whether ``target`` must be given."""

    needs_target = False

    def __call__(
        self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Misclassification(Criterion):
    """Untargeted: argmax_j f_j(x') != y."""

    def __call__(
        self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        return logits.argmax(1) != y


class TargetedMisclassification(Criterion):
    """Targeted: argmax_j f_j(x') == t (``target`` (N,) holds t)."""

    needs_target = True

    def __call__(
        self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        if target is None:
            raise ValueError("TargetedMisclassification needs target labels")
        return logits.argmax(1) == (target if target.ndim == 1 else target[:, 0])


class TrueLabelRank(Criterion):
    """The true label ranks at position >= ``min_rank`` (1 = top) on x': at least
    ``min_rank - 1`` labels score strictly above y. Mygdalis et al.'s K-A3 condition for
    K-anonymity: rank >= K + 1.

    ``min_rank=None`` reads a per-sample rank from ``target``: a (N, T) matrix of targeted
    labels padded with -1 asks for rank >= (number of valid targets) + 1 (K-A3's groups).

    Parameters
    ----------
    min_rank : int or None, default=None
        Smallest rank (1 = top) the true label must reach, >= 1; None reads it per sample from the
        target matrix.
    """

    def __init__(self, min_rank: int | None = None) -> None:
        if min_rank is not None and (not isinstance(min_rank, int) or min_rank < 1):
            raise ValueError(f"min_rank must be an integer >= 1 or None, got {min_rank!r}")
        self.min_rank = min_rank

    def __call__(
        self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        above = (logits > logits.gather(1, y[:, None])).sum(1)
        if self.min_rank is not None:
            return above >= self.min_rank - 1
        if target is None or target.ndim != 2:
            raise ValueError("TrueLabelRank() without min_rank needs a (N, T) target matrix")
        return above >= (target >= 0).sum(1)

    def __repr__(self) -> str:
        return f"TrueLabelRank(min_rank={self.min_rank})"
