"""``demo``: k-means on a small image set, clusters mapped to classes by majority vote.

The smallest end-to-end run of the pipeline the Omari et al. reproduction uses: fit k-means
on the training split (labels unseen), learn the majority-vote mapping on the training split,
report test accuracy, one unit per repetition.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import numpy as np
from pydantic import Field

from advlab.cluster import KMeans, clustering_accuracy, majority_vote_mapping
from advlab.data import load_dataset
from advlab.experiments.config import ExperimentConfig
from advlab.experiments.registry import register
from advlab.experiments.runner import RunContext
from advlab.utils.progress import progress


class DemoConfig(ExperimentConfig):
    dataset: Literal["digits", "iris", "breast-cancer", "blobs", "mnist", "fashion-mnist"] = (
        "digits"
    )
    n_clusters: int = Field(40, ge=1)
    n_repeats: int = Field(5, ge=1)


def _fit_and_score(config: DemoConfig, train, test, seed: int) -> dict[str, Any]:
    km = KMeans(n_clusters=config.n_clusters, random_state=seed).fit(train.data)
    mapping = majority_vote_mapping(km.labels_, train.labels, config.n_clusters)
    return {
        "seed": seed,
        "train_accuracy": 100 * clustering_accuracy(train.labels, km.labels_, mapping),
        "test_accuracy": 100 * clustering_accuracy(test.labels, km.predict(test.data), mapping),
        "inertia": float(km.inertia_),
    }


@register(
    "demo",
    DemoConfig,
    description="k-means + majority vote on the scikit-learn digits (pipeline smoke run)",
)
def run_demo(config: DemoConfig, ctx: RunContext) -> dict[str, Any]:
    train = load_dataset(config.dataset, "train")
    test = load_dataset(config.dataset, "test")
    if config.n_clusters > len(train):
        raise ValueError(f"n_clusters={config.n_clusters} exceeds the {len(train)} training points")
    ctx.record_dataset(train)
    ctx.record_dataset(test)
    repeats = []
    for r in progress(range(config.n_repeats), desc="repetitions"):
        seed = config.seed + r
        ctx.record_seed(f"repeat{r}", seed)
        repeats.append(ctx.unit(f"repeat{r}", partial(_fit_and_score, config, train, test, seed)))
    acc = np.array([r["test_accuracy"] for r in repeats])
    ctx.log.info(
        "test accuracy %.2f +- %.2f %% over %d repetitions", acc.mean(), acc.std(), len(acc)
    )
    return {
        "repeats": repeats,
        "comparisons": [
            {
                "id": f"demo.{config.dataset}.k{config.n_clusters}.test_accuracy",
                "ours": float(acc.mean()),
                "paper": None,
                "unit": "%",
                "std": float(acc.std()),
            },
        ],
    }
