"""``elbow``: the elbow method on MNIST / Fashion-MNIST, as Omari et al. used to pick k = 856.

One unit per (dataset, k): a k-means fit and its inertia. The knee of inertia(k) is found
with kneed (``advlab.cluster.find_knee``); the curve is saved as ``elbow-<dataset>.png/svg``.
The knee of an inertia curve depends on the range of k scanned, so the config's ``ks`` is part
of the result.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import numpy as np
from pydantic import Field

from advlab.cluster import KMeans, find_knee
from advlab.data import load_dataset
from advlab.experiments.config import ExperimentConfig
from advlab.experiments.registry import register
from advlab.experiments.reporting import paper_data
from advlab.experiments.runner import RunContext
from advlab.report.plots import plot_elbow
from advlab.report.tables import Table

PAPER_K: int = paper_data("omari2024", "n_clusters")


class ElbowConfig(ExperimentConfig):
    datasets: tuple[Literal["mnist", "fashion-mnist", "digits"], ...] = ("mnist", "fashion-mnist")
    ks: tuple[int, ...] = (10, 25, 50, 100, 200, 400, 600, 856, 1200, 1600)
    n_train: int | None = Field(None, ge=2, description="first n training images (None: all)")
    device: str = "cpu"


def _inertia(data: np.ndarray, k: int, config: ElbowConfig) -> dict[str, float]:
    return {
        "inertia": float(
            KMeans(k, random_state=config.seed, device=config.device).fit(data).inertia_
        )
    }


def _report_tables(results: dict[str, Any], config: dict[str, Any]) -> list[Table]:
    """Inertia per k for each dataset, and the knee kneed finds."""
    curves = results["curves"]
    names = list(curves)
    ks = curves[names[0]]["ks"] if names else []
    rows = [[str(k)] + [f"{curves[n]['inertias'][i]:.4g}" for n in names] for i, k in enumerate(ks)]
    rows.append(["knee"] + [str(curves[n]["knee"]) for n in names])
    n_train = config.get("n_train") or "all"
    return [Table(f"k-means inertia against k ({n_train} training images; knee by kneed)",
                  ("k", *names), rows)]  # fmt: skip


@register(
    "elbow",
    ElbowConfig,
    description="elbow method (inertia vs k, kneed knee) on MNIST and Fashion-MNIST",
    tables=_report_tables,
)
def run_elbow(config: ElbowConfig, ctx: RunContext) -> dict[str, Any]:
    ks = sorted(set(config.ks))
    if len(ks) < 3 or ks[0] < 1:
        raise ValueError(f"ks must hold at least 3 positive values, got {list(config.ks)}")
    comparisons, curves = [], {}
    for name in config.datasets:
        train = load_dataset(name, "train")
        if config.n_train is not None:
            train = train.subset(slice(0, config.n_train))
        if ks[-1] > len(train):
            raise ValueError(f"k={ks[-1]} exceeds the {len(train)} training images of {name}")
        ctx.record_dataset(train)
        done = ctx.units({f"{name}-k{k}": partial(_inertia, train.data, k, config) for k in ks},
                         desc=f"elbow {name}")  # fmt: skip
        inertias = [done[f"{name}-k{k}"]["inertia"] for k in ks]
        knee = find_knee(ks, inertias)
        plot_elbow(
            ks, inertias, knee, f"Elbow, {name} ({len(train)} images)", ctx.path(f"elbow-{name}")
        )
        ctx.log.info("%s: knee at k = %s", name, knee)
        curves[name] = {"ks": ks, "inertias": inertias, "knee": knee}
        comparisons.append(
            {
                "id": f"elbow.{name}.knee",
                "ours": float(knee or 0),
                "paper": float(PAPER_K),
                "unit": "k",
            }
        )
    return {"curves": curves, "comparisons": comparisons}
