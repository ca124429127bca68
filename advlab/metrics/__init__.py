"""Metrics: clustering quality, image similarity, attack/defense outcomes, summary statistics."""

from advlab.metrics.adversarial import (
    DefenseOutcome,
    attack_success_rate,
    defense_outcomes,
    k_anonymity_holds,
    pmf_from_ranks,
    rank_position_pmf,
    robust_accuracy_curve,
    true_label_ranks,
)
from advlab.metrics.clustering import (
    adjusted_rand,
    calinski_harabasz,
    changed_cluster,
    clustering_scores,
    co_membership_distance,
    davies_bouldin,
    mutual_info_adjusted,
    mutual_info_normalized,
    perturbation_norms,
    silhouette,
    spillover,
)
from advlab.metrics.image import cw_ssim, mse, ssim
from advlab.metrics.stats import mean_ci

__all__ = [
    "DefenseOutcome",
    "adjusted_rand",
    "attack_success_rate",
    "calinski_harabasz",
    "changed_cluster",
    "clustering_scores",
    "co_membership_distance",
    "cw_ssim",
    "davies_bouldin",
    "defense_outcomes",
    "k_anonymity_holds",
    "mean_ci",
    "mse",
    "mutual_info_adjusted",
    "mutual_info_normalized",
    "perturbation_norms",
    "pmf_from_ranks",
    "rank_position_pmf",
    "robust_accuracy_curve",
    "silhouette",
    "spillover",
    "ssim",
    "true_label_ranks",
]
