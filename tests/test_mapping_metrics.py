from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from advlab.cluster import KMeans, clustering_accuracy, hungarian_mapping, majority_vote_mapping
from advlab.data import load_dataset
from advlab.metrics import (
    adjusted_rand,
    calinski_harabasz,
    changed_cluster,
    clustering_scores,
    davies_bouldin,
    silhouette,
)


def test_majority_vote_basic_ties_and_empty_clusters():
    clusters = np.array([0, 0, 0, 1, 1, 2, 2])
    y = np.array([3, 3, 1, 2, 0, 1, 1])
    m = majority_vote_mapping(clusters, y, n_clusters=5)
    # cluster 0 -> 3 (2 of 3); cluster 1 tie between 0 and 2 -> smallest id 0; cluster 2 -> 1
    # clusters 3 and 4 are empty -> the most frequent training class overall (1, three times)
    assert m.tolist() == [3, 0, 1, 1, 1]
    assert clustering_accuracy(y, clusters, m) == pytest.approx(5 / 7)


def test_mapping_applies_to_unseen_test_points_and_unseen_classes():
    m = majority_vote_mapping(np.array([0, 1, 1]), np.array([2, 5, 5]), n_clusters=3)
    # class 7 never appears in training (always wrong); empty cluster 2 falls back to class 5
    acc = clustering_accuracy(np.array([2, 5, 7, 5]), np.array([0, 1, 1, 2]), m)
    assert acc == pytest.approx(0.75)


def test_hungarian_is_one_to_one_and_optimal():
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    clusters = np.array([2, 2, 1, 0, 0, 0, 1, 1, 2])
    m = hungarian_mapping(clusters, y, n_clusters=3)
    assert sorted(m.tolist()) == [0, 1, 2]
    assert m.tolist() == [1, 2, 0]
    assert clustering_accuracy(y, clusters, m) == pytest.approx(7 / 9)
    # majority vote can map two clusters to one class; Hungarian cannot
    y2, c2 = np.array([0, 0, 0, 0, 1]), np.array([0, 0, 1, 1, 1])
    assert majority_vote_mapping(c2, y2, 2).tolist() == [0, 0]
    assert hungarian_mapping(c2, y2, 2).tolist() == [0, 1]


def test_hungarian_with_more_clusters_than_classes_leaves_extra_unmapped():
    m = hungarian_mapping(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 1]), n_clusters=3)
    assert m.tolist() == [0, -1, 1]
    assert clustering_accuracy(np.array([0, 1]), np.array([1, 2]), m) == pytest.approx(0.5)


def test_mappings_count_only_the_classes_present():
    """Class ids with gaps are counted as the classes they are: an extra cluster of the
    Hungarian mapping stays unmapped (it took an absent class id, here one of 1..4, which a
    test point of that class would then count as right), and large ids such as 10**12 cost no
    memory (the contingency table had one column per id up to the largest)."""
    m = hungarian_mapping(np.array([0, 1, 2]), np.array([0, 5, 5]), n_clusters=3)
    assert m[0] == 0 and sorted(m[1:].tolist()) == [-1, 5]
    big = np.array([10**12, 10**12, 7, 7, 7])
    assert majority_vote_mapping(np.array([0, 0, 1, 1, 0]), big, 3).tolist() == [10**12, 7, 7]
    assert hungarian_mapping(np.array([1, 1, 0, 0, 0]), big, 2).tolist() == [7, 10**12]


def test_mapping_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        majority_vote_mapping(np.array([0, 1]), np.array([0]), 2)
    with pytest.raises(ValueError, match=r"cluster ids must lie in \[0, 2\)"):
        majority_vote_mapping(np.array([0, 2]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="zero points"):
        hungarian_mapping(np.array([], dtype=int), np.array([], dtype=int), 2)
    with pytest.raises(ValueError, match="LabelEncoder"):
        majority_vote_mapping(np.array([0, 1]), np.array(["cat", "dog"]), 2)
    with pytest.raises(ValueError, match="LabelEncoder"):
        majority_vote_mapping(np.array([0, 1]), np.array([0.5, 1.0]), 2)
    assert majority_vote_mapping(np.array([0, 1]), np.array([1.0, 0.0]), 2).tolist() == [1, 0]
    with pytest.raises(ValueError, match="out of range"):
        clustering_accuracy(np.array([0]), np.array([5]), np.array([0, 1]))


def test_kmeans_with_hungarian_recovers_iris_classes():
    iris = load_dataset("iris", "all")
    km = KMeans(3, n_init=5, random_state=0).fit(iris.data)
    acc = clustering_accuracy(
        iris.labels, km.labels_, hungarian_mapping(km.labels_, iris.labels, 3)
    )
    assert acc == pytest.approx(0.893, abs=0.01)  # the well-known k-means accuracy on Iris


def test_metric_wrappers_agree_with_sklearn():
    d = load_dataset("blobs", n_samples=600, centers=4, random_state=0)
    labels = KMeans(4, random_state=0).fit_predict(d.data)
    scores = clustering_scores(d.data, labels, d.labels, silhouette_sample=None)
    assert scores["ari"] == pytest.approx(skm.adjusted_rand_score(d.labels, labels))
    assert scores["nmi"] == pytest.approx(skm.normalized_mutual_info_score(d.labels, labels))
    assert scores["ami"] == pytest.approx(skm.adjusted_mutual_info_score(d.labels, labels))
    assert scores["silhouette"] == pytest.approx(skm.silhouette_score(d.data, labels))
    assert calinski_harabasz(d.data, labels) == pytest.approx(
        skm.calinski_harabasz_score(d.data, labels)
    )
    assert davies_bouldin(d.data, labels) == pytest.approx(skm.davies_bouldin_score(d.data, labels))
    assert scores["ari"] > 0.9


def test_sampled_silhouette_is_seeded_and_close():
    d = load_dataset("blobs", n_samples=3000, centers=3, random_state=0)
    full = silhouette(d.data, d.labels, sample_size=None)
    a = silhouette(d.data, d.labels, sample_size=500, random_state=1)
    assert a == silhouette(d.data, d.labels, sample_size=500, random_state=1)
    assert a == pytest.approx(full, abs=0.05)


def test_metric_bad_input():
    with pytest.raises(ValueError, match=r"y_true \(2,\) and labels_pred \(1,\) differ"):
        adjusted_rand([0, 1], [0])
    with pytest.raises(ValueError, match=r"reference \(2,\) and labels \(1,\) differ"):
        changed_cluster([0, 1], [0])  # (its own parameters' names, not adjusted_rand's)
    with pytest.raises(ValueError, match="2 <= n_clusters"):
        silhouette(np.zeros((5, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        davies_bouldin(np.array([[np.nan, 0], [1, 1], [2, 2]]), [0, 1, 1])
