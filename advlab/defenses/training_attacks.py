"""Attacks that Algorithm 1 (k-means adversarial training) can use to craft its A'.

A training attack is any callable ``attack(x, indices, eps, kmeans) -> x_adv`` that returns the
adversarial version of the rows ``x`` (their ``indices`` in the training set) at strength
``eps``; ``kmeans`` is the model of the previous step (the pipeline of its preprocessing and
k-means when Algorithm 1 has a ``preprocess``). Labels, where needed, live inside the
attack: k-means never sees them.

- ``SurrogateAttack``: I-FGSM (or any advlab attack class) through a supervised
  surrogate with the true labels, the transfer setting of Omari et al.
- ``KMeansWhiteBoxAttack``: PGD on the margin of the current k-means itself, either with
  class labels (clusters mapped by majority vote) or label-free with (x, g(x)), where g(x) is
  the cluster id (Omari et al. §V).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from advlab.attacks.evasion import IFGSM, KMeansPGD, eps_to_pixels
from advlab.attacks.evasion.base import box_units
from advlab.cluster import KMeans, kmeans_cells, majority_vote_mapping
from advlab.models.wrapper import Bounds
from advlab.utils.validation import check_budget_shape


class TrainingAttack(Protocol):
    """What Algorithm 1 calls to perturb its adversarial share A at step s:
    ``attack(x, indices, eps, kmeans) -> x_adv``, with x the rows ``indices`` of the training
    set, eps the step's budget and kmeans the current model. Optionally
    ``check_training_set(first_rows, n_samples)``, which Algorithm 1 calls before any fit to
    refuse a training set the attack cannot take."""

    def __call__(
        self, x: np.ndarray, indices: np.ndarray, eps: float, kmeans: KMeans
    ) -> np.ndarray: ...


class SurrogateAttack:
    """I-FGSM through ``surrogate`` with ``labels`` (of the whole training set).

    Parameters
    ----------
    surrogate : Model or torch.nn.Module
        The surrogate classifier: a Model, or a module on [0, 1] inputs returning logits.
    labels : ndarray of shape (N,)
        True labels of the whole training set.
    eps_units : {'pixel', 'standardized'}, default='standardized'
        Unit of eps; standardized uses the surrogate's input std.
    max_iter : int, default=10
        I-FGSM steps.
    step_ratio : float, default=0.25
        eps_step = eps * step_ratio (1/4 in the paper).
    batch_size : int, default=256
        Images per batch.
    attack_cls : type, default=IFGSM
        An advlab attack taking eps, max_iter, eps_step, eps_units and batch_size (and
        ``units`` when units are given), such as ``functools.partial(PGD, norm="l2")``.
    units : array-like or None, default=None
        Per-feature units (the shape of one input, or broadcastable to it; 0 freezes a
        feature), passed to the attack: eps and eps_step count multiples of them (the
        L-inf budget eps * units_d, or an L2 attack's ellipsoid; ``eps_units`` must be
        'pixel'). None: one budget for every feature.
    """

    def __init__(
        self,
        surrogate: nn.Module,
        labels: np.ndarray,
        eps_units: str = "standardized",
        max_iter: int = 10,
        step_ratio: float = 0.25,
        batch_size: int = 256,
        attack_cls: Any = IFGSM,
        units: Any = None,
    ) -> None:
        self.surrogate, self.labels = surrogate, np.asarray(labels)
        self.eps_units, self.max_iter, self.step_ratio = eps_units, max_iter, step_ratio
        self.batch_size, self.attack_cls = batch_size, attack_cls
        self.units = box_units(units, 0.0, eps_units)  # (refused beside standardized eps)

    def _attack(self, eps: float) -> Any:
        units = {} if self.units is None else {"units": self.units}  # (the attack's own units)
        return self.attack_cls(
            self.surrogate, eps=eps, max_iter=self.max_iter, eps_step=eps * self.step_ratio,
            eps_units=self.eps_units, batch_size=self.batch_size, **units,
        )  # fmt: skip

    def check_training_set(self, x: np.ndarray, n_samples: int) -> None:
        """Refuse, before any k-means fit, a training set of ``n_samples`` (first rows ``x``,
        in the shape the surrogate sees) that these labels or this surrogate cannot attack:
        a label count other than n_samples, an input shape, range or label the surrogate
        does not take (one sample goes through the attack at eps = 0)."""
        if len(self.labels) != n_samples:
            raise ValueError(
                f"SurrogateAttack has {len(self.labels)} labels for a training set of "
                f"{n_samples} samples; pass the labels of the whole training set"
            )
        check_budget_shape("units", self.units, tuple(x.shape[1:]))
        self(x[:1], np.zeros(1, dtype=np.int64), 0.0, None)

    def __call__(
        self, x: np.ndarray, indices: np.ndarray, eps: float, kmeans: KMeans | None
    ) -> np.ndarray:
        y = torch.from_numpy(self.labels[indices])
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return self._attack(eps).generate(xt, y).cpu().numpy()


class KMeansWhiteBoxAttack:
    """PGD (L-inf) on the margin of the current k-means.

    ``labels=None``: label-free, every cluster its own class and y = g(x) (push x out of its
    own cluster). With ``labels``: clusters mapped to classes by majority vote on the current
    model's training assignment, y = the true class (push x into another class's cluster).

    Parameters
    ----------
    labels : ndarray of shape (N,) or None, default=None
        True labels of the training set; None: the label-free variant.
    eps_units : {'pixel', 'standardized'}, default='pixel'
        Unit of eps; standardized multiplies by pixel_std.
    max_iter : int, default=10
        PGD steps.
    step_ratio : float, default=0.25
        eps_step = eps * step_ratio.
    train_data : ndarray of shape (N, D) or None, default=None
        The training set, needed with labels to map clusters to classes.
    bounds : (float, float), (array_like, array_like) or None, default=None
        Box of the inputs: None unbounded (arbitrary feature spaces), (0, 1) for images.
    pixel_std : float or None, default=None
        The data's standard deviation, for standardized units.
    units : array-like or None, default=None
        Per-feature units (the shape of one input, or broadcastable to it; 0 freezes a
        feature): eps then stands for the per-feature L-inf budget eps * units_d, in input
        units (``eps_units`` must be 'pixel'). None: one budget for every feature.
    """

    def __init__(
        self,
        labels: np.ndarray | None = None,
        eps_units: str = "pixel",
        max_iter: int = 10,
        step_ratio: float = 0.25,
        train_data: np.ndarray | None = None,
        bounds: Bounds | None = None,
        pixel_std: float | None = None,
        units: Any = None,
    ) -> None:
        if labels is not None and train_data is None:
            raise ValueError("the class-label variant needs train_data to map clusters to classes")
        self.labels = None if labels is None else np.asarray(labels)
        self.train_data = train_data
        self.eps_units, self.max_iter, self.step_ratio = eps_units, max_iter, step_ratio
        self.bounds, self.pixel_std = bounds, pixel_std
        eps_to_pixels(1.0, eps_units, pixel_std)  # refuse bad units before any fit
        self.units = box_units(units, 0.0, eps_units)  # (refused beside standardized eps)

    def check_training_set(self, x: np.ndarray, n_samples: int) -> None:
        """Refuse, before any k-means fit, a training set of ``n_samples`` that ``labels`` or
        ``train_data`` do not describe, or whose rows (``x``: the first ones) ``units`` does
        not fit."""
        for name, value in (("labels", self.labels), ("train_data", self.train_data)):
            if value is not None and len(value) != n_samples:
                raise ValueError(
                    f"KMeansWhiteBoxAttack's {name} has {len(value)} rows for a training set "
                    f"of {n_samples} samples"
                )
        check_budget_shape("units", self.units, tuple(x.shape[1:]))

    def __call__(self, x: np.ndarray, indices: np.ndarray, eps: float, kmeans: Any) -> np.ndarray:
        """``kmeans``: the current k-means, or the pipeline of Algorithm 1's preprocessing and
        its k-means (attacked through it: eps stays in the inputs' units)."""
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        cells = kmeans_cells(kmeans)  # once: PGD below is built on them
        if self.labels is None:
            mapping, y = None, torch.from_numpy(kmeans.predict(x.reshape(len(x), -1)))
        else:
            assert self.train_data is not None
            train = self.train_data.reshape(len(self.train_data), -1)
            mapping = majority_vote_mapping(kmeans.predict(train), self.labels, len(cells.centers))
            y = torch.from_numpy(self.labels[indices])
        eps_px: float | torch.Tensor = float(eps_to_pixels(eps, self.eps_units, self.pixel_std))
        if self.units is not None:
            eps_px = eps * self.units
        atk = KMeansPGD(cells, mapping, eps=eps_px, max_iter=self.max_iter,
                        eps_step=eps_px * self.step_ratio, bounds=self.bounds)  # fmt: skip
        return atk.generate(xt, y).cpu().numpy().astype(x.dtype, copy=False)
