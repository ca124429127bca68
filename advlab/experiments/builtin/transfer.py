"""``transfer``: k-means accuracy under I-FGSM examples crafted on a supervised surrogate, as a
function of eps, in pixel units and in standardized units (Omari et al., the start of Fig. 2).

For each eps: the transfer attack's accuracy (test images attacked through the surrogate), and
two references that use k-means itself: the exact white-box attack (KMeansPGD on the k-means
margin, L-inf, same eps in pixels) and the certified lower bound (points correctly mapped whose
class-aware L-inf radius exceeds eps). One unit per (units, eps): a picklable job that any
executor runs.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from advlab.attacks.evasion import KMeansPGD, kmeans_certified_radius
from advlab.data import load_dataset
from advlab.experiments.builtin._shared import (
    AdversarialPool,
    AttackSpec,
    fit_mapped_kmeans,
    mapped_accuracy,
    surrogate,
)
from advlab.experiments.config import ExperimentConfig
from advlab.experiments.registry import register
from advlab.experiments.reporting import paper_data
from advlab.experiments.runner import RunContext
from advlab.metrics import robust_accuracy_curve
from advlab.report.tables import Table

PAPER_START_ADV_ACC: dict[str, float] = paper_data("omari2024", "start_adv_acc")


class TransferConfig(ExperimentConfig):
    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    surrogate: Literal["small_cnn", "lenet5", "fc1", "resnet18"] = "small_cnn"
    surrogate_epochs: int = Field(2, ge=1)
    surrogate_schedule: Literal["constant", "cosine"] = "constant"
    input_normalization: tuple[float, float] = Field(
        (0.1307, 0.3081),
        description="mean and std the surrogate normalises its [0, 1] inputs with (MNIST's); "
        "the std is also the unit of standardized eps",
    )
    n_clusters: int = Field(856, ge=2)
    n_test: int | None = Field(None, ge=1)
    pixel_eps: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
    standardized_eps: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    max_iter: int = Field(10, ge=1)
    whitebox_iter: int = Field(20, ge=1)
    device: str = "cpu"


def _report_tables(results: dict[str, Any], config: dict[str, Any]) -> list[Table]:
    """k-means accuracy under attack per eps (both units), with the two k-means references."""
    rows = [[r["units"], f"{r['eps']:g}", f"{r['eps_pixels']:.3f}", f"{r['transfer_accuracy']:.1f}",
             f"{r['whitebox_accuracy']:.1f}", f"{r['certified_accuracy']:.1f}"] for r in results["rows"]]  # fmt: skip
    title = (
        f"k-means (k = {config['n_clusters']}) accuracy in % on {config.get('n_test') or 'all'} "
        f"{config['dataset']} test images, clean {results['clean_accuracy']:.2f} %; I-FGSM through "
        f"{config['surrogate']} ({config['surrogate_epochs']} epochs, {config['surrogate_schedule']}, "
        f"{results['surrogate_accuracy']:.2f} % test accuracy), {config['max_iter']} steps of eps/4"
    )
    return [Table(title, ("eps units", "eps", "eps in [0, 1] pixels",
                          f"transfer from {config['surrogate']}", "white-box k-means PGD",
                          "certified lower bound"), rows)]  # fmt: skip


def _unit(
    pool: AdversarialPool,
    km: Any,
    mapping: np.ndarray,
    correct: np.ndarray,
    radius: np.ndarray,
    units: str,
    eps: float,
    whitebox_iter: int,
) -> dict[str, Any]:
    """One eps: k-means accuracy on the surrogate's I-FGSM images, under the white-box PGD at
    the same eps in pixels, and its certified lower bound (a picklable job)."""
    test = pool.ds
    assert test.images is not None
    adv = pool.get(eps)
    eps_px = pool.eps_pixels(eps)
    wb = KMeansPGD(km, mapping, eps=eps_px, max_iter=whitebox_iter)
    wb_x = wb(torch.from_numpy(test.images), torch.from_numpy(test.labels)).x_adv.numpy()
    return {
        "units": units, "eps": eps, "eps_pixels": eps_px,
        "transfer_accuracy": mapped_accuracy(km, mapping, adv.reshape(len(adv), -1), test.labels),
        "whitebox_accuracy": mapped_accuracy(km, mapping, wb_x.reshape(len(wb_x), -1), test.labels),
        "certified_accuracy": float(robust_accuracy_curve(correct, radius, [eps_px])[0]),
    }  # fmt: skip


@register(
    "transfer",
    TransferConfig,
    description="k-means (k=856) accuracy vs eps under surrogate I-FGSM, pixel vs standardized eps units",
    tables=_report_tables,
)
def run_transfer(config: TransferConfig, ctx: RunContext) -> dict[str, Any]:
    model, key, sur_acc = surrogate(
        ctx, config.surrogate, config.surrogate_epochs, config.device,
        schedule=config.surrogate_schedule, normalization=config.input_normalization,
    )  # fmt: skip
    train, test = load_dataset(config.dataset, "train"), load_dataset(config.dataset, "test")
    if config.n_test is not None:
        test = test.subset(slice(0, config.n_test))
    ctx.record_dataset(train)
    ctx.record_dataset(test)
    km, mapping = fit_mapped_kmeans(
        train.data, train.labels, config.n_clusters, config.seed, config.device
    )
    clean = mapped_accuracy(km, mapping, test.data, test.labels)
    ctx.log.info("k-means clean test accuracy %.2f %%", clean)
    radius = kmeans_certified_radius(km, test.data, "linf", mapping=mapping)
    correct = mapping[km.predict(test.data)] == test.labels
    jobs = {}
    for units, grid in (("pixel", config.pixel_eps), ("standardized", config.standardized_eps)):
        pool = AdversarialPool(ctx.cache, model, key, test, AttackSpec(units, config.max_iter))
        for eps in grid:
            # the pool (surrogate included), the fitted k-means and the radii travel with the job
            jobs[f"{units}-eps{eps}"] = partial(
                _unit, pool, km, mapping, correct, radius, units, eps, config.whitebox_iter
            )
    rows = list(ctx.units(jobs, desc="transfer").values())
    for row in rows:
        ctx.log.info("%s", row)
    at_one = {r["units"]: r["transfer_accuracy"] for r in rows if r["eps"] == 1.0}
    paper = PAPER_START_ADV_ACC[config.dataset]
    comparisons = [
        {"id": f"transfer.{config.dataset}.clean", "ours": clean, "paper": None, "unit": "%"},
        *(
            {"id": f"transfer.{config.dataset}.eps1.{u}", "ours": a, "paper": paper, "unit": "%"}
            for u, a in at_one.items()
        ),
    ]
    return {
        "surrogate_accuracy": sur_acc,
        "clean_accuracy": clean,
        "rows": rows,
        "comparisons": comparisons,
    }
