"""PGD against k-means itself (white-box), on the margin of the k-means scores.

With ``advlab.cluster.differentiable.KMeansClassifier`` as the model, the CW margin is

    L(x) = min_{j : m(j) = y} ||x - c_j||^2 - min_{j : m(j) != y} ||x - c_j||^2

(distance to the own class's nearest centre minus distance to the nearest centre of another
class), ascended by PGD; success once L > 0. With ``mapping=None`` every cluster is its own
class and ``y = g(x)`` (the cluster id): the label-free (x, g(x)) attack of Omari et al. §V.

Example::

    atk = KMeansPGD(km, mapping, eps=0.3, max_iter=20)    # km: advlab's or scikit-learn's
    result = atk(images, labels)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.attacks.evasion.base import AttackResult, model_device
from advlab.attacks.evasion.pgd import PGD
from advlab.cluster.cells import kmeans_cells
from advlab.cluster.differentiable import AffineFeatures, KMeansClassifier
from advlab.models.wrapper import Bounds, Model
from advlab.utils.validation import BudgetLike


def kmeans_model(
    kmeans: Any,
    mapping: Any | None,
    bounds: Bounds | None,
    dtype: torch.dtype = torch.float32,
    features: nn.Module | None = None,
) -> Model:
    """A fitted k-means (advlab's or scikit-learn's, a (k, D) array of centres, a pipeline of
    affine steps ending in one, or its ``KMeansCells``) with its cluster -> class ``mapping`` as
    a ``Model`` over ``bounds`` (None: unbounded) of the pipeline's inputs, or of the inputs of
    the torch module ``features`` whose outputs k-means clusters."""
    cells = kmeans_cells(kmeans)
    net: nn.Module = KMeansClassifier(
        cells.centers.numpy(), None if mapping is None else np.asarray(mapping), dtype
    )
    if cells.linear is not None:
        net = nn.Sequential(AffineFeatures(cells.linear, cells.offset, dtype), net)
    if features is not None:
        net = nn.Sequential(features, net.to(model_device(features)))
    return Model(net, bounds=(-np.inf, np.inf) if bounds is None else bounds)


class KMeansPGD(PGD):
    """White-box PGD on k-means itself, through its differentiable nearest-centre classifier
    (the loss is always the margin; eps in input units).

    Parameters
    ----------
    kmeans : KMeans, Pipeline or array of shape (k, D)
        A fitted advlab or scikit-learn KMeans, a fitted Pipeline of affine steps ending in one
        (eps then in its input units), or the centres.
    mapping : array of shape (k,) or None
        Cluster -> class; None attacks the cluster ids themselves.
    eps : float or array-like
        Budget, >= 0 and finite, in input units; in L-inf also one per feature (an array of
        shape (D,), or of one input's shape; 0 where a feature must not move, such as a
        tabular feature the attacker cannot change).
    max_iter : int
        Number of steps, >= 1.
    eps_step : float, array-like or None, default=None
        Step size (one per feature as ``eps``); None means eps / 4.
    norm : {"linf", "l2"}, default="linf"
        The norm of the budget.
    random_start : bool, default=False
        Start uniformly in the eps-ball.
    random_state : int or None, default=None
        Seed of the random start; None draws fresh randomness.
    bounds : (float, float), (array_like, array_like) or None, default=(0.0, 1.0)
        The box of the inputs ((0, 1) for images); None: unbounded.
    batch_size : int, default=256
        Samples per batch.
    features : torch.nn.Module or None, default=None
        A network whose outputs (flattened) k-means clusters, e.g. the embedding of a deep
        clustering: PGD then perturbs the network's inputs, through it (eps in their units);
        its mode and gradient flags are restored after each call. None: k-means clusters the
        inputs (or its pipeline's transform of them).
    units : array-like or None, default=None
        Per-feature units s_d >= 0 (0 freezes a feature), with eps and eps_step in multiples
        of them: the box eps * s_d in L-inf, the ellipsoid ||delta / s||_2 <= eps in L2 (see
        ``PGD``); distances in that weighted norm.
    """

    min_classes = 1  # one cluster (or class): nothing to attack, every point stays

    def __init__(
        self,
        kmeans: Any,
        mapping: Any | None,
        eps: BudgetLike,
        max_iter: int,
        eps_step: BudgetLike | None = None,
        norm: str = "linf",
        random_start: bool = False,
        random_state: int | None = None,
        bounds: Bounds | None = (0.0, 1.0),
        batch_size: int = 256,
        features: nn.Module | None = None,
        units: BudgetLike | None = None,
    ) -> None:
        if features is not None and not isinstance(features, nn.Module):
            raise ValueError(f"features must be a torch.nn.Module, got {type(features).__name__}")
        super().__init__(
            kmeans_model(kmeans, mapping, bounds, features=features), eps, max_iter, eps_step,
            norm, random_start, random_state, "margin", batch_size=batch_size, units=units,
        )  # fmt: skip

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> AttackResult:
        """PGD's result. A class no cluster maps to has the score -inf (eq. A); the classifier's
        scores are widened to cover every label, so that a label above the largest mapped
        class is such a class too, as one between mapped classes is (misclassified as it
        stands, and attacked alike)."""
        labels = torch.as_tensor(y)
        if labels.numel() and not labels.dtype.is_floating_point and labels.ndim == 1:
            classifier = next(m for m in self.model.modules() if isinstance(m, KMeansClassifier))
            classifier.n_classes = max(classifier.n_classes, int(labels.max()) + 1)
        return super().__call__(x, y, target)  # (its checks name any problem with y)
