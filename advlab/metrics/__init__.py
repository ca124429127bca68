"""Metrics: clustering quality (external and internal)."""

from advlab.metrics.clustering import (
    adjusted_rand,
    calinski_harabasz,
    clustering_scores,
    davies_bouldin,
    mutual_info_adjusted,
    mutual_info_normalized,
    silhouette,
)

__all__ = [
    "adjusted_rand",
    "calinski_harabasz",
    "clustering_scores",
    "davies_bouldin",
    "mutual_info_adjusted",
    "mutual_info_normalized",
    "silhouette",
]
