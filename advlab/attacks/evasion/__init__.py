"""Evasion attacks: one small file per attack on the shared base (``base.py``)."""

from advlab.attacks.evasion.adapters import TorchattacksAdapter
from advlab.attacks.evasion.base import Attack, AttackResult, MinimizationAttack, eps_to_pixels
from advlab.attacks.evasion.bim import BIM, IFGSM
from advlab.attacks.evasion.criteria import (
    Criterion,
    Misclassification,
    TargetedMisclassification,
    TrueLabelRank,
)
from advlab.attacks.evasion.cw import CarliniWagnerL2
from advlab.attacks.evasion.deepfool import DeepFool
from advlab.attacks.evasion.fgsm import FGSM
from advlab.attacks.evasion.ka3 import KA3, KA3Result
from advlab.attacks.evasion.kmeans_minimal import KMeansMinimalAttack, kmeans_certified_radius
from advlab.attacks.evasion.kmeans_pgd import KMeansPGD
from advlab.attacks.evasion.lbfgs import LBFGS
from advlab.attacks.evasion.pgd import PGD

__all__ = [
    "BIM",
    "FGSM",
    "IFGSM",
    "KA3",
    "LBFGS",
    "PGD",
    "Attack",
    "AttackResult",
    "CarliniWagnerL2",
    "Criterion",
    "DeepFool",
    "KA3Result",
    "KMeansMinimalAttack",
    "KMeansPGD",
    "MinimizationAttack",
    "Misclassification",
    "TargetedMisclassification",
    "TorchattacksAdapter",
    "TrueLabelRank",
    "eps_to_pixels",
    "kmeans_certified_radius",
]
