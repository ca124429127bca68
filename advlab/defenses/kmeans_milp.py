"""Exact L-inf verification of a k-means on a ReLU network's features (deep clustering), and the
exact minimal L-inf perturbation that changes its class, by mixed-integer linear programming.

A k-means with centres c_j behind the affine steps z = A f + b of its pipeline, on the
features f(x') of a network of affine layers and ReLUs, gives x' the cluster of the largest
score

    s_j(x') = 2 u_j . f(x') - gamma_j,   u_j = A^T c_j,   gamma_j = ||c_j||^2 - 2 c_j . b   (eq. S)

since ||A f + b - c_j||^2 = ||A f + b||^2 - s_j, the first term being the same for every j
(``KMeansCells``' sites and levels, eq. P). Eq. S is one more affine map after the network's
last: the k-means is a ReLU network whose logits are the scores. Let I be the clusters of the
class of x's own cluster (its cluster alone without a mapping) and J the others. Over the box
B = {x' : ||x' - x||_inf <= eps} ∩ [lo, hi]^D, x is robust iff for every j in J no x' in B has

    s_j(x') - s_i(x') >= 0   for every i in I                                            (eq. R)

(one cluster of another class at least as near as every cluster of x's class). The network
is encoded as in ``verify_linf`` (Tjeng et al. 2019: a binary per unstable ReLU, its bounds
linear (CROWN) bounds intersected with interval bounds); the same linear bounds of s_i - s_j
prove a cluster j out of reach without a program when some i in I stays ahead over all of B.
For each remaining j, nearest first, eq. R is a set of rows: infeasible proves j out of
reach; a solution a hair past the boundary that the network and the k-means confirm is a
counterexample. With ``minimal=True`` each program instead minimises t subject to eq. R and
-t <= x' - x <= t (the box bounds t by eps, and the best t so far the next programs), so the
smallest t over J is the exact minimal L-inf perturbation that changes the class, when it is
at most eps (MIPVerify's minimal adversarial distance, Tjeng et al. section 4.1); for the
cluster that attains it, a second program with the margin gives the counterexample a hair
past that boundary.

``kmeans_is_certified_linear(..., norm="l2")`` certifies L2 balls with the same linear bounds
(eq. C of ``advlab.defenses.milp_verification``); the exact programs stay L-inf (an L2 ball
makes them quadratic, which scipy's MILP solver does not take).

Written by hand around scipy's MILP solver, on ``verify_linf``'s encoding: no verifier bounds
k-means, and those of networks do not install on torch 2.13.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.cluster import KMeansCells, check_mapping, kmeans_cells
from advlab.defenses.interval_bounds import input_box
from advlab.defenses.milp_verification import (
    RELAXED_SLACK,
    ROBUST,
    TIE,
    UNKNOWN,
    Activations,
    Chain,
    _Ball,
    _ball_checks,
    _layer_bounds,
    _margin_lower,
    _Program,
    _replay,
    _search,
    check_verifiable,
    linear_bound_chain,
    linear_input_set,
)
from advlab.models.wrapper import eval_mode
from advlab.utils.progress import progress
from advlab.utils.validation import (
    BoundsLike,
    BudgetLike,
    check_input_budget,
    check_number,
    flat_bounds,
    flat_budget,
)


@dataclass
class KMeansVerification:
    """The outcome of ``verify_kmeans_linf`` per input.

    Attributes
    ----------
    status : ndarray of int8, shape (N,)
        ``ROBUST`` (1): no input of the ball changes the class; ``ATTACKED`` (0): a
        counterexample was found and confirmed; ``UNKNOWN`` (-1): a program hit the time limit,
        or its solutions lie on the boundary within rounding.
    x_adv : torch.Tensor of shape (N, ...)
        The counterexample where one was found, the input itself elsewhere.
    distances : ndarray of float, shape (N,)
        The L-inf size of each counterexample; with ``minimal=True`` the exact minimal
        perturbation (the distance to the nearest boundary point, to the solver's tolerance;
        the counterexample lies a hair past it). inf where ``ROBUST``, nan where ``UNKNOWN``.
    unstable : ndarray of int, shape (N,)
        The binaries (unstable ReLUs) of each input's program; 0 where linear bounds alone
        proved it.
    """

    status: np.ndarray
    x_adv: torch.Tensor
    distances: np.ndarray
    unstable: np.ndarray


def verify_kmeans_linf(
    kmeans: Any,
    x: torch.Tensor,
    eps: BudgetLike,
    mapping: Any | None = None,
    features: nn.Module | None = None,
    bounds: BoundsLike | None = None,
    minimal: bool = False,
    time_limit: float = 30.0,
) -> KMeansVerification:
    """Exact L-inf verification of a k-means, on the inputs or on a ReLU network's features
    (see the module docstring, eqs. S and R).

    Parameters
    ----------
    kmeans : KMeans, Pipeline, KMeansCells or array of shape (k, D')
        A fitted k-means (alone or behind the affine steps of its pipeline) on the features.
    x : torch.Tensor of shape (N, ...)
        The inputs, inside ``bounds``.
    eps : float or array-like
        The L-inf budget, >= 0, in the inputs' units (with ``minimal=True``: the largest
        perturbation searched); or one per feature (the shape of one input, or broadcastable
        to it): the box |x'_d - x_d| <= eps_d, and distances in its units (max_d
        |x'_d - x_d| / eps_d, 1 at its edge).
    mapping : array of shape (k,) or None, default=None
        Cluster -> class; None: the cluster itself must not change.
    features : torch.nn.Module or None, default=None
        The network (affine layers and ReLUs, as ``verify_linf`` takes) whose flattened
        outputs k-means clusters; None: k-means clusters the inputs.
    bounds : (float, float), (array_like, array_like) or None, default=None
        The input box, two numbers or one box per feature; None: the ``Model``'s bounds,
        (0, 1) for a bare module or no network.
    minimal : bool, default=False
        Find the exact minimal perturbation (optimisation programs) rather than any
        counterexample (feasibility programs, faster).
    time_limit : float, default=30.0
        Seconds per mixed-integer program; an input whose program hits it ends ``UNKNOWN``.

    Returns
    -------
    KMeansVerification
        Status, counterexample, its size and the number of binaries, per input.
    """
    budget = check_input_budget("eps", eps, x)
    time_limit = check_number("time_limit", time_limit, 0.0, low_open=True)
    if not isinstance(minimal, bool):
        raise ValueError(f"minimal must be True or False, got {minimal!r}")
    problem = _Problem.build(kmeans, x, mapping, features, bounds)
    x, flat = problem.x, problem.flat
    half_widths = flat_budget(budget, tuple(x.shape[1:]))
    status = np.full(len(x), UNKNOWN, dtype=np.int8)
    distances = np.full(len(x), np.nan)
    unstable = np.zeros(len(x), dtype=np.int64)
    x_adv = x.clone()
    for n in progress(range(len(x)), desc="MILP verification of k-means"):
        lo, hi, layer_bounds, ours, reachable = problem.reachable(n, half_widths)
        if not reachable.size:
            status[n], distances[n] = ROBUST, np.inf
            continue
        chain = problem.chain
        program = _Program(chain, layer_bounds, lo, hi)
        unstable[n] = program.n_unstable
        scores = _replay(chain, flat[n][None])[0]  # eq. S at x
        order = reachable[np.argsort(-scores[reachable])]  # the nearest clusters first
        margin = 2 * TIE * max(1.0, float(np.abs(scores).max()))  # ties are not adversarial

        def confirm(v: np.ndarray, n: int = n) -> bool:
            """Whether the network and the k-means put v in a cluster of another class."""
            candidate = torch.from_numpy(v[: flat.shape[1]]).reshape(x[n : n + 1].shape).to(x)
            return not problem.same_class(n, candidate)

        found = _search(
            program, ours, order, flat[n], half_widths, margin, minimal, time_limit, confirm
        )
        status[n], distances[n] = found[0], found[1]
        if found[2] is not None:
            x_adv[n] = torch.from_numpy(found[2][: flat.shape[1]]).reshape(x.shape[1:]).to(x)
    return KMeansVerification(status, x_adv, distances, unstable)


def kmeans_is_certified_linear(
    kmeans: Any,
    x: torch.Tensor,
    eps: BudgetLike,
    mapping: Any | None = None,
    features: nn.Module | None = None,
    bounds: BoundsLike | None = None,
    norm: str = "linf",
    units: BudgetLike | None = None,
) -> torch.Tensor:
    """Per input, whether linear (CROWN) bounds prove that k-means gives every input of its
    L-inf (or L2) ball (clipped to ``bounds``) the class of its own cluster: for every cluster j of
    another class some cluster i of its own class has a lower bound of s_i - s_j (eq. S) above
    0 over the ball (the bounds ``verify_kmeans_linf`` settles clusters with, before any
    program). Sound; between ``kmeans_is_certified``'s interval bounds and the exact answer,
    without a program; through networks of affine layers and ReLU, piecewise-linear or smooth
    activations (``linear_bound_chain``).

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
        The network whose flattened outputs k-means clusters; None: the inputs.
    bounds : (float, float), (array_like, array_like) or None, default=None
        The input box, two numbers or one box per feature; None: the ``Model``'s bounds,
        (0, 1) for a bare module or no network.
    norm : {"linf", "l2"}, default="linf"
        The norm of the ball.
    units : array-like or None, default=None
        Per-feature units s_d >= 0 (0 freezes a feature), with eps one number: the box
        eps * s_d in L-inf, the ellipsoid ||delta / s||_2 <= eps in L2; None: input units.

    Returns
    -------
    torch.Tensor of bool, shape (N,)
        True where the input is certified.
    """
    x = torch.as_tensor(x).detach()
    radius, widths = _ball_checks(eps, norm, units, x)
    problem = _Problem.build(kmeans, x, mapping, features, bounds, smooth=True)
    certified = [not problem.reachable(n, radius, widths, norm)[-1].size
                 for n in range(len(problem.flat))]  # fmt: skip
    return torch.tensor(certified, dtype=torch.bool)


@dataclass
class _Problem:
    """One k-means and network with their inputs: the score chain (eq. S), the inputs
    flattened in float64, the input box and, per input, the clusters of its own class."""

    x: torch.Tensor
    flat: np.ndarray
    chain: Chain
    box: tuple[float | np.ndarray, float | np.ndarray]  # flat_bounds of the input box
    group: torch.Tensor  # (N, k): cluster j is of input n's own class
    network: nn.Module
    cells: KMeansCells
    activations: Activations = None  # after each hidden layer of the chain; None: ReLUs

    @classmethod
    def build(cls, kmeans: Any, x: Any, mapping: Any | None, features: nn.Module | None,
              bounds: BoundsLike | None, smooth: bool = False) -> _Problem:  # fmt: skip
        """Checked inputs (``ValueError`` naming the problem), the chain and the groups; with
        ``smooth`` (linear bounds only) a network of smooth activations too."""
        cells = kmeans_cells(kmeans)
        classes = check_mapping(mapping, len(cells.centers))
        network = nn.Flatten() if features is None else nn.Sequential(features, nn.Flatten())
        x = torch.as_tensor(x).detach()
        box = flat_bounds(
            input_box(features if features is not None else network, x, bounds), tuple(x.shape[1:])
        )
        flat = x.reshape(len(x), -1).double().cpu().numpy() if len(x) else np.zeros((0, 0))
        chain: Chain = []
        activations: Activations = None
        own = torch.zeros(0, dtype=torch.long)
        if len(x):
            with eval_mode(network):
                source = "the inputs have" if features is None else "the network gives"
                chain, activations = _checked_chain(network, x[:8], smooth)
                chain = _scores_chain(cells, chain, source)
            own = cells.assign(torch.from_numpy(_forward(network, x)))
        group = own[:, None] == torch.arange(len(cells.centers))[None, :]
        if classes is not None:
            group = classes[own][:, None] == classes[None, :]
        return cls(x, flat, chain, box, group, network, cells, activations)

    def reachable(
        self, n: int, eps: float | np.ndarray, widths: Any = 1.0, norm: str = "linf"
    ) -> tuple:
        """(lo, hi, layer bounds, own-class clusters, clusters of other classes that linear
        bounds cannot rule out) for input n at budget eps (a float, or ``flat_budget``'s
        half-widths) times the per-feature ``widths``, in ``norm`` (``linear_input_set``)."""
        lo, hi, ball = linear_input_set(self.flat[n], eps, widths, self.box, norm)
        ours = np.flatnonzero(self.group[n].numpy())
        layer_bounds = _layer_bounds(self.chain, lo, hi, "linear", ball, self.activations)
        return lo, hi, layer_bounds, ours, _reachable(self.chain, layer_bounds, lo, hi, ours,
                                                      ball, self.activations)  # fmt: skip

    def same_class(self, n: int, candidate: torch.Tensor) -> bool:
        """Whether the network and the k-means put ``candidate`` (1, ...) in input n's class."""
        cluster = self.cells.assign(torch.from_numpy(_forward(self.network, candidate)))
        return bool(self.group[n][cluster])


def _forward(network: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The network's flattened features of x in float64 (n, F)."""
    with torch.no_grad(), eval_mode(network):
        return network(x).double().cpu().numpy()


def _checked_chain(network: nn.Module, x: torch.Tensor, smooth: bool = False) -> tuple:
    """``check_verifiable``'s chain of the network (with ``smooth``, ``linear_bound_chain``'s
    and its activations; else None for them), after naming a network that does not take inputs
    of x's shape."""
    try:
        with torch.no_grad():
            network(x)
    except RuntimeError as error:
        raise ValueError(
            f"features: the network does not take inputs of shape {tuple(x.shape[1:])}: {error}"
        ) from error
    return linear_bound_chain(network, x) if smooth else (check_verifiable(network, x), None)


def _scores_chain(cells: KMeansCells, chain: Chain, source: str) -> Chain:
    """The network's chain with eq. S composed onto its last affine map (W_L, c_L): scores
    2 U (W_L a + c_L) - gamma; ``ValueError`` when the features (``source``: what gives them)
    do not fit the k-means."""
    w_last, c_last = chain[-1]
    if w_last.shape[0] != cells.n_features:
        raise ValueError(
            f"k-means takes {cells.n_features} features per sample, {source} {w_last.shape[0]}"
        )
    sites = 2 * cells.sites.double().cpu().numpy()
    levels = cells.levels.double().cpu().numpy()
    return [*chain[:-1], (sites @ w_last, sites @ c_last - levels)]


def _reachable(chain: Chain, layer_bounds: list, lo: np.ndarray, hi: np.ndarray,
               ours: np.ndarray, ball: _Ball | None = None,
               activations: Activations = None) -> np.ndarray:  # fmt: skip
    """The clusters j of another class that no i in ``ours`` provably stays ahead of over the
    box (and an L2 ``ball`` in it): the largest linear lower bound of s_i - s_j over i is not
    above 0."""
    ahead = np.full(chain[-1][0].shape[0], -np.inf)
    for i in ours:
        ahead = np.maximum(ahead, _margin_lower(chain, layer_bounds, lo, hi, int(i), ball,
                                                activations))  # fmt: skip
    ahead[ours] = np.inf
    return np.flatnonzero(ahead <= RELAXED_SLACK)
