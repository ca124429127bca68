"""Metrics: clustering quality (external and internal) and summary statistics."""

from advlab.metrics.clustering import (
    adjusted_rand,
    calinski_harabasz,
    clustering_scores,
    davies_bouldin,
    mutual_info_adjusted,
    mutual_info_normalized,
    silhouette,
)
from advlab.metrics.stats import mean_ci

__all__ = [
    "adjusted_rand",
    "calinski_harabasz",
    "clustering_scores",
    "davies_bouldin",
    "mean_ci",
    "mutual_info_adjusted",
    "mutual_info_normalized",
    "silhouette",
]
