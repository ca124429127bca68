"""PGD against k-means itself (white-box), on the margin of the k-means scores.

With :class:`advlab.cluster.differentiable.KMeansClassifier` as the model, the CW margin is

    L(x) = min_{j : m(j) = y} ||x - c_j||^2 - min_{j : m(j) != y} ||x - c_j||^2

(distance to the own class's nearest centre minus distance to the nearest centre of another
class), ascended by PGD; success once L > 0. With ``mapping=None`` every cluster is its own
class and ``y = g(x)`` (the cluster id): the label-free (x, g(x)) attack of Omari et al. §V.

Example::

    atk = KMeansPGD(km, mapping, eps=0.3, max_iter=20)
    result = atk(images, labels)
"""

from __future__ import annotations

import numpy as np

from advlab.attacks.evasion.base import MNIST_PIXEL_STD
from advlab.attacks.evasion.pgd import PGD
from advlab.cluster.differentiable import KMeansClassifier


class KMeansPGD(PGD):
    """Args: centers (k, D) or a fitted KMeans; mapping (k,) cluster -> class or None; then
    the arguments of :class:`PGD` (the loss is always the margin)."""

    def __init__(
        self,
        centers: object,
        mapping: object | None,
        eps: float,
        max_iter: int,
        eps_step: float | None = None,
        norm: str = "linf",
        random_start: bool = False,
        random_state: int | None = None,
        eps_units: str = "pixel",
        pixel_std: float = MNIST_PIXEL_STD,
        batch_size: int = 256,
    ) -> None:
        c = np.asarray(getattr(centers, "cluster_centers_", centers))
        super().__init__(
            KMeansClassifier(c, None if mapping is None else np.asarray(mapping)),
            eps, max_iter, eps_step, norm, random_start, random_state, "margin", eps_units, pixel_std,
            targeted=False, batch_size=batch_size,
        )  # fmt: skip
