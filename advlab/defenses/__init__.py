"""Defenses: adversarial training of k-means (Algorithm 1) and its training attacks."""

from advlab.defenses.kmeans_adversarial_training import KMeansAdversarialTraining
from advlab.defenses.training_attacks import KMeansWhiteBoxAttack, SurrogateAttack, TrainingAttack

__all__ = ["KMeansAdversarialTraining", "KMeansWhiteBoxAttack", "SurrogateAttack", "TrainingAttack"]
