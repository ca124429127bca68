"""Outcome metrics of evasion attacks and of detecting defenses (Mygdalis et al. 2020, sec. 5).

- attack success rate (ASR): share of adversarial examples whose predicted label is not y;
- under a defense with an adversarial class a: *successful* if pred not in {y, a}, *failed* (F)
  if pred = y, *detected* (D) if pred = a; ASR + F + D = 1 (fractions; reports show percent);
- the rank-position distribution of Fig. 4: p(j) = P(r_x~(j) = y), the probability that the
  true label is the model's j-th ranked label on the adversarial example;
- the K-anonymity condition (6): max_j p(j) <= 1/K (and condition (5): p(1) = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _np(a: torch.Tensor | np.ndarray, name: str, ndim: int) -> np.ndarray:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def attack_success_rate(pred: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Fraction in [0, 1] of samples with pred != y.

    Parameters
    ----------
    pred : tensor or ndarray of shape (n,)
        Predicted labels on the adversarial examples.
    y : tensor or ndarray of shape (n,)
        True labels.

    Returns
    -------
    float
        The success rate, a fraction in [0, 1] (0 for no samples).
    """
    p, t = _np(pred, "pred", 1), _np(y, "y", 1)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and y {t.shape} differ in length")
    return float(np.mean(p != t)) if len(p) else 0.0


def robust_accuracy_curve(
    correct: np.ndarray, radius: np.ndarray, eps: np.ndarray | list[float]
) -> np.ndarray:
    """Robust accuracy (%) at each budget: the share of samples classified correctly whose
    decision survives every perturbation of size <= eps,

        acc(eps) = 100 * mean(correct_i and radius_i > eps).

    With ``radius`` a certified radius this is a lower bound on the true robust accuracy; with
    the size of perturbations an attack found it is an upper bound (inf where it failed).

    Parameters
    ----------
    correct : ndarray of bool, shape (n,)
        Whether each clean sample is classified correctly.
    radius : ndarray of shape (n,)
        Per sample, the perturbation size at which its decision changes (>= 0, inf allowed).
    eps : sequence of float
        Budgets, >= 0, in the unit of ``radius``.

    Returns
    -------
    ndarray of shape (len(eps),)
        Robust accuracy in percent (0 for no samples).
    """
    ok, r = _np(correct, "correct", 1).astype(bool), _np(radius, "radius", 1).astype(float)
    grid = np.asarray(eps, dtype=float)
    if ok.shape != r.shape:
        raise ValueError(f"correct {ok.shape} and radius {r.shape} differ in length")
    if np.isnan(r).any() or (r < 0).any():
        raise ValueError("radius must be >= 0 and not NaN")
    if grid.ndim != 1 or not np.isfinite(grid).all() or (grid < 0).any():
        raise ValueError("eps must be a 1-D sequence of finite budgets >= 0")
    if not len(ok):
        return np.zeros(len(grid))
    return 100.0 * ((ok[:, None]) & (r[:, None] > grid[None, :])).mean(0)


@dataclass(frozen=True)
class DefenseOutcome:
    """Fractions in [0, 1]: successful attacks, failed (F) and detected (D); they sum to 1.

    Attributes
    ----------
    asr : float
        Share of successful attacks: predicted neither y nor the adversarial class.
    failed : float
        Share F predicted as y.
    detected : float
        Share D sent to the adversarial class.
    """

    asr: float
    failed: float
    detected: float


def defense_outcomes(
    pred: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, adversarial_label: int
) -> DefenseOutcome:
    """Split predictions of a defended model on adversarial examples into ASR / F / D.

    Parameters
    ----------
    pred : tensor or ndarray of shape (n,)
        Predicted labels on the adversarial examples.
    y : tensor or ndarray of shape (n,)
        True labels.
    adversarial_label : int
        The defense's adversarial class.

    Returns
    -------
    DefenseOutcome
        ASR, F and D, fractions summing to 1.
    """
    p, t = _np(pred, "pred", 1), _np(y, "y", 1)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and y {t.shape} differ in length")
    if not len(p):
        raise ValueError("no predictions")
    detected = p == adversarial_label
    failed = (p == t) & ~detected
    return DefenseOutcome(
        asr=float(np.mean(~detected & ~failed)),
        failed=float(np.mean(failed)),
        detected=float(np.mean(detected)),
    )


def true_label_ranks(scores: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> np.ndarray:
    """1-based position of the true label in each row's descending ranking of the scores.

    Ties are broken in favour of the true label (as ``sklearn.metrics.top_k_accuracy_score``).

    Parameters
    ----------
    scores : tensor or ndarray of shape (n, n_classes)
        Class scores (logits or probabilities), higher is more likely.
    y : tensor or ndarray of shape (n,)
        True labels.

    Returns
    -------
    ndarray of shape (n,)
        1-based rank of the true label in each row.
    """
    s, t = _np(scores, "scores", 2), _np(y, "y", 1).astype(int)
    if len(s) != len(t):
        raise ValueError(f"scores has {len(s)} rows but y has {len(t)} labels")
    if t.min(initial=0) < 0 or t.max(initial=0) >= s.shape[1]:
        raise ValueError(f"labels must lie in [0, {s.shape[1] - 1}]")
    own = s[np.arange(len(t)), t]
    return 1 + (s > own[:, None]).sum(1)


def rank_position_pmf(
    scores: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray
) -> np.ndarray:
    """p(j) = P(r(j) = y) for j = 1..C (Fig. 4 of Mygdalis et al.), an array of length C.

    Its cumulative sum at k equals ``top_k_accuracy_score(y, scores, k=k)``.

    Parameters
    ----------
    scores : tensor or ndarray of shape (n, n_classes)
        Class scores (logits or probabilities), higher is more likely.
    y : tensor or ndarray of shape (n,)
        True labels.

    Returns
    -------
    ndarray of shape (n_classes,)
        p(1), ..., p(C), summing to 1.
    """
    return pmf_from_ranks(true_label_ranks(scores, y), _np(scores, "scores", 2).shape[1])


def pmf_from_ranks(ranks: np.ndarray, n_classes: int) -> np.ndarray:
    """p(j) for j = 1..n_classes from 1-based true-label ranks (as ``true_label_ranks``).

    Parameters
    ----------
    ranks : array-like of int
        1-based true-label ranks, each in 1..n_classes.
    n_classes : int
        Number of classes C.

    Returns
    -------
    ndarray of shape (n_classes,)
        p(1), ..., p(C).
    """
    r = np.asarray(ranks, dtype=int)
    if len(r) == 0 or r.min() < 1 or r.max() > n_classes:
        raise ValueError(f"ranks must be a non-empty array of values in 1..{n_classes}")
    return np.bincount(r - 1, minlength=n_classes) / len(r)


def k_anonymity_holds(pmf: np.ndarray, k: int, tol: float = 0.0) -> bool:
    """Condition (6) of Mygdalis et al.: every rank position recovers y with p(j) <= 1/K (+ tol).

    Parameters
    ----------
    pmf : ndarray
        p(j) per rank position, as from rank_position_pmf.
    k : int
        The anonymity level K, >= 1.
    tol : float, default=0.0
        Slack added to the bound 1/K (sampling error of a small sample).

    Returns
    -------
    bool
        Whether max_j p(j) <= 1/K + tol.
    """
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")
    return bool(np.max(pmf) <= 1.0 / k + tol)
