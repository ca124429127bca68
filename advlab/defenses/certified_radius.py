"""Certified L-inf (and, by linear bounds, L2) radii, by bisection on a sound certificate.

A certificate C(x, eps) that holds only where every input of the eps-box around x keeps its
class (interval bounds, linear bounds) gives each input the certified radius

    r(x) = max {eps in [0, eps_max] : C(x, eps)}                                   (eq. B)

found by bisection: C at eps_max first (r = eps_max, "at least", where it holds), then halving
[lo, hi] with lo always an eps that C proved (0 at the start) until hi - lo <= tol * eps_max.
The radius returned is lo, an eps the certificate itself proved, so it is sound even where C
is not monotone in eps; where C is monotone (a larger box gives looser bounds) it is within
tol * eps_max below the largest certified eps; 0 where no positive eps is certified
(misclassified inputs among them). Interval bounds bisect a batch of inputs together, each
probe bounding every input still searching at its own eps: the ball of radius eps_i in units s
is the ball of radius 1 in units eps_i * s, so one pass of the network takes one radius per
input, and the probes are those of one input at a time. With per-feature units ``scale`` the box at eps is
|x'_d - x_d| <= eps * s_d, and the radius is in the weighted norm max_d |delta_d| / s_d. With
``norm="l2"`` the ball at eps is ||(x' - x) / s||_2 <= eps (``is_certified_linear`` or
``is_certified`` with ``norm="l2"``), and the radius is an L2 one.

For a classifier (``certified_radius``) C is ``is_certified`` (interval bounds) or
``is_certified_linear`` (linear bounds); for a k-means on the inputs, behind affine steps or on
a network's features (``kmeans_certified_radius_through``) it is ``kmeans_is_certified`` or
``kmeans_is_certified_linear``, whose radius without a network and with ``mapping=None`` is
the boxed Voronoi radius (``kmeans_certified_radius``). Written by hand: the bisection is
short, and the certificates are advlab's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.attacks.evasion.base import check_norm
from advlab.cluster import check_mapping, kmeans_cells
from advlab.defenses.interval_bounds import _labels, _margin_bounds, input_box
from advlab.defenses.kmeans_ibp import ball_certificate
from advlab.defenses.kmeans_milp import _Problem
from advlab.defenses.milp_verification import (
    _checked,
    _layer_bounds,
    _margin_lower,
    linear_input_set,
)
from advlab.models.wrapper import at_least_float32
from advlab.utils.progress import progress
from advlab.utils.validation import (
    BoundsLike,
    BudgetLike,
    check_budget_shape,
    check_number,
    check_units,
    flat_bounds,
    flat_budget,
)

METHODS = ("linear", "interval")


Certificate = Callable[[np.ndarray, np.ndarray], np.ndarray]


def bisect_radius(
    certified: Certificate, n: int, eps_max: float, tol: float, desc: str, batch_size: int = 1
) -> np.ndarray:
    """Eq. B for inputs 0..n-1 of the certificate ``certified(index, eps)``, ``batch_size``
    inputs at a time: every probe asks the certificate about the inputs of the batch still
    searching, each at its own eps (the probes of one input at a time, in fewer calls).

    Parameters
    ----------
    certified : callable
        ``certified(index, eps)``: for the inputs ``index`` (int array) and one radius each
        (``eps``, float64 array of the same length), a bool array: whether the certificate
        proves each input at its radius.
    n : int
        The number of inputs.
    eps_max : float
        The largest radius searched (> 0).
    tol : float
        The bisection stops when hi - lo <= tol * eps_max.
    desc : str
        The progress bar's label.
    batch_size : int, default=1
        Inputs bisected together (memory, not results).

    Returns
    -------
    ndarray of shape (n,), float64
        The radii (eps_max where the certificate holds at eps_max).
    """
    out = np.zeros(n)
    for start in progress(range(0, n, batch_size), desc=desc, total=-(-n // batch_size)):
        index = np.arange(start, min(start + batch_size, n))
        lo, hi = np.zeros(len(index)), np.full(len(index), float(eps_max))
        lo[np.asarray(certified(index, hi), dtype=bool)] = eps_max  # (then hi - lo = 0)
        searching = hi - lo > tol * eps_max
        while searching.any():
            mid = 0.5 * (lo[searching] + hi[searching])
            held = np.asarray(certified(index[searching], mid), dtype=bool)
            lo[searching] = np.where(held, mid, lo[searching])
            hi[searching] = np.where(held, hi[searching], mid)
            searching = hi - lo > tol * eps_max
        out[index] = lo
    return out


def _one_at_a_time(certified: Callable[[int, float], bool]) -> Certificate:
    """A certificate of one input at one radius as ``bisect_radius`` calls it."""

    def batch(index: np.ndarray, eps: np.ndarray) -> np.ndarray:
        pairs = zip(index, eps, strict=True)
        return np.array([certified(int(i), float(e)) for i, e in pairs], dtype=bool)

    return batch


def _ball_units(eps: np.ndarray, units: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Per input i the units eps_i * s (float64; shape (len(eps), ...) broadcasting to x's
    inputs): its ball of radius eps_i in units s (the box eps_i * s_d in L-inf, the ellipsoid
    ||delta / s||_2 <= eps_i in L2) is the ball of radius 1 in these units."""
    radii = torch.as_tensor(eps, dtype=torch.float64).reshape(-1, *[1] * (x.ndim - 1))
    return radii * units


def _search_checks(eps_max: Any, tol: Any, method: str, norm: str = "linf") -> tuple[float, float]:
    """``eps_max`` (> 0, finite), ``tol`` (in (0, 1)), ``method`` and ``norm`` checked."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: use one of {METHODS}")
    check_norm(norm)
    eps_max = check_number("eps_max", eps_max, 0.0, low_open=True)
    tol = check_number("tol", tol, 0.0, 1.0, low_open=True)
    return eps_max, tol


def _units(scale: BudgetLike | None, x: torch.Tensor) -> torch.Tensor | float:
    """The box's half-widths at eps = 1: 1, or the per-feature ``scale`` (``check_units``,
    float64) checked against one input of x."""
    if scale is None:
        return 1.0
    units = check_units("scale", scale)
    check_budget_shape("scale", units, tuple(x.shape[1:]))
    return units.double() if isinstance(units, torch.Tensor) else units


def certified_radius(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_max: float,
    method: str = "linear",
    scale: BudgetLike | None = None,
    tol: float = 1e-3,
    norm: str = "linf",
    batch_size: int = 512,
) -> np.ndarray:
    """Per input, its certified radius (eq. B) under linear (``is_certified_linear``) or
    interval (``is_certified``) bounds, inside the model's bounds: L-inf or L2.

    Parameters
    ----------
    model : torch.nn.Module
        An advlab ``Model`` or a bare network (bounds (0, 1)); affine layers and ReLUs for
        ``method="linear"``, the layers ``interval_bounds`` takes for "interval".
    x : torch.Tensor of shape (N, ...)
        Inputs inside the model's bounds.
    y : torch.Tensor of shape (N,)
        Their labels.
    eps_max : float
        The largest radius searched, > 0, in input units (in units of ``scale``).
    method : {"linear", "interval"}, default="linear"
        The certificate.
    scale : float, array-like or None, default=None
        Per-feature units (the shape of one input, or broadcastable to it; 0 freezes a
        feature): the box at eps is eps * scale_d (in L2 the ellipsoid
        ||delta / scale||_2 <= eps); None: the plain ball.
    tol : float, default=1e-3
        Bisection tolerance, relative to eps_max, in (0, 1).
    norm : {"linf", "l2"}, default="linf"
        The norm of the radius.
    batch_size : int, default=512
        Inputs bisected together by interval bounds (memory, not results); linear bounds
        solve one input at a time.

    Returns
    -------
    ndarray of shape (N,), float64
        The radii: eps_max where certified at eps_max, 0 where at no positive eps.
    """
    eps_max, tol = _search_checks(eps_max, tol, method, norm)
    batch_size = int(check_number("batch_size", batch_size, 1, integer=True))
    desc = f"certified radius ({method})"
    if method == "linear":
        linear = _linear_certificate(model, x, y, scale, norm)
        return bisect_radius(_one_at_a_time(linear), len(x), eps_max, tol, desc)
    interval = _interval_certificate(model, x, y, scale, norm)
    return bisect_radius(interval, len(x), eps_max, tol, desc, batch_size)


def _linear_certificate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale: BudgetLike | None, norm: str
) -> Callable[[int, float], bool]:
    """``is_certified_linear`` of input i at eps (box eps * scale, or in L2 its ellipsoid),
    its network's chain read once: every linear lower bound of z_y - z_j above 0 (never for a
    misclassified input)."""
    wrapped, x, y, _, chain, logits, activations = _checked(model, x, y, 0.0, smooth=True)
    widths = flat_budget(_units(scale, x), tuple(x.shape[1:]))
    bounds = flat_bounds(wrapped.bounds, tuple(x.shape[1:]))
    flat = x.reshape(len(x), -1).double().cpu().numpy()
    correct = (logits.argmax(1) == y.cpu()).numpy()

    def certified(i: int, eps: float) -> bool:
        if not correct[i]:
            return False
        lo, hi, ball = linear_input_set(flat[i], eps, widths, bounds, norm)
        layers = _layer_bounds(chain, lo, hi, "linear", ball, activations)
        low = _margin_lower(chain, layers, lo, hi, int(y[i]), ball, activations)
        return bool(np.all(low > 0))

    return certified


def _interval_certificate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale: BudgetLike | None, norm: str
) -> Certificate:
    """``is_certified`` of the inputs ``index``, each at its own eps (box eps * scale, or in L2
    its ellipsoid: ``_ball_units``), the box, units and labels checked once."""
    network = at_least_float32(model)
    box = input_box(network, x, None)
    labels = _labels(network, x, y)
    units = _units(scale, x)

    def certified(index: np.ndarray, eps: np.ndarray) -> np.ndarray:
        rows = torch.as_tensor(index, device=x.device)
        with torch.no_grad():
            margins = _margin_bounds(network, x[rows], labels[rows], 1.0, box, norm,
                                     _ball_units(eps, units, x))  # fmt: skip
        margins = margins.scatter(1, labels[rows, None], float("inf"))
        return (margins > 0).all(1).cpu().numpy()

    return certified


def kmeans_certified_radius_through(
    kmeans: Any,
    x: torch.Tensor,
    eps_max: float,
    mapping: Any | None = None,
    features: nn.Module | None = None,
    bounds: BoundsLike | None = None,
    method: str = "linear",
    scale: BudgetLike | None = None,
    tol: float = 1e-3,
    norm: str = "linf",
    batch_size: int = 512,
) -> np.ndarray:
    """Per input, the certified L-inf or L2 radius (eq. B) of a k-means on the inputs, behind
    affine steps or on a network's features, under linear (``kmeans_is_certified_linear``) or
    interval (``kmeans_is_certified``) bounds.

    Parameters
    ----------
    kmeans : KMeans, Pipeline, KMeansCells or array of shape (k, D')
        A fitted k-means (alone or behind the affine steps of its pipeline) on the features.
    x : torch.Tensor of shape (N, ...)
        The inputs, inside ``bounds``.
    eps_max : float
        The largest radius searched, > 0, in the inputs' units (in units of ``scale``).
    mapping : array of shape (k,) or None, default=None
        Cluster -> class; None: the cluster itself must not change.
    features : torch.nn.Module or None, default=None
        The network whose flattened outputs k-means clusters (affine layers and ReLUs for
        "linear"); None: k-means clusters the inputs.
    bounds : (float, float), (array_like, array_like) or None, default=None
        The input box, two numbers or one box per feature; None: the ``Model``'s bounds,
        (0, 1) for a bare module or no network.
    method : {"linear", "interval"}, default="linear"
        The certificate.
    scale : float, array-like or None, default=None
        Per-feature units (the shape of one input, or broadcastable to it; 0 freezes a
        feature; in L2 the ellipsoid ||delta / scale||_2 <= eps); None: the plain ball.
    tol : float, default=1e-3
        Bisection tolerance, relative to eps_max, in (0, 1).
    norm : {"linf", "l2"}, default="linf"
        The norm of the radius.
    batch_size : int, default=512
        Inputs bisected together by interval bounds (memory, not results); linear bounds
        solve one input at a time.

    Returns
    -------
    ndarray of shape (N,), float64
        The radii: eps_max where certified at eps_max, 0 where at no positive eps.
    """
    eps_max, tol = _search_checks(eps_max, tol, method, norm)
    batch_size = int(check_number("batch_size", batch_size, 1, integer=True))
    x = torch.as_tensor(x).detach()
    units = _units(scale, x)
    desc = f"certified radius ({method})"
    if method == "interval":  # (cells, mapping, box and units checked once, not per probe)
        cells = kmeans_cells(kmeans)
        classes = check_mapping(mapping, len(cells.centers))
        box = input_box(nn.Identity() if features is None else features, x, bounds)
        ball = ball_certificate(cells, classes, features, box, norm)

        def interval(index: np.ndarray, eps: np.ndarray) -> np.ndarray:
            rows = torch.as_tensor(index, device=x.device)
            return ball(x[rows], 1.0, _ball_units(eps, units, x)).numpy()

        return bisect_radius(interval, len(x), eps_max, tol, desc, batch_size)
    problem = _Problem.build(kmeans, x, mapping, features, bounds, smooth=True)
    widths = flat_budget(units, tuple(x.shape[1:]))

    def linear(i: int, eps: float) -> bool:
        return not problem.reachable(i, eps, widths, norm)[-1].size

    return bisect_radius(_one_at_a_time(linear), len(x), eps_max, tol, desc)
