"""Defenses: adversarial training of k-means (Algorithm 1), its training attacks, and
outlier-discarding k-means variants against poisoning, and the M-SVDD-D classifier defense."""

from advlab.defenses.kmeans_adversarial_training import KMeansAdversarialTraining
from advlab.defenses.msvdd import MSVDDDefense, SVDDLayer, SVDDNetwork
from advlab.defenses.robust_kmeans import KMeansMinusMinus, NKMeans, SanitizedKMeans, TrimmedKMeans
from advlab.defenses.training_attacks import KMeansWhiteBoxAttack, SurrogateAttack, TrainingAttack

__all__ = [
    "KMeansAdversarialTraining",
    "KMeansMinusMinus",
    "KMeansWhiteBoxAttack",
    "MSVDDDefense",
    "NKMeans",
    "SVDDLayer",
    "SVDDNetwork",
    "SanitizedKMeans",
    "SurrogateAttack",
    "TrainingAttack",
    "TrimmedKMeans",
]
