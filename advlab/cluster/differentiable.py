"""A fitted k-means as a differentiable torch classifier, so gradient attacks can target it.

k-means assigns x to its nearest centre; with a cluster-to-class ``mapping`` it predicts
class m(argmin_j ||x - c_j||). The module returns one score per class,

    s_c(x) = - min_{j : m(j) = c} ||x - c_j||^2        (eq. A)

so ``argmax_c s_c(x)`` is exactly the k-means prediction, and the CW margin on these scores is
``||x - c_own||^2 - min_{j : m(j) != y} ||x - c_j||^2``, the distance to the nearest centre of
another class minus the distance to the nearest centre of the own class. With the identity
mapping (one "class" per cluster) it is the label-free variant (x, g(x)) of Omari et al.
Classes that no cluster maps to score -inf.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class KMeansClassifier(nn.Module):
    """Scores (eq. A) of a k-means with centres (k, D) and mapping (k,) -> class, computed in
    ``dtype`` (float32 for gradient attacks, float64 for exact decisions)."""

    centers: torch.Tensor
    mapping: torch.Tensor

    def __init__(
        self,
        centers: np.ndarray | torch.Tensor,
        mapping: np.ndarray | torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        c = torch.as_tensor(np.asarray(centers), dtype=dtype)
        m = (
            torch.arange(len(c))
            if mapping is None
            else torch.as_tensor(np.asarray(mapping), dtype=torch.int64)
        )
        if m.shape != (len(c),):
            raise ValueError(f"mapping must have shape ({len(c)},), got {tuple(m.shape)}")
        if int(m.min()) < 0:
            raise ValueError("every cluster must map to a class (no -1 entries)")
        self.register_buffer("centers", c)
        self.register_buffer("mapping", m)
        self.n_classes = int(m.max()) + 1

    def sq_distances(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1).to(self.centers.dtype)
        if flat.shape[1] != self.centers.shape[1]:
            raise ValueError(
                f"k-means takes {self.centers.shape[1]} features per sample, got {flat.shape[1]}"
            )
        return (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.centers.T
            + self.centers.pow(2).sum(1)
        ).clamp(min=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        neg = -self.sq_distances(x)
        scores = torch.full(
            (len(x), self.n_classes), float("-inf"), device=x.device, dtype=neg.dtype
        )
        index = self.mapping.expand(len(x), -1)
        return scores.scatter_reduce(1, index, neg, "amax", include_self=True)


class AffineFeatures(nn.Module):
    """f(x) = A x + b on flattened inputs: the affine steps of a pipeline before its k-means
    (``advlab.cluster.cells``), so that attacks perturb the pipeline's inputs."""

    linear: torch.Tensor
    offset: torch.Tensor

    def __init__(
        self,
        linear: np.ndarray | torch.Tensor,
        offset: np.ndarray | torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        a = torch.as_tensor(np.asarray(linear), dtype=dtype)
        b = (
            torch.zeros(len(a), dtype=dtype)
            if offset is None
            else torch.as_tensor(np.asarray(offset), dtype=dtype)
        )
        self.register_buffer("linear", a)
        self.register_buffer("offset", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).to(self.linear.dtype) @ self.linear.T + self.offset
