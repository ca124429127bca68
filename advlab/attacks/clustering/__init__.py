"""Attacks on clusterers from the literature, each one file on ``ClusteringAttack``: Cinà et
al.'s genetic poisoning, Chhabra et al.'s spill-over, Biggio et al.'s bridges and obfuscation
(single linkage) and Crussell & Kegelmeyer's DBSCAN merge. Every attack queries the victim's
``fit_predict`` only, so any clusterer can be attacked."""

from advlab.attacks.clustering.base import ClusteringAttack, ClusteringAttackResult
from advlab.attacks.clustering.biggio import BiggioBridge, BiggioObfuscation, bridge_count, merged
from advlab.attacks.clustering.chhabra import Chhabra
from advlab.attacks.clustering.cina import Cina, clustering_objective
from advlab.attacks.clustering.crussell import CrussellMerge, merge_count

__all__ = [
    "BiggioBridge",
    "BiggioObfuscation",
    "Chhabra",
    "Cina",
    "ClusteringAttack",
    "ClusteringAttackResult",
    "CrussellMerge",
    "bridge_count",
    "clustering_objective",
    "merge_count",
    "merged",
]
