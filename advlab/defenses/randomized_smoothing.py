"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019): a certified L2 defence for any
classifier, a network or a k-means.

The smoothed classifier of a base classifier f is

    g(x) = argmax_c P(f(x + delta) = c),   delta ~ N(0, sigma^2 I).

If its top class c_A has probability at least p_A > 1/2, g returns c_A on the whole L2 ball of
radius

    R = sigma * Phi^-1(p_A)                                   (eq. S; Cohen et al. Theorem 1
                                                               with p_B = 1 - p_A)

around x, whatever f is. Neither g nor p_A can be computed exactly; both are estimated by
Monte Carlo, as in Cohen et al.'s section 3.2:

- ``certify``: n0 noisy copies of x pick c_A (the most frequent label), n fresh ones count
  n_A; the one-sided Clopper-Pearson bound p_A >= B(alpha; n_A, n - n_A + 1) (the alpha
  quantile of a beta distribution) holds with probability 1 - alpha. Below 1/2 the input is
  abstained from (label -1, radius 0), otherwise it is certified at eq. S with that bound.
- ``predict``: n noisy copies; the top two counts n_A, n_B; c_A is returned when the two-sided
  binomial test of n_A out of n_A + n_B against 1/2 has p-value <= alpha, else -1 (abstain).
  The probability of returning a class other than g(x) is then at most alpha.

The base classifier's inputs are x + delta, unclipped (f composed with a clip is another base
classifier; the theorem holds for any f). The noise is drawn per input from a generator seeded
by (random_state, the input's index: its position in x, or the ``indices`` given), as uniforms
turned into normals (Phi^-1), so an input's certificate does not depend on the batch size or
on the other inputs.

With per-feature units s (``units``; tabular features in their own units) the noise is
s * delta: this is the smoothing above of f(s * .) in the coordinates x / s, so the radius R
bounds the weighted norm ||(x' - x) / s||_2 (an ellipsoid in the inputs' units). Written by hand: the
algorithm is short, and ART's ``RandomizedSmoothing`` wraps its own estimator classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from advlab.attacks.evasion.base import model_device
from advlab.models.wrapper import as_model, eval_mode, model_dtype
from advlab.utils.progress import progress
from advlab.utils.validation import check_budget_shape, check_images, check_number, check_units

ABSTAIN = -1


def lower_confidence_bound(successes: int, trials: int, alpha: float) -> float:
    """The one-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion:
    B(alpha; k, n - k + 1), 0 for k = 0 (Cohen et al.'s ``LowerConfBound``).

    Parameters
    ----------
    successes : int
        k, the successes among the trials.
    trials : int
        n, >= k.
    alpha : float
        The bound fails with probability at most alpha, in (0, 1).

    Returns
    -------
    float
        The lower bound, in [0, 1].
    """
    if successes == 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


@dataclass
class SmoothedCertificate:
    """What ``RandomizedSmoothing.certify`` returns, per input.

    Attributes
    ----------
    labels : ndarray of int, shape (N,)
        The smoothed classifier's class c_A, -1 where it abstains.
    radii : ndarray of float, shape (N,)
        The certified L2 radius sigma * Phi^-1(p_A lower bound) (eq. S), 0 where it abstains.
    p_lower : ndarray of float, shape (N,)
        The lower confidence bound on p_A.
    """

    labels: np.ndarray
    radii: np.ndarray
    p_lower: np.ndarray

    def certified_accuracy(self, y: Any, eps: float) -> float:
        """Share in [0, 1] of inputs certified correct at L2 radius eps: labelled y and
        certified at a radius above eps."""
        y = np.asarray(y)
        return float(np.mean((self.labels == y) & (self.radii > eps))) if len(y) else 0.0


class RandomizedSmoothing:
    """The smoothed classifier of ``model`` under Gaussian noise of std ``sigma`` (Cohen et al.
    2019): its Monte Carlo prediction and its certified L2 radius (see the module).

    Parameters
    ----------
    model : Model or torch.nn.Module
        The base classifier: a module returning logits (its argmax is the label), such as an
        advlab ``Model`` or ``advlab.attacks.evasion.kmeans_pgd.kmeans_model(km, mapping)`` for a
        k-means.
    sigma : float
        Noise std, > 0, in input units.
    n0 : int, default=100
        Noisy copies that select the class in ``certify``.
    n : int, default=10_000
        Noisy copies that estimate its probability (``certify``) or decide the prediction
        (``predict``).
    alpha : float, default=0.001
        Failure probability of each certificate or prediction, in (0, 1).
    batch_size : int, default=1000
        Noisy copies per forward pass (memory, not results: the noise of a pass takes
        batch_size x input size x 8 bytes).
    random_state : int, default=0
        Seed of the noise; input i draws from a generator seeded by (random_state, i).
    units : float, array-like or None, default=None
        Per-feature units s_d >= 0 (the shape of one input, or broadcastable to it; 0 freezes a
        feature, which then gets no noise and no attacker may move): the noise is
        s * N(0, sigma^2 I) and radii are in the weighted norm ||delta / s||_2; None: input
        units.
    """

    def __init__(
        self,
        model: nn.Module,
        sigma: float,
        n0: int = 100,
        n: int = 10_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        random_state: int = 0,
        units: Any = None,
    ) -> None:
        self.model = as_model(model)
        self.units = None if units is None else check_units("units", units)
        self.sigma = check_number("sigma", sigma, 0.0, low_open=True)
        self.n0 = int(check_number("n0", n0, 1, integer=True))
        self.n = int(check_number("n", n, 1, integer=True))
        self.alpha = check_number("alpha", alpha, 0.0, 1.0, low_open=True)
        if self.alpha >= 1:
            raise ValueError(f"alpha must be below 1, got {alpha!r}")
        self.batch_size = int(check_number("batch_size", batch_size, 1, integer=True))
        self.random_state = int(check_number("random_state", random_state, 0, integer=True))

    def _inputs(self, x: Any, indices: Any) -> tuple[torch.Tensor, np.ndarray]:
        """x checked (bounds, NaN, ``units``' shape) and the indices that seed its noise."""
        dtype = torch.promote_types(model_dtype(self.model), torch.float32)
        x = check_images(torch.as_tensor(x), "x", self.model.bounds, dtype).detach()
        check_budget_shape("units", self.units, tuple(x.shape[1:]))
        seeds = np.arange(len(x)) if indices is None else np.asarray(indices)
        if (
            seeds.shape != (len(x),)
            or not np.issubdtype(seeds.dtype, np.integer)
            or (seeds < 0).any()
        ):
            raise ValueError(f"indices must hold one integer >= 0 per input ({len(x)}), got "
                             f"shape {seeds.shape} of {seeds.dtype}")  # fmt: skip
        return x, seeds

    def _counts(self, x: torch.Tensor, draws: int, generator: torch.Generator) -> np.ndarray:
        """Per class, how many of ``draws`` noisy copies of the one input x (C, H, W, or D)
        the base classifier labels so; the noise stream continues in ``generator``."""
        device, counts = model_device(self.model), None
        for start in range(0, draws, self.batch_size):
            size = min(self.batch_size, draws - start)
            uniform = torch.rand(size, x.numel(), generator=generator, dtype=torch.float64)
            noise = torch.special.ndtri(uniform.clamp(1e-300, 1 - 1e-16)).reshape(size, *x.shape)
            if self.units is not None:
                noise = noise * self.units
            batch = (x.double() + self.sigma * noise).to(device, x.dtype)
            with torch.no_grad(), eval_mode(self.model):  # (dropout and batch norm as deployed)
                logits = self.model(batch)
            found = torch.bincount(logits.argmax(1).cpu(), minlength=logits.shape[1]).numpy()
            counts = found if counts is None else counts + found
        assert counts is not None
        return counts

    def _generator(self, index: int) -> torch.Generator:
        seed = np.random.SeedSequence([self.random_state, index]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(seed))

    def certify(self, x: Any, indices: Any = None) -> SmoothedCertificate:
        """Cohen et al.'s CERTIFY for each input of x: class, certified L2 radius (eq. S) and the
        lower bound on its probability; -1 and 0 where it abstains.

        Parameters
        ----------
        x : torch.Tensor or array of shape (N, ...)
            Inputs inside the model's bounds.
        indices : array of int, shape (N,), or None, default=None
            The indices that seed each input's noise (its index in a whole data set, when x is
            a chunk of it); None: 0 .. N - 1.

        Returns
        -------
        SmoothedCertificate
        """
        x, seeds = self._inputs(x, indices)
        labels = np.full(len(x), ABSTAIN)
        radii, p_lower = np.zeros(len(x)), np.zeros(len(x))
        for i in progress(range(len(x)), desc="randomized smoothing (certify)"):
            generator = self._generator(int(seeds[i]))
            top = int(self._counts(x[i], self.n0, generator).argmax())
            n_top = int(self._counts(x[i], self.n, generator)[top])
            p_lower[i] = lower_confidence_bound(n_top, self.n, self.alpha)
            if p_lower[i] > 0.5:
                labels[i], radii[i] = top, self.sigma * float(norm.ppf(p_lower[i]))
        return SmoothedCertificate(labels, radii, p_lower)

    def predict(self, x: Any, indices: Any = None) -> np.ndarray:
        """Cohen et al.'s PREDICT for each input of x: the smoothed classifier's class, -1 where
        the two-sided binomial test of its top two counts cannot tell them apart at alpha.

        Parameters
        ----------
        x : torch.Tensor or array of shape (N, ...)
            Inputs inside the model's bounds.
        indices : array of int, shape (N,), or None, default=None
            The indices that seed each input's noise; None: 0 .. N - 1.

        Returns
        -------
        ndarray of int, shape (N,)
            Labels, -1 where it abstains.
        """
        x, seeds = self._inputs(x, indices)
        labels = np.full(len(x), ABSTAIN)
        for i in progress(range(len(x)), desc="randomized smoothing (predict)"):
            counts = self._counts(x[i], self.n, self._generator(int(seeds[i])))
            order = np.argsort(counts, kind="stable")  # (one class: no runner-up, n_B = 0)
            first = int(order[-1])
            n_a, n_b = int(counts[first]), int(counts[order[-2]]) if len(order) > 1 else 0
            if binomtest(n_a, n_a + n_b, 0.5).pvalue <= self.alpha:
                labels[i] = int(first)
        return labels
