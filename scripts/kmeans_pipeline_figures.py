"""Figures quoted about the k-means pipeline API that no test pins, re-measured on demand.

    .venv/bin/python scripts/kmeans_pipeline_figures.py

Prints JSON:

- ``bisecting_off_voronoi``: share of 5000 random points that a 12-cluster scikit-learn
  BisectingKMeans does not put in the cluster of their nearest centre (why advlab refuses it);
- ``readme_example_2_pgd_400_small_steps``: README example 2's pipeline (StandardScaler, PCA,
  KMeans on the 8x8 digits) under PGD with 400 steps of eps / 100 at eps = 0.5 pixels: the
  share of test images still correct (20 steps of eps / 4 leave 73.1 %, the exact attack 10.4 %);
- ``breast_cancer_closed_vs_exact``: StandardScaler + KMeans(10) on raw breast-cancer rows, no
  box: median L-inf size of the closed-form other-class perturbation and of the exact one;
- ``breast_cancer_per_feature_budgets``: the same pipeline under the per-feature budgets
  eps * std_d (eps 0.25, 0.5, 1), all features free or only the 10 "mean" measurements:
  the shares correct and certified, exactly robust and unbroken by PGD, and the ordering
  violations (both 0 when sound);
- ``ibp_through_relu_net``: k-means (k = 12) on an untrained ReLU network's 8-d embedding of
  300 digits: per eps the certified share (``kmeans_is_certified``) and the share PGD (60
  steps, random start) breaks, and how many certified inputs it breaks (must be 0); beside
  them the share linear bounds certify (``kmeans_is_certified_linear``) and the exact answer of
  ``verify_kmeans_linf`` (mixed-integer programs of 10 s at most):
  the shares proved robust, attacked and unknown, how many certified inputs it does not prove
  robust and how many it proves robust that PGD breaks (both must be 0), and its seconds;
- ``radius_through_relu_net``: the same k-means and network, median certified radius by
  interval and by linear bounds (bisection) beside the median exact minimal perturbation;
- ``smoothed_kmeans_digits``: k-means (k = 50) on the first 1,437 8x8 digits (pixels / 16),
  its last 360 as test: k-means' clean accuracy and exact L2 robust accuracy (``exact=True``)
  at the radii 0.25, 0.5 and 1, beside the randomized-smoothing classifier of the same
  k-means (sigma 0.25 and 0.5; n0 = 100, n = 1,000, alpha = 0.001): its share labelled
  correctly and its certified accuracy at those radii, and the largest radius n copies can
  certify, sigma Phi^-1(alpha^(1/n)).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch
from scipy.stats import norm
from sklearn.cluster import BisectingKMeans
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from advlab.attacks.evasion import KMeansMinimalAttack, KMeansPGD, kmeans_certified_radius
from advlab.attacks.evasion.kmeans_pgd import kmeans_model
from advlab.cluster import KMeans, majority_vote_mapping
from advlab.defenses import (
    ATTACKED,
    ROBUST,
    UNKNOWN,
    RandomizedSmoothing,
    kmeans_certified_radius_through,
    kmeans_is_certified,
    kmeans_is_certified_linear,
    verify_kmeans_linf,
)


def bisecting_off_voronoi() -> float:
    X = np.random.default_rng(0).normal(size=(2000, 5))
    probes = np.random.default_rng(1).normal(size=(5000, 5)) * 1.5
    bisecting = BisectingKMeans(12, random_state=0).fit(X)
    nearest = ((probes[:, None] - bisecting.cluster_centers_[None]) ** 2).sum(-1).argmin(1)
    return float(np.mean(nearest != bisecting.predict(probes)))


def readme_pgd_small_steps() -> float:
    X, y = load_digits(return_X_y=True)
    X_train, y_train, X_test, y_test = X[:1500], y[:1500], X[1500:], y[1500:]
    pipe = make_pipeline(StandardScaler(), PCA(30, random_state=0), KMeans(60, random_state=0))
    pipe.fit(X_train)
    mapping = majority_vote_mapping(pipe.predict(X_train), y_train, 60)
    pgd = KMeansPGD(pipe, mapping, eps=0.5, max_iter=400, eps_step=0.005, bounds=(0.0, 16.0))
    adv = pgd(torch.from_numpy(X_test).float(), torch.from_numpy(y_test)).x_adv.double().numpy()
    return float(np.mean(mapping[pipe.predict(adv)] == y_test))


def breast_cancer_closed_vs_exact() -> dict[str, float]:
    X, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:400], order[400:]
    pipe = make_pipeline(StandardScaler(), KMeans(10, random_state=0)).fit(X[train])
    mapping = majority_vote_mapping(pipe.predict(X[train]), y[train], 10)
    x = torch.from_numpy(X[test])
    sizes = {}
    for name, exact in (("closed_form", False), ("exact", True)):
        attack = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", bounds=None, exact=exact)
        sizes[f"{name}_median"] = float(attack(x).distances.median())
    return sizes


def _breast_cancer_pipeline() -> tuple:
    """Raw breast-cancer rows (400 training, 169 test, seeded split), a StandardScaler and
    k-means (k = 10) fitted on the training rows with its majority-vote mapping: (all rows,
    test indices, pipeline, mapping, test rows as a tensor, their labels, which are correct,
    each feature's training std)."""
    X, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:400], order[400:]
    pipe = make_pipeline(StandardScaler(), KMeans(10, random_state=0)).fit(X[train])
    mapping = majority_vote_mapping(pipe.predict(X[train]), y[train], 10)
    x, labels = torch.from_numpy(X[test]), y[test]
    correct = mapping[pipe.predict(X[test])] == labels
    return X, test, pipe, mapping, x, labels, correct, X[train].std(0)


def breast_cancer_per_feature_budgets() -> list[dict[str, float]]:
    """The pipeline of ``breast_cancer_closed_vs_exact`` under per-feature budgets eps * std_d
    (std over the training rows), all 30 features free, then only the 10 "mean" measurements
    free (the standard errors and worst values frozen): per eps, the shares of test rows
    correct and certified (the radius in the std-weighted norm), robust by the exact attack
    (same norm) and not broken by PGD (50 steps of the box); with the ordering violations
    (certified but not robust, robust but broken by PGD: both must be 0)."""
    X, test, pipe, mapping, x, labels, correct, std = _breast_cancer_pipeline()
    rows = []
    for free, units in (("all 30", std), ("10 means", np.where(np.arange(30) < 10, std, 0.0))):
        radius = kmeans_certified_radius(pipe, X[test], "linf", mapping, scale=units)
        exact = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", bounds=None,
                                    exact=True, scale=units)(x).distances.numpy()  # fmt: skip
        for eps in (0.25, 0.5, 1.0):
            pgd = KMeansPGD(pipe, mapping, eps=eps * units, max_iter=50, bounds=None)
            adv = pgd(x.float(), torch.from_numpy(labels)).x_adv.double().numpy()
            unbroken = mapping[pipe.predict(adv)] == labels
            certified, robust = correct & (radius > eps), correct & (exact > eps)
            rows.append({"features_free": free, "eps_std": eps, "correct": float(correct.mean()),
                         "certified": float(certified.mean()), "exact_robust": float(robust.mean()),
                         "pgd_unbroken": float(unbroken.mean()),
                         "certified_not_robust": int((certified & ~robust).sum()),
                         "robust_and_broken": int((robust & ~unbroken).sum())})  # fmt: skip
    return rows


def breast_cancer_per_feature_bounds() -> list[dict[str, float]]:
    """The pipeline of ``breast_cancer_per_feature_budgets`` (all 30 features free, budgets
    eps * std_d) in three input boxes: open, non-negative (every feature of the data set is a
    size, a count or a ratio: (0, inf) per feature) and each feature's observed range (its
    minimum and maximum over all 569 rows, what ``bounds: feature_range`` gives): per eps, the
    shares of test rows robust by the exact attack in the box and not broken by PGD (50 steps),
    the median exact minimal perturbation of the correct rows (in std units, inf where no
    other class is reachable in the box), and the rows whose exact perturbation the box makes
    larger than the open one's."""
    X, _, pipe, mapping, x, labels, correct, std = _breast_cancer_pipeline()
    boxes = {"open": None, "non-negative": (0.0, np.inf), "observed range": (X.min(0), X.max(0))}
    open_sizes = None
    rows = []
    for name, box in boxes.items():
        exact = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", bounds=box,
                                    exact=True, scale=std)(x).distances.numpy()  # fmt: skip
        open_sizes = exact if open_sizes is None else open_sizes
        for eps in (0.25, 0.5, 1.0, 2.0):
            pgd = KMeansPGD(pipe, mapping, eps=eps * std, max_iter=50, bounds=box)
            adv = pgd(x.float(), torch.from_numpy(labels)).x_adv.double().numpy()
            unbroken = mapping[pipe.predict(adv)] == labels
            robust = correct & (exact > eps)
            rows.append({"box": name, "eps_std": eps, "exact_robust": float(robust.mean()),
                         "pgd_unbroken": float(unbroken.mean()),
                         "median_exact_of_correct": float(np.median(exact[correct])),
                         "rows_larger_than_open": int(np.sum(exact > open_sizes + 1e-6)),
                         "robust_and_broken": int((robust & ~unbroken).sum())})  # fmt: skip
    return rows


def ibp_through_relu_net() -> list[dict[str, float]]:
    X, y = load_digits(return_X_y=True)
    x, y = torch.from_numpy(X[:300] / 16).float().reshape(-1, 1, 8, 8), y[:300]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    with torch.no_grad():
        embedding = net(x).numpy()
    km = KMeans(12, random_state=0).fit(embedding)
    mapping = majority_vote_mapping(km.labels_, y, 12)
    own = torch.from_numpy(mapping[km.labels_])
    rows = []
    for eps in (0.002, 0.005, 0.01, 0.02):
        certified = kmeans_is_certified(km, x, eps, mapping=mapping, features=net)
        broken = KMeansPGD(km, mapping, eps=eps, max_iter=60, random_start=True, random_state=0,
                           features=net)(x, own).success  # fmt: skip
        linear = kmeans_is_certified_linear(km, x, eps, mapping=mapping, features=net)
        start = time.perf_counter()
        exact = verify_kmeans_linf(km, x, eps, mapping=mapping, features=net, time_limit=10)
        seconds = time.perf_counter() - start
        robust = torch.from_numpy(exact.status == ROBUST)
        rows.append({"eps": eps, "certified": float(certified.double().mean()),
                     "linear_certified": float(linear.double().mean()),
                     "pgd_broken": float(broken.double().mean()),
                     "certified_and_broken": int((certified & broken).sum()),
                     "milp_robust": float(robust.double().mean()),
                     "milp_attacked": float(np.mean(exact.status == ATTACKED)),
                     "milp_unknown": float(np.mean(exact.status == UNKNOWN)),
                     "certified_not_robust": int(((certified | linear) & ~robust).sum()),
                     "robust_and_broken": int((robust & broken).sum()),
                     "milp_seconds": round(seconds, 1)})  # fmt: skip
    return rows


def radius_through_relu_net() -> dict[str, float]:
    """The k-means and network of ``ibp_through_relu_net``: median certified radius of the
    300 inputs by interval and by linear bounds (``kmeans_certified_radius_through``, searched
    up to 0.04) and median exact minimal perturbation (``verify_kmeans_linf(minimal=True)``
    within 0.04, programs of 10 s at most; inputs not attacked within it count at 0.04); the
    inputs whose linear radius exceeds their exact size (must be 0), the undecided ones and
    the programs' seconds."""
    X, y = load_digits(return_X_y=True)
    x, y = torch.from_numpy(X[:300] / 16).float().reshape(-1, 1, 8, 8), y[:300]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    with torch.no_grad():
        km = KMeans(12, random_state=0).fit(net(x).numpy())
    mapping = majority_vote_mapping(km.labels_, y, 12)
    cap = 0.04
    radii = {method: kmeans_certified_radius_through(km, x, cap, mapping, features=net,
                                                     method=method)
             for method in ("interval", "linear")}  # fmt: skip
    start = time.perf_counter()
    exact = verify_kmeans_linf(km, x, cap, mapping, features=net, minimal=True, time_limit=10)
    seconds = time.perf_counter() - start
    sizes = np.where(exact.status == ATTACKED, exact.distances, cap)
    decided = exact.status != UNKNOWN
    return {"interval_median": float(np.median(radii["interval"])),
            "linear_median": float(np.median(radii["linear"])),
            "exact_median": float(np.median(sizes)),
            "linear_above_exact": int((radii["linear"][decided] > sizes[decided] + 1e-9).sum()),
            "unknown": int((~decided).sum()), "milp_seconds": round(seconds, 1)}  # fmt: skip


def smoothed_kmeans_digits() -> dict[str, object]:
    """See the module: exact L2 robustness of k-means beside the certificates of its
    randomized-smoothing classifier."""
    X, y = load_digits(return_X_y=True)
    X = X / 16
    km = KMeans(50, random_state=0).fit(X[:1437])
    mapping = majority_vote_mapping(km.labels_, y[:1437], 50)
    x, truth = torch.from_numpy(X[1437:]).float(), y[1437:]
    radii = (0.25, 0.5, 1.0)
    correct = mapping[km.predict(x.numpy())] == truth
    exact = KMeansMinimalAttack(km, mapping, "l2", "other-class", exact=True, max_size=max(radii),
                                bounds=(0.0, 1.0))(x, torch.from_numpy(truth)).distances.numpy()  # fmt: skip
    out: dict[str, object] = {
        "n_test": len(truth),
        "kmeans_clean": float(100 * correct.mean()),
        "kmeans_exact": {f"{r:g}": float(100 * (correct & (exact > r)).mean()) for r in radii},
    }
    classifier = kmeans_model(km, mapping, (0.0, 1.0))
    for sigma in (0.25, 0.5):
        start = time.perf_counter()
        result = RandomizedSmoothing(classifier, sigma, n0=100, n=1000, alpha=0.001).certify(x)
        out[f"smoothed_sigma{sigma:g}"] = {
            "labelled_correctly": float(100 * (result.labels == truth).mean()),
            "certified": {
                f"{r:g}": float(100 * result.certified_accuracy(truth, r)) for r in radii
            },
            "largest_certifiable_radius": float(sigma * norm.ppf(0.001 ** (1 / 1000))),
            "seconds": time.perf_counter() - start,
        }
    return out


@contextlib.contextmanager
def _c_stdout_to_stderr() -> Iterator[None]:
    """Send what C code writes to stdout (HiGHS prints solver notes there) to stderr, so that
    stdout holds the JSON alone."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main() -> None:
    with _c_stdout_to_stderr():
        figures = {
            "bisecting_off_voronoi": bisecting_off_voronoi(),
            "readme_example_2_pgd_400_small_steps": readme_pgd_small_steps(),
            "breast_cancer_closed_vs_exact": breast_cancer_closed_vs_exact(),
            "breast_cancer_per_feature_budgets": breast_cancer_per_feature_budgets(),
            "breast_cancer_per_feature_bounds": breast_cancer_per_feature_bounds(),
            "ibp_through_relu_net": ibp_through_relu_net(),
            "radius_through_relu_net": radius_through_relu_net(),
            "smoothed_kmeans_digits": smoothed_kmeans_digits(),
        }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
