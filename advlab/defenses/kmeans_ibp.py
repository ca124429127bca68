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
correlations of its coordinates.

In L2 (``norm="l2"``, and per-feature ``units`` s: the ellipsoid ||(x' - x) / s||_2 <= eps)
the set of v is the ellipsoid with centre m_E and scale s_E of ``interval_bounds``' eq. E where
every layer before the last affine map keeps it one (no network, or only affine layers and
reshaping), and its box otherwise; over the ellipsoid g_ij's minimum is exact,

    min g_ij = 2 [(u_i - u_j).m_E - eps ||(u_i - u_j) * s_E||_2] + gamma_j - gamma_i,   (eq. V2)

and the larger of eq. V2 and eq. V over the box that holds it is taken (without a network
and inside the input box, eq. V2 is exactly the L2 Voronoi radius compared with eps). Written
by hand: no library bounds k-means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from advlab.cluster import KMeansCells, check_mapping, kmeans_cells
from advlab.defenses.interval_bounds import (
    _Box,
    _Ellipsoid,
    _input_set,
    _layers,
    _set_step,
    check_ball,
    input_box,
    penultimate_set,
)
from advlab.models.wrapper import at_least_float32, eval_mode, model_dtype
from advlab.utils.validation import Bounds, BoundsLike, Budget, BudgetLike


def kmeans_is_certified(
    kmeans: Any,
    x: torch.Tensor,
    eps: BudgetLike,
    mapping: Any | None = None,
    features: nn.Module | None = None,
    bounds: BoundsLike | None = None,
    batch_size: int = 512,
    norm: str = "linf",
    units: BudgetLike | None = None,
) -> torch.Tensor:
    """Per input, whether k-means gives every input of the ball of radius ``eps`` around it
    (clipped to ``bounds``; L-inf by eq. V, L2 by eq. V2 too) the class of its own cluster.

    Parameters
    ----------
    kmeans : KMeans, Pipeline, KMeansCells or array of shape (k, D')
        A fitted k-means (alone or behind the affine steps of its pipeline) on the features.
    x : torch.Tensor of shape (N, ...)
        The inputs, inside ``bounds``.
    eps : float or array-like
        Radius, >= 0, in the inputs' units; in L-inf also one per feature (the shape of one
        input, or broadcastable to it).
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
    norm : {"linf", "l2"}, default="linf"
        The ball's norm (``check_ball``); in L2 eps is one number.
    units : array-like or None, default=None
        Per-feature units s_d (>= 0): the box eps * s_d in L-inf, the ellipsoid
        ||(x' - x) / s||_2 <= eps in L2; eps is then one number. None: 1.

    Returns
    -------
    torch.Tensor of bool, shape (N,)
        True where the input is certified.
    """
    eps, units = check_ball(eps, norm, units, x)
    cells = kmeans_cells(kmeans)
    classes = check_mapping(mapping, len(cells.centers))
    box = input_box(nn.Identity() if features is None else features, x, bounds)
    certified = ball_certificate(cells, classes, features, box, norm)
    out = [certified(xb, eps, units) for xb in x.split(batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def ball_certificate(
    cells: KMeansCells,
    classes: torch.Tensor | None,
    features: nn.Module | None,
    box: Bounds,
    norm: str,
) -> Callable[[torch.Tensor, Budget, torch.Tensor | None], torch.Tensor]:
    """``kmeans_is_certified`` on one batch, with the cells, mapping, network, box and norm
    checked by the caller: ``certified(xb, eps, units)`` for inputs xb inside ``box`` and the
    ball's budget and units as ``check_ball`` returns them (units may also hold one row per
    input of xb: each input's own ball). The network's float32 copy is made once, and the last
    layer folded into the cells once."""
    network = nn.Identity() if features is None else features
    bounded = network if features is None else at_least_float32(features)
    folded: list[KMeansCells] = []  # (the same layer for every batch)

    def certified(xb: torch.Tensor, eps: Budget, units: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad(), eval_mode(network), eval_mode(bounded):
            last = None
            value = _input_set(xb.to(model_dtype(bounded)) if features is not None else xb, eps,
                               units, box, norm)  # fmt: skip
            if features is not None:
                value, last = _feature_set(bounded, cells, value)
            if not folded:
                folded.append(cells if last is None else _folded(cells, last))
            own = cells.assign(network(xb).flatten(1).double().cpu())
            return _certified(folded[0], value, own, classes)

    return certified


def _feature_set(
    features: nn.Module, cells: KMeansCells, value: _Box
) -> tuple[_Box, nn.Linear | None]:
    """Bounds through the network to bound eq. V (and V2) over: when it ends in a Linear layer
    on flat inputs (trailing Flatten and Identity aside) whose outputs k-means takes, the
    bounds of that layer's inputs and the layer, to be folded into the cells (the elision of
    the last layer); else the bounds of the network's outputs and None. The network computes
    in float32 or float64 (``at_least_float32``), the input set ``value`` in its dtype."""
    layers = _layers(features)
    while layers and isinstance(layers[-1], (nn.Flatten, nn.Identity)):
        layers = layers[:-1]
    value, last = penultimate_set(layers, value)
    if last is not None and (value.lo.ndim != 2 or last.out_features != cells.n_features):
        value = _set_step(last, value)  # (a Linear on each row of a 3-d tensor, or
        last = None  # outputs k-means does not take)
    return value, last


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
    value: _Box,
    own: torch.Tensor,
    classes: torch.Tensor | None,
) -> torch.Tensor:
    """eq. V for every cluster j of another class than ``own``'s, over the box of ``value``
    (the set of inputs of the cells' affine map), and the larger of it and eq. V2 where
    ``value`` is an ellipsoid. The inputs are taken by own cluster c, whose differences
    u_c - u_j (k x D') make each term one matrix product over the group:
    (u_c - u_j).m = m W^T, |u_c - u_j|.r = r |W|^T and ||(u_c - u_j) * s||_2^2 = s^2 (W^2)^T."""
    lo, hi = value.lo.flatten(1).double().cpu(), value.hi.flatten(1).double().cpu()
    m, r = (hi + lo) / 2, (hi - lo) / 2
    ellipsoid = value if isinstance(value, _Ellipsoid) else None
    if ellipsoid is not None:
        centre = ellipsoid.centre.flatten(1).double().cpu()
        squared = ellipsoid.scale.flatten(1).double().cpu() ** 2
    sites, levels = cells.sites, cells.levels
    bound = torch.empty(len(m), len(sites), dtype=torch.float64)
    for c in own.unique().tolist():
        rows = (own == c).nonzero()[:, 0]
        w = sites[c] - sites  # u_c - u_j, (k, D')
        group = 2 * (m[rows] @ w.T - r[rows] @ w.abs().T)
        if ellipsoid is not None:  # eq. V2
            ball = 2 * (centre[rows] @ w.T - ellipsoid.eps * (squared[rows] @ (w**2).T).sqrt())
            group = torch.maximum(group, ball)
        bound[rows] = group + levels[None, :] - levels[c]
    excluded = torch.zeros_like(bound, dtype=torch.bool)
    excluded.scatter_(1, own[:, None], True)
    if classes is not None:
        excluded |= classes[None, :] == classes[own][:, None]
    return (bound.masked_fill(excluded, float("inf")) > 0).all(1)
