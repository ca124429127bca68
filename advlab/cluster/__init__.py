"""Clustering: fast k-means, cluster-to-class mappings, the elbow method, and the cells of a
fitted k-means (behind the affine steps of its pipeline) that white-box attacks work on."""

from advlab.cluster.cells import KMeansCells, affine_map, check_mapping, kmeans_cells
from advlab.cluster.elbow import ElbowResult, elbow, find_knee
from advlab.cluster.kmeans import KMeans, kmeans_plusplus
from advlab.cluster.mapping import clustering_accuracy, hungarian_mapping, majority_vote_mapping
from advlab.cluster.seeded import SeededKMeans, seed_sample

__all__ = [
    "ElbowResult",
    "KMeans",
    "KMeansCells",
    "SeededKMeans",
    "affine_map",
    "check_mapping",
    "clustering_accuracy",
    "elbow",
    "find_knee",
    "hungarian_mapping",
    "kmeans_cells",
    "kmeans_plusplus",
    "majority_vote_mapping",
    "seed_sample",
]
