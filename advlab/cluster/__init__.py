"""Clustering: cluster-to-class mappings (and the fast k-means engine)."""

from advlab.cluster.mapping import clustering_accuracy, hungarian_mapping, majority_vote_mapping

__all__ = ["clustering_accuracy", "hungarian_mapping", "majority_vote_mapping"]
