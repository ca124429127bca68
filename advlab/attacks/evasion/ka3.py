"""K-A3, the K-anonymity-inspired adversarial attack of Mygdalis, Tefas & Pitas (2020), eq. (7):

    min_n  c * ( ||n||_2 + lambda * (1 - CW-SSIM(x, x + n)) ) + sum_{i=2..k} L_f(f(x + n), r_(i)),

subject to x + n in [0, 1]^D, where r_(i) is the label ranked i-th by the model on the clean x
and L_f the cross-entropy. The N samples are split into K groups of N/K; group g = 1..K uses
k = g + 1, i.e. targets the labels ranked 2..g+1 and succeeds when every one of them ranks
above the true label y on x + n. The true label then sits at position >= g + 1, so over the K
groups it is spread over positions 2..K+1 and no position recovers it with probability above
1/K: condition (6), K-anonymity of the labels along the whole ranking.

As in L-BFGS, the constant c (which eq. (7) fixes to 1) is searched per sample (doubled while
the rank constraint holds, then bisected) to find the smallest perturbation; it multiplies
the whole distortion term, L2 norm plus lambda times the CW-SSIM dissimilarity (lambda =
``ssim_weight``, 1 in eq. (7)). With K = 1 and ``ssim_weight = 0`` the objective is exactly
L-BFGS's with the 2nd-ranked target; only the success criterion differs: K-A3 asks for the true
label at rank >= g + 1 (``TrueLabelRank``, condition (6)),
L-BFGS for the target ranked first; the two coincide for K = 1 unless a third label overtakes
both.

Example::

    result = KA3(model, K=5)(images, labels)
    result.group          # k - 1 for each sample
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from advlab.attacks.evasion.base import AttackResult, model_device
from advlab.attacks.evasion.criteria import TrueLabelRank
from advlab.attacks.evasion.lbfgs import LBFGS
from advlab.metrics.image import cw_ssim
from advlab.utils.validation import check_number

PLACEMENTS = ("distortion", "separate")
SELECTIONS = ("l2", "objective")


@dataclass
class KA3Result(AttackResult):
    """``AttackResult`` with the group of each sample.

    Attributes
    ----------
    group : torch.Tensor of shape (N,) or None
        g = 1..K, the number of ranked labels pushed above y per sample.
    """

    group: torch.Tensor | None = None


class KA3(LBFGS):
    """K-anonymity inspired attack, K-A3 (Mygdalis et al., eq. 7). The criterion is
    ``TrueLabelRank``: sample i of group g succeeds when its true
    label ranks at position >= g + 1 on x + n. Images (N, C, H, W) with any C: the CW-SSIM
    term is the mean over channels (see ``advlab.metrics.cw_ssim``).

    Parameters
    ----------
    model : Model or torch.nn.Module
        The classifier: an ``Model`` (module, input bounds,
        preprocessing) or a bare module, read as bounds (0, 1) and no preprocessing.
    K : int, default=5
        Anonymity level: the number of groups, >= 1.
    ssim_weight : float, default=1.0
        lambda of the 1 - CW-SSIM term, finite and >= 0 (0 drops it).
    ssim_placement : {"distortion", "separate"}, default="distortion"
        Where the term enters: inside the distortion that c multiplies, as in eq. (7)
        (c (||n||_2 + lambda (1 - CW-SSIM))), or as its own term outside c
        (c ||n||_2 + lambda (1 - CW-SSIM)), so that the c search cannot scale it away.
    select_by : {"l2", "objective"}, default="l2"
        How the c search picks its best successful example: the smallest ||n||_2 (as L-BFGS),
        or the smallest ||n||_2 + lambda (1 - CW-SSIM), the distortion eq. (7) minimises.
    **search
        The c search and L-BFGS-B settings of ``LBFGS`` (``initial_const``,
        ``doublings``, ``bisections``, ``max_iter``, ``batch_size``).
    """

    def __init__(
        self,
        model: nn.Module,
        K: int = 5,
        ssim_weight: float = 1.0,
        ssim_placement: str = "distortion",
        select_by: str = "l2",
        **search: Any,
    ) -> None:
        super().__init__(model, criterion=TrueLabelRank(), **search)
        self.K = int(check_number("K", K, 1, integer=True))
        self.ssim_weight = check_number("ssim_weight", ssim_weight, 0.0)
        if ssim_placement not in PLACEMENTS:
            raise ValueError(f"ssim_placement={ssim_placement!r}: use one of {PLACEMENTS}")
        if select_by not in SELECTIONS:
            raise ValueError(f"select_by={select_by!r}: use one of {SELECTIONS}")
        self.ssim_placement, self.select_by = ssim_placement, select_by

    @staticmethod
    def split_groups(n: int, K: int) -> torch.Tensor:
        """Group g = 1..K of each of n samples: K contiguous blocks of (about) n/K samples."""
        return torch.arange(n) * K // max(n, 1) + 1

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, group: torch.Tensor | None = None
    ) -> KA3Result:
        """``group`` (values 1..K) defaults to ``split_groups``; pass a permutation of it to
        assign groups at random."""
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or len(x) == 0:
            raise ValueError("x must be a non-empty tensor of shape (N, ...)")
        group = self.split_groups(len(x), self.K) if group is None else torch.as_tensor(group)
        if group.shape != (len(x),) or int(group.min()) < 1 or int(group.max()) > self.K:
            raise ValueError(f"group must have shape ({len(x)},) with values in 1..{self.K}")
        n_classes = self._n_classes(x, model_device(self.model))
        if self.K + 1 > n_classes:
            raise ValueError(
                f"K = {self.K} needs at least K + 1 = {self.K + 1} classes, model has {n_classes}"
            )
        if self.ssim_weight > 0 and (x.ndim != 4 or min(self._nchw(x).shape[-2:]) < 7):
            raise ValueError(
                "the CW-SSIM term needs images of at least 7 x 7, (N, C, H, W) or (N, H, W, C) "
                f"with preprocessing axis -1, got {tuple(x.shape)}"
            )
        ranked = self._ranked_labels(x, positions=slice(1, self.K + 1))  # r_(2) .. r_(K+1)
        columns = torch.arange(self.K)[None, :]
        targets = torch.where(columns < group[:, None], ranked, torch.full_like(ranked, -1))
        result = super().__call__(x, y, targets)
        return KA3Result(result.x_adv, result.success, result.pred, result.distances, group)

    def _nchw(self, x: torch.Tensor) -> torch.Tensor:
        """Images with their channels on axis 1 (the model's preprocessing ``axis`` names where
        they are: -1 for channels-last images)."""
        return x.movedim(self.model.axis, 1) if x.ndim == 4 else x

    def _dissimilarity(self, x: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
        """lambda (1 - CW-SSIM(x, x + n)) per sample, on the images' channels."""
        return self.ssim_weight * (1.0 - cw_ssim(self._nchw(x), self._nchw(xa)))

    def _distortion(self, x: torch.Tensor, xa: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        norm = super()._distortion(x, xa, n)
        if self.ssim_weight == 0 or self.ssim_placement != "distortion":
            return norm
        return norm + self._dissimilarity(x, xa)

    def _penalty(self, x: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
        if self.ssim_weight == 0 or self.ssim_placement != "separate":
            return super()._penalty(x, xa)
        return self._dissimilarity(x, xa)

    def _selection_size(self, x: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
        size = super()._selection_size(x, xa)
        if self.ssim_weight == 0 or self.select_by == "l2":
            return size
        return size + self._dissimilarity(x, xa)
