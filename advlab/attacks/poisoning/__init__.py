"""Poisoning attacks on k-means (the Poison Cluster suite); each returns a PoisonedData."""

from advlab.attacks.poisoning.base import PoisonedData
from advlab.attacks.poisoning.bridge import bridge_points
from advlab.attacks.poisoning.budget import INJECTION_ATTACKS, inject
from advlab.attacks.poisoning.injection import (
    gaussian_noise,
    label_shuffle,
    subtle_outliers,
    uniform_outliers,
)
from advlab.attacks.poisoning.label_flip import seed_label_flip
from advlab.attacks.poisoning.mimicry import contextual_reversal, find_outliers, mimicry

__all__ = [
    "INJECTION_ATTACKS",
    "PoisonedData",
    "bridge_points",
    "contextual_reversal",
    "find_outliers",
    "gaussian_noise",
    "inject",
    "label_shuffle",
    "mimicry",
    "seed_label_flip",
    "subtle_outliers",
    "uniform_outliers",
]
