"""Certified L-inf robustness of a k-means on a network's features (deep clustering), by
interval bound propagation through the network and the exact bound of each Voronoi half-space
over the resulting box.

For the ball B = {x' : ||x' - x||_inf <= eps} ∩ [lo, hi]^D, IBP (``interval_bounds``) bounds
the features f(x') of every x' in B by the box [l, u] (centre m, radius r); the affine steps of
the k-means' pipeline, if any, map it to the box A m + b ± |A| r. Let c_i be the nearest centre
of f(x). Every z of the box is closer to c_i than to c_j iff

    g_ij(z) = ||z - c_j||^2 - ||z - c_i||^2 = 2 z.(c_i - c_j) + ||c_j||^2 - ||c_i||^2 > 0,

linear in z, so its minimum over the box is attained at a vertex:

    min g_ij = 2 [(c_i - c_j).m - |c_i - c_j|.r] + ||c_j||^2 - ||c_i||^2          (eq. V)

and x is certified when eq. V is > 0 for every cluster j of another class (every other cluster
without a mapping): no x' in B changes the class k-means gives x. Sound, since both steps
over-approximate; without a network it is exactly the boxed Voronoi radius of
``kmeans_certified_radius`` compared with eps. Written by hand: no library bounds k-means.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advlab.cluster import KMeansCells, check_mapping, kmeans_cells
from advlab.defenses.interval_bounds import input_box, interval_bounds
from advlab.models.wrapper import eval_mode
from advlab.utils.validation import check_number


def kmeans_is_certified(
    kmeans: Any,
    x: torch.Tensor,
    eps: float,
    mapping: Any | None = None,
    features: nn.Module | None = None,
    bounds: tuple[float, float] | None = None,
    batch_size: int = 512,
) -> torch.Tensor:
    """Per input, whether k-means gives every input of the L-inf ball of radius ``eps`` around
    it (clipped to ``bounds``) the class of its own cluster (eq. V).

    Parameters
    ----------
    kmeans : KMeans, Pipeline, KMeansCells or array of shape (k, D')
        A fitted k-means (alone or behind the affine steps of its pipeline) on the features.
    x : torch.Tensor of shape (N, ...)
        The inputs, inside ``bounds``.
    eps : float
        L-inf radius, >= 0, in the inputs' units.
    mapping : array of shape (k,) or None, default=None
        Cluster -> class; None: the cluster itself must not change.
    features : torch.nn.Module or None, default=None
        The network whose (flattened) outputs k-means clusters, bounded by IBP (see
        ``interval_bounds`` for the layers it takes); None: k-means clusters the inputs.
    bounds : (float, float) or None, default=None
        The input box; None: the ``Model``'s bounds, (0, 1) for a bare module or no network.
    batch_size : int, default=512
        Inputs per batch (memory, not results).

    Returns
    -------
    torch.Tensor of bool, shape (N,)
        True where the input is certified.
    """
    eps = check_number("eps", eps, 0.0)
    cells = kmeans_cells(kmeans)
    classes = check_mapping(mapping, len(cells.centers))
    network = nn.Identity() if features is None else features
    lo, hi = input_box(network, x, bounds)
    out = []
    with torch.no_grad(), eval_mode(network):
        for xb in x.split(batch_size):
            lower, upper = (xb - eps).clamp(lo, hi), (xb + eps).clamp(lo, hi)
            if features is not None:
                lower, upper = interval_bounds(features, lower, upper)
            own = cells.assign(network(xb).flatten(1).double().cpu())
            out.append(_certified(cells, lower, upper, own, classes))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def _certified(
    cells: KMeansCells,
    lower: torch.Tensor,
    upper: torch.Tensor,
    own: torch.Tensor,
    classes: torch.Tensor | None,
) -> torch.Tensor:
    """eq. V for every cluster j of another class than ``own``'s, over the feature box
    [lower, upper] (mapped through the cells' affine steps), in chunks of about 2**24 numbers."""
    lo, hi = lower.flatten(1).double().cpu(), upper.flatten(1).double().cpu()
    m, r = (hi + lo) / 2, (hi - lo) / 2
    if cells.linear is not None:  # the pipeline's affine steps: an exact box of the box's image
        m, r = cells.features(m), r @ cells.linear.abs().T
    c = cells.centers
    sq = c.pow(2).sum(1)
    rows = max(1, 2**24 // c.numel())
    out = []
    for s in range(0, len(m), rows):
        i = own[s : s + rows]
        w = c[i][:, None, :] - c[None, :, :]  # c_i - c_j, (n, k, D'')
        ms, rs = m[s : s + rows, None, :], r[s : s + rows, None, :]
        bound = 2 * ((w * ms).sum(-1) - (w.abs() * rs).sum(-1)) + sq[None, :] - sq[i][:, None]
        excluded = torch.zeros_like(bound, dtype=torch.bool)
        excluded.scatter_(1, i[:, None], True)
        if classes is not None:
            excluded |= classes[None, :] == classes[i][:, None]
        out.append((bound.masked_fill(excluded, float("inf")) > 0).all(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)
