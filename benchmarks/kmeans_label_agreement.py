"""How far long Lloyd runs from the same start agree when only the arithmetic differs.

On uniform float32 data (the grid's `uniform n=60k d=50 k=100`, explicit init of seed 1),
scikit-learn against itself: Lloyd vs Elkan, and float32 vs float64; then advlab against
scikit-learn. Prints JSON: iterations, share of equal labels, inertia ratio.

    .venv/bin/python benchmarks/kmeans_label_agreement.py
"""

from __future__ import annotations

import json
import warnings

import numpy as np
from sklearn.cluster import KMeans as SKKMeans

from advlab.cluster import KMeans


def main() -> None:
    warnings.simplefilter("ignore")
    X = np.random.default_rng(60000 + 50).uniform(size=(60000, 50)).astype(np.float32)
    init = X[np.random.default_rng(1).choice(len(X), 100, replace=False)]
    ref = SKKMeans(100, init=init, n_init=1, algorithm="lloyd").fit(X)
    others = {
        "sklearn elkan": SKKMeans(100, init=init, n_init=1, algorithm="elkan").fit(X),
        "sklearn lloyd float64": SKKMeans(100, init=init, n_init=1, algorithm="lloyd").fit(
            X.astype(np.float64)
        ),
        "advlab": KMeans(100, init=init).fit(X),
    }
    out = {"reference": "sklearn lloyd float32", "reference_iterations": int(ref.n_iter_)}
    for name, km in others.items():
        out[name] = {
            "iterations": int(km.n_iter_),
            "labels_equal": float(np.mean(km.labels_ == ref.labels_)),
            "inertia_ratio": float(km.inertia_ / ref.inertia_),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
