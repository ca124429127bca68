"""Refits per second of Cinà et al.'s genetic attack against k-means: the victim as advlab's
warm-started ``KMeans`` (a population's refits batched by ``fit_predict_many``) or as
scikit-learn's ``KMeans`` from the same centres (one fit per candidate), same search, same seed.

    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/cina_refits.py [--populations 1 4 8]

Data: Fashion-MNIST shirts vs ankle boots, the first ``--per-class`` training images of each
(the experiment's case (a)), s = 0.2, delta = 0.4. Prints one JSON line per population size
with both rates, their ratio and whether the two searches found the same objective history
(they should: the same labels in the same order). Not a test: compare numbers from one run.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.cluster import KMeans as SKKMeans

from advlab.attacks.clustering import Cina
from advlab.cluster import KMeans
from advlab.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-class", type=int, default=800)
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument("--populations", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    ds = load_dataset("fashion-mnist", "train")
    rows = np.concatenate([np.flatnonzero(ds.labels == c)[: args.per_class] for c in (6, 9)])
    X = ds.data[np.sort(rows)].astype(np.float64)
    centres = KMeans(2, n_init=10, random_state=0).fit(X).cluster_centers_
    victims = {"advlab": lambda: KMeans(2, init=centres),
               "sklearn": lambda: SKKMeans(2, init=centres, n_init=1)}  # fmt: skip
    for population in args.populations:
        row: dict[str, object] = {"n": len(X), "d": X.shape[1], "population": population,
                                  "generations": args.generations}  # fmt: skip
        histories = {}
        for name, victim in victims.items():
            result = Cina(victim(), s=0.2, delta=0.4, generations=args.generations,
                          population=population).attack(X, random_state=0)  # fmt: skip
            row[f"{name}_refits_per_s"] = round(result.refits_per_second, 1)
            histories[name] = result.objective
        row["ratio"] = round(row["advlab_refits_per_s"] / row["sklearn_refits_per_s"], 2)  # type: ignore[operator]
        row["same_search"] = bool(np.allclose(histories["advlab"], histories["sklearn"]))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
