from __future__ import annotations

from pathlib import Path

import pytest

from advlab.experiments import Cache, get_experiment, run_experiment, validate_config

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.ipynb"))


def test_poison_cluster_tiny_run(tmp_path):
    exp = get_experiment("poison-cluster")
    config = validate_config(
        exp.config_cls,
        {"datasets": ["iris"], "n_seeds": 2, "attacks": ["none", "uniform_outliers", "mimicry"],
         "defenses": ["kmeans", "kmeans--", "sanitized-lof"], "budgets": [0.05],
         "budget_attacks": ["uniform_outliers", "mimicry"]},
    )  # fmt: skip
    results = run_experiment(exp, config, tmp_path / "run", Cache(tmp_path / "c"), quiet=True)
    ids = {c["id"]: c for c in results["comparisons"]}
    for reading in ("first_collapse", "reliable"):
        row = ids[f"flip_ratio.{reading}.iris"]
        assert row["paper"] == 0.7 and 0.0 <= row["ours"] <= 1.0
    # 'reliable' is the first ratio at which >= 80 % of the seeds have collapsed
    sweep = results["flip_sweeps"]["iris"]
    at = sweep["ratios"].index(ids["flip_ratio.reliable.iris"]["ours"])
    assert sweep["collapsed_share"][at] >= 0.8 and all(
        v < 0.8 for v in sweep["collapsed_share"][:at]
    )
    # budget-matched: both attacks inject round(0.05 * 150) = 8 points
    for attack in ("uniform_outliers", "mimicry"):
        row = ids[f"iris.budget_matched.{attack}.b0.05"]
        assert row["n_injected"] == 8 and 0.0 <= row["ours"] <= 100.0
    # the defense told the count runs with the oracle and with the DBSCAN estimate
    for told in ("oracle", "no_oracle"):
        assert 0.0 <= ids[f"iris.mimicry.kmeans--.{told}"]["ours"] <= 100.0
    assert results["summary"]["iris/mimicry"]["n_estimated"] >= 1
    assert ids["mimicry.survival.iris"]["ours"] > ids["uniform_outliers.survival.iris"]["ours"]
    clean = results["summary"]["iris/none"]["kmeans"]
    assert clean["acc_hungarian"]["mean"] > 75.0 and clean["changed_cluster"]["mean"] == 0.0
    attacked = results["summary"]["iris/uniform_outliers"]["kmeans--"]
    assert attacked["defense_caught_injected"]["mean"] > 50.0
    for name in ("pca-iris.png", "heatmap-iris.png", "flip-sweep.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000
    assert isinstance(results["improved_internal_metrics"], list)


@pytest.mark.parametrize("notebook", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_notebooks_execute(notebook):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    book = nbformat.read(notebook, as_version=4)
    nbclient.NotebookClient(book, timeout=300, kernel_name="python3").execute()
    outputs = [
        o for cell in book.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.get("output_type") == "error"]
