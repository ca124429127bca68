"""Certified L-inf robustness of a k-means on a network's features (deep clustering), by
interval bound propagation through the network and the exact bound of each Voronoi half-space
over the resulting box.

For the ball B = {x' : ||x' - x||_inf <= eps} ∩ [lo, hi]^D, IBP (``interval_bounds``) bounds
the inputs v of the last affine map before k-means by the box [l, u] (centre m, radius r).
That map, z = A v + b, is the pipeline's affine steps with, when the network ends in a Linear
layer, that layer folded in (its weights and bias: the elision of the last layer, Gowal et al.
2018, section 3); without a network v is the input itself. Let c_i be the nearest centre of
x's features. Every z = A v + b is closer to c_i than to c_j iff

    g_ij(v) = ||z - c_j||^2 - ||z - c_i||^2 = 2 v.(u_i - u_j) + gamma_j - gamma_i > 0,

with the sites u_j = A^T c_j and levels gamma_j = ||c_j||^2 - 2 c_j.b of ``KMeansCells``
(eq. P); g_ij is linear in v, so its minimum over the box is attained at a vertex:

    min g_ij = 2 [(u_i - u_j).m - |u_i - u_j|.r] + gamma_j - gamma_i                    (eq. V)

and x is certified when eq. V is > 0 for every cluster j of another class (every other cluster
without a mapping): no x' in B changes the class k-means gives x. Sound, since the box holds
every v of B and eq. V is exact over it; without a network it is exactly the boxed Voronoi
radius of ``kmeans_certified_radius`` compared with eps (u = c, gamma = ||c||^2). Bounding v
rather than the box of the features z is tighter: the box of an affine image loses the
correlations of its coordinates. Written by hand: no library bounds k-means.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advlab.cluster import KMeansCells, check_mapping, kmeans_cells
from advlab.defenses.interval_bounds import _layers, _propagate, input_box, penultimate_bounds
from advlab.models.wrapper import at_least_float32, eval_mode, model_dtype
from advlab.utils.validation import BoundsLike, BudgetLike, budget_on, check_input_budget, clip


def kmeans_is_certified(
    kmeans: Any,
    x: torch.Tensor,
    eps: BudgetLike,
    mapping: Any | None = None,
    features: nn.Module | None = None,
    bounds: BoundsLike | None = None,
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
    eps : float or array-like
        L-inf radius, >= 0, in the inputs' units; or one per feature (the shape of one input,
        or broadcastable to it).
    mapping : array of shape (k,) or None, default=None
        Cluster -> class; None: the cluster itself must not change.
    features : torch.nn.Module or None, default=None
        The network whose (flattened) outputs k-means clusters, bounded by IBP (see
        ``interval_bounds`` for the layers it takes); None: k-means clusters the inputs.
    bounds : (float, float), (array_like, array_like) or None, default=None
        The input box, two numbers or one box per feature; None: the ``Model``'s bounds,
        (0, 1) for a bare module or no network.
    batch_size : int, default=512
        Inputs per batch (memory, not results).

    Returns
    -------
    torch.Tensor of bool, shape (N,)
        True where the input is certified.
    """
    eps = check_input_budget("eps", eps, x)
    cells = kmeans_cells(kmeans)
    classes = check_mapping(mapping, len(cells.centers))
    network = nn.Identity() if features is None else features
    box = input_box(network, x, bounds)
    out: list[torch.Tensor] = []
    folded: KMeansCells | None = None
    with torch.no_grad(), eval_mode(network):
        for xb in x.split(batch_size):
            half_widths = budget_on(eps, xb)
            lower = clip(xb - half_widths, box, outward=True)  # (a box holding xb itself)
            upper = clip(xb + half_widths, box, outward=True)
            last = None
            if features is not None:
                lower, upper, last = _feature_box(features, cells, lower, upper)
            if folded is None:  # the same layer for every batch: folded once
                folded = cells if last is None else _folded(cells, last)
            own = cells.assign(network(xb).flatten(1).double().cpu())
            out.append(_certified(folded, lower, upper, own, classes))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def _feature_box(
    features: nn.Module, cells: KMeansCells, lower: torch.Tensor, upper: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, nn.Linear | None]:
    """Interval bounds through the network to bound eq. V over: when it ends in a Linear layer
    on flat inputs (trailing Flatten and Identity aside) whose outputs k-means takes, the
    bounds of that layer's inputs and the layer, to be folded into the cells (the elision of
    the last layer); else the bounds of the network's outputs and None."""
    model = at_least_float32(features)
    layers = _layers(model)
    while layers and isinstance(layers[-1], (nn.Flatten, nn.Identity)):
        layers = layers[:-1]
    dtype = model_dtype(model)
    lo, hi, last = penultimate_bounds(layers, lower.to(dtype), upper.to(dtype))
    if last is not None and (lo.ndim != 2 or last.out_features != cells.n_features):
        lo, hi = _propagate(last, lo, hi)  # (a Linear on each row of a 3-d tensor, or
        last = None  # outputs k-means does not take)
    return lo, hi, last


def _folded(cells: KMeansCells, last: nn.Linear) -> KMeansCells:
    """The cells behind ``last`` folded into their affine map: z = A (W a + c) + b."""
    weight = last.weight.detach().double().cpu()
    bias = (
        torch.zeros(len(weight), dtype=torch.float64)
        if last.bias is None
        else last.bias.detach().double().cpu()
    )
    linear = weight if cells.linear is None else cells.linear @ weight
    offset = bias if cells.linear is None else cells.linear @ bias
    if cells.offset is not None:
        offset = offset + cells.offset
    return KMeansCells(cells.centers, linear, offset)


def _certified(
    cells: KMeansCells,
    lower: torch.Tensor,
    upper: torch.Tensor,
    own: torch.Tensor,
    classes: torch.Tensor | None,
) -> torch.Tensor:
    """eq. V for every cluster j of another class than ``own``'s, over the box [lower, upper]
    of the inputs of the cells' affine map, in chunks of about 2**24 numbers."""
    lo, hi = lower.flatten(1).double().cpu(), upper.flatten(1).double().cpu()
    m, r = (hi + lo) / 2, (hi - lo) / 2
    sites, levels = cells.sites, cells.levels
    rows = max(1, 2**24 // sites.numel())
    out = []
    for s in range(0, len(m), rows):
        i = own[s : s + rows]
        w = sites[i][:, None, :] - sites[None, :, :]  # u_i - u_j, (n, k, D)
        ms, rs = m[s : s + rows, None, :], r[s : s + rows, None, :]
        bound = (
            2 * ((w * ms).sum(-1) - (w.abs() * rs).sum(-1)) + levels[None, :] - levels[i][:, None]
        )
        excluded = torch.zeros_like(bound, dtype=torch.bool)
        excluded.scatter_(1, i[:, None], True)
        if classes is not None:
            excluded |= classes[None, :] == classes[i][:, None]
        out.append((bound.masked_fill(excluded, float("inf")) > 0).all(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)
