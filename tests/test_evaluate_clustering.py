"""``evaluate-clustering``: a user's own scikit-learn pipeline (imported by name) on their own
.npz rows, poisoned as configured; the numbers equal the attacks called directly, the controls
are there, workers give the serial results, and mistakes are one line before any attack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from advlab.attacks.clustering import BiggioBridge, Chhabra
from advlab.attacks.poisoning import gaussian_noise, inject
from advlab.cli.main import main
from advlab.experiments.executors import LocalExecutor
from advlab.metrics import changed_cluster
from tests.conftest import run_config


def scaled_kmeans(n_clusters: int = 3, random_state: int = 0):
    """The user's pipeline (``tests.test_evaluate_clustering:scaled_kmeans``)."""
    return make_pipeline(StandardScaler(), KMeans(n_clusters, n_init=3, random_state=random_state))


class CountingKMeans(KMeans):
    """KMeans that counts its fits (``tests.test_evaluate_clustering:CountingKMeans``)."""

    fits = 0

    def fit_predict(self, X, y=None, sample_weight=None):
        CountingKMeans.fits += 1
        return super().fit_predict(X, y, sample_weight=sample_weight)


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> Path:
    """120 rows of 3 overlapping blobs in 4 features, no labels in the file."""
    X, _ = make_blobs(120, n_features=4, centers=3, cluster_std=2.5, random_state=0)
    path = tmp_path_factory.mktemp("rows") / "rows.npz"
    np.savez(path, x=X)
    return path


def _config(rows: Path, **changes) -> dict:
    victim = {
        "factory": "tests.test_evaluate_clustering:scaled_kmeans",
        "kwargs": {"n_clusters": 3},
    }
    attacks = [
        {"name": "uniform_outliers", "budgets": [0.05, 0.1]},
        {"name": "gaussian_noise", "budgets": [0.5]},
    ]
    config = {"data": {"path": str(rows)}, "clusterer": victim, "attacks": attacks, "n_seeds": 3}
    return {**config, **changes}


def _run(tmp_path: Path, config: dict, executor=None) -> dict:
    return run_config("evaluate-clustering", tmp_path, config, executor)


@pytest.fixture(scope="module")
def serial(rows, tmp_path_factory) -> dict:
    return _run(tmp_path_factory.mktemp("serial"), _config(rows))


def test_the_numbers_are_those_of_the_attacks_called_directly(rows, serial):
    """Per seed: the pipeline (its KMeans seeded) on the clean rows, uniform outliers injected
    (labelled by that clustering, the file has no labels) or Gaussian noise, the pipeline again;
    ARI and changed share on the original rows, averaged over the 3 seeds."""
    X = np.load(rows)["x"].astype(np.float64)
    got = {c["id"]: c for c in serial["comparisons"]}
    want: dict[str, list[float]] = {}
    for seed in range(3):
        clean = scaled_kmeans(3, seed).fit_predict(X)
        for budget in (0.05, 0.1):
            done = inject("uniform_outliers", X, clean, round(budget * 120), random_state=seed)
            lab = scaled_kmeans(3, seed).fit_predict(done.data)[~done.is_injected]
            want.setdefault(f"uniform_outliers.b{budget:g}.ari_clean", []).append(
                adjusted_rand_score(clean, lab)
            )
            want.setdefault(f"uniform_outliers.b{budget:g}.changed", []).append(
                100 * changed_cluster(clean, lab).mean()
            )
        noisy = gaussian_noise(X, clean, 0.5, random_state=seed).data
        want.setdefault("gaussian_noise.b0.5.ari_clean", []).append(
            adjusted_rand_score(clean, scaled_kmeans(3, seed).fit_predict(noisy))
        )
    for cid, values in want.items():
        assert got[cid]["ours"] == pytest.approx(np.mean(values)), cid
    assert got["uniform_outliers.b0.1.ari_clean"]["n_injected"] == 12
    assert "clean.ari_labels" not in got and "uniform_outliers.b0.1.ari_labels" not in got
    assert got["gaussian_noise.b0.5.ari_clean"]["ours"] < 1  # the measurement moves


def test_the_controls_say_what_an_effect_must_beat(serial):
    """Seed-to-seed agreement of the clean clusterings and, at every injection budget, as many
    real rows drawn again: both near 1 here, where the attacks at 10 % are lower."""
    got = {c["id"]: c["ours"] for c in serial["comparisons"]}
    assert 0.5 < got["control.seed_to_seed.ari"] <= 1
    assert {"control.resample.b0.05.ari_clean", "control.resample.b0.1.ari_clean"} <= set(got)
    assert got["control.resample.b0.1.ari_clean"] > got["uniform_outliers.b0.1.ari_clean"]


def test_labels_figures_report_and_workers(rows, serial, tmp_path):
    """With labels in the file, the ARI with them is measured too; the figures and the HTML
    report exist; two local workers give the serial results.json."""
    X = np.load(rows)["x"]
    _, y = make_blobs(120, n_features=4, centers=3, cluster_std=2.5, random_state=0)
    np.savez(tmp_path / "labelled.npz", x=X, y=y)
    labelled = _run(tmp_path / "l", _config(rows, data={"path": str(tmp_path / "labelled.npz")}))
    ids = {c["id"] for c in labelled["comparisons"]}
    assert {"clean.ari_labels", "uniform_outliers.b0.1.ari_labels"} <= ids
    run = tmp_path / "l" / "run"
    assert (run / "poisoning-injected.png").is_file()
    assert (run / "poisoning-gaussian_noise.png").is_file()
    assert main(["report", str(run), "--html", str(tmp_path / "r.html")]) == 0
    assert "changed cluster" in (tmp_path / "r.html").read_text()
    assert _run(tmp_path / "w", _config(rows), LocalExecutor(2)) == serial


def test_cina_queries_the_users_pipeline(rows, tmp_path):
    """Cinà's black-box search runs against the pipeline itself and moves points."""
    config = _config(rows, attacks=[{"name": "cina", "budgets": [0.3],
                                     "params": {"delta": 1.0, "generations": 5, "population": 2}}],
                     n_seeds=2)  # fmt: skip
    got = {c["id"]: c["ours"] for c in _run(tmp_path, config)["comparisons"]}
    assert got["cina.b0.3.ari_clean"] < 1 and got["cina.b0.3.changed"] > 0  # it moved points
    assert "control.resample.b0.3.ari_clean" not in got  # Cina injects nothing: no resampling


def test_plan_counts_the_units_and_fits_the_run_makes(rows, tmp_path, capsys):
    """advlab plan: a clean unit per seed, a unit per attack, budget and seed (the resample
    control at the injection budgets), and as many fits as the run then makes (Cina: its
    reference fit, G x P children, the unit's refit; Chhabra's rounds; Biggio's greedy bridge, a
    fit per pair of the 3 clusters per point), at a rate timed on the user's clusterer."""
    config = _config(
        rows, clusterer={"factory": "tests.test_evaluate_clustering:CountingKMeans",
                         "kwargs": {"n_clusters": 3, "n_init": 2}},
        attacks=[{"name": "uniform_outliers", "budgets": [0.05, 0.1]},
                 {"name": "cina", "budgets": [0.3], "params": {"generations": 5, "population": 2}},
                 {"name": "chhabra", "budgets": [1.0], "params": {"n_line": 3, "n_random": 2, "batch": 2}},
                 {"name": "biggio", "budgets": [0.05], "params": {"strategy": "best"}}],
        n_seeds=2,
    )  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate-clustering", **config}))
    assert main(["plan", str(path), "--workers", "1", "2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["units"] == {"clean (seeds)": 2, "uniform_outliers (budgets x seeds)": 4,
                             "cina (budgets x seeds)": 2, "chhabra (budgets x seeds)": 2,
                             "biggio (budgets x seeds)": 2, "resample (budgets x seeds)": 4,
                             "random_move (budgets x seeds)": 2}  # fmt: skip
    fits = {a["what"]: a["image_steps"] for a in plan["attacks"]}
    assert fits == {"clean fits": 2, "uniform_outliers": 4, "cina": 2 * (2 + 5 * 2),
                    "chhabra": 2 * (2 + 3 + 2 * 3), "biggio": 2 * (3 + 6 * 3), "resample": 4,
                    "random_move": 2}  # fmt: skip
    assert all(a["image_steps_per_second"] > 0 for a in plan["attacks"])
    assert plan["attack_hours"]["2"] < plan["attack_hours"]["1"]
    CountingKMeans.fits = 0
    _run(tmp_path, config)  # serial: every fit in this process
    assert CountingKMeans.fits == sum(fits.values())


def test_the_attacks_of_the_literature_run_against_the_users_estimator(rows, tmp_path):
    """Chhabra's spill-over (one point moved by at most its budget, beside that point moved to
    a random corner of the same ball), Biggio's bridge (injected at a share of N, with its
    resample control) and Crussell's merge of a DBSCAN victim, each
    queried per seed: the numbers are those of the attack classes called directly."""
    X = np.load(rows)["x"].astype(np.float64)
    config = _config(rows, attacks=[
        {"name": "chhabra", "budgets": [2.0], "params": {"n_line": 6, "n_random": 4, "batch": 4}},
        {"name": "biggio", "budgets": [0.05]},
    ], n_seeds=2)  # fmt: skip
    got = {c["id"]: c for c in _run(tmp_path / "a", config)["comparisons"]}
    want: dict[str, list[float]] = {}
    for seed in range(2):
        clean = scaled_kmeans(3, seed).fit_predict(X)
        for cid, attack in (
            ("chhabra.b2", Chhabra(scaled_kmeans(3, seed), budget=2.0, box=None, n_line=6,
                                   n_random=4, batch=4)),
            ("biggio.b0.05", BiggioBridge(scaled_kmeans(3, seed), n_points=6)),
        ):  # fmt: skip
            done = attack.attack(X, random_state=seed)
            lab = scaled_kmeans(3, seed).fit_predict(done.data)[~done.is_injected]
            want.setdefault(f"{cid}.changed", []).append(100 * changed_cluster(clean, lab).mean())
            if cid == "chhabra.b2":
                assert len(done.touched) == 1 and np.abs(done.delta).max() <= 2.0
                moved = X.copy()  # the control: that point to a random corner of the same ball
                moved[done.touched[0]] += 2.0 * np.random.default_rng(seed).choice([-1.0, 1.0], 4)
                lab = scaled_kmeans(3, seed).fit_predict(moved)
                want.setdefault("control.random_move.b2.changed", []).append(
                    100 * changed_cluster(clean, lab).mean()
                )
    for cid, values in want.items():
        assert got[cid]["ours"] == pytest.approx(np.mean(values)), cid
    assert got["chhabra.b2.changed"]["ours"] > 0  # one moved point moved others
    assert got["biggio.b0.05.ari_clean"]["n_injected"] == 6
    assert "control.resample.b0.05.ari_clean" in got
    rng = np.random.default_rng(0)
    two = np.vstack([rng.normal(0, 0.3, (60, 2)) + np.array([d, 0.0]) for d in (0.0, 5.0)])
    np.savez(tmp_path / "two.npz", x=two)
    dbscan = _config(tmp_path / "two.npz", clusterer={"factory": "sklearn.cluster:DBSCAN",
                                                      "kwargs": {"eps": 0.45, "min_samples": 5}},
                     attacks=[{"name": "crussell", "budgets": [0.05, 0.25]}], n_seeds=2)  # fmt: skip
    merged = {c["id"]: c["ours"] for c in _run(tmp_path / "b", dbscan)["comparisons"]}
    assert merged["crussell.b0.25.ari_clean"] == pytest.approx(0.0, abs=0.05)  # one cluster now
    assert merged["crussell.b0.05.ari_clean"] == pytest.approx(1.0)  # 6 points: a broken line
    assert merged["control.resample.b0.25.ari_clean"] == pytest.approx(1.0)


MISTAKES = {
    "crussell on k-means": ({"attacks": [{"name": "crussell", "budgets": [0.1]}]},
                            "attack 'crussell': the victim must be DBSCAN-like"),
    "not a clusterer": ({"clusterer": {"factory": "sklearn.preprocessing:StandardScaler"}},
                        "has no fit_predict"),
    "misspelt argument": ({"clusterer": {"factory": "sklearn.cluster:KMeans",
                                         "kwargs": {"n_clusterz": 3}}}, "clusterer.kwargs"),
    "unknown module": ({"clusterer": {"factory": "nowhere.at_all:KMeans"}}, "cannot be imported"),
    "unknown attack param": ({"attacks": [{"name": "mimicry", "budgets": [0.1],
                                           "params": {"margin": 2}}]}, "mimicry takes params"),
    "budget too large": ({"attacks": [{"name": "bridge_points", "budgets": [0.6]}]},
                         "would inject more than half of the 120 rows"),
    "attack twice": ({"attacks": [{"name": "mimicry", "budgets": [0.1]},
                                  {"name": "mimicry", "budgets": [0.2]}]}, "each attack once"),
}  # fmt: skip


@pytest.mark.parametrize("what", MISTAKES)
def test_a_mistake_is_one_error_before_any_attack(rows, tmp_path, capsys, what):
    changes, message = MISTAKES[what]
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"experiment": "evaluate-clustering", **_config(rows, **changes)})
    )
    code = main(["run", str(path), "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not list((tmp_path / "run").glob("units/*-seed*"))


def test_rows_of_the_wrong_shape_are_named(tmp_path, capsys):
    np.savez(tmp_path / "images.npz", x=np.zeros((10, 1, 4, 4)))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate-clustering",
                                    **_config(tmp_path / "images.npz")}))  # fmt: skip
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "must have shape (N, D)" in capsys.readouterr().err


def test_a_run_refuses_to_resume_on_changed_rows(tmp_path):
    """Units computed on one .npz are never mixed with another: the same config over changed
    rows is refused, naming the data."""
    from advlab.experiments import ConfigError

    X, _ = make_blobs(40, n_features=3, centers=2, random_state=0)
    np.savez(tmp_path / "rows.npz", x=X)
    config = _config(tmp_path / "rows.npz", n_seeds=2,
                     attacks=[{"name": "uniform_outliers", "budgets": [0.1]}])  # fmt: skip
    _run(tmp_path, config)
    np.savez(tmp_path / "rows.npz", x=X + 1)
    with pytest.raises(ConfigError, match="the data changed since this run directory"):
        _run(tmp_path, config)


def _write_csv(path: Path, X: np.ndarray, labels: list[str] | None = None) -> Path:
    """Rows as a .csv file with a header line (float32 values written exactly)."""
    header = [f"f{j}" for j in range(X.shape[1])] + (["kind"] if labels is not None else [])
    lines = [",".join(header)]
    for i, row in enumerate(X.astype(np.float32)):
        cells = [repr(float(v)) for v in row] + ([labels[i]] if labels is not None else [])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_rows_with_class_names_give_the_npz_results(rows, tmp_path):
    """The rows and labels of an .npz as a .csv file whose label column holds class names: the
    same comparisons, the ARI with the labels included (names are codes in sorted order)."""
    X = np.load(rows)["x"]
    _, y = make_blobs(120, n_features=4, centers=3, cluster_std=2.5, random_state=0)
    np.savez(tmp_path / "labelled.npz", x=X, y=y)
    names = ["setosa", "versicolor", "virginica"]
    csv = _write_csv(tmp_path / "rows.csv", X, [names[2 - c] for c in y])  # another order
    small = {"attacks": [{"name": "uniform_outliers", "budgets": [0.1]}], "n_seeds": 2}
    want = _run(
        tmp_path / "n", _config(rows, data={"path": str(tmp_path / "labelled.npz")}, **small)
    )
    got = _run(tmp_path / "c", _config(rows, data={"path": str(csv), "y_key": "kind"}, **small))
    ours = {c["id"]: c["ours"] for c in got["comparisons"]}
    assert ours == {c["id"]: c["ours"] for c in want["comparisons"]}
    assert "uniform_outliers.b0.1.ari_labels" in ours


CSV_MISTAKES = {
    "ragged row": ("f0,f1\n1,2\n3\n", "line 3 has 1 cells, the header 2"),
    "a word among the numbers": ("f0,f1\n0,2\n0,four\n", "column 'f1', line 3: 'four' is not a finite number"),
    "labels not named as such": ("f0,kind\n1,a\n3,b\n", "if it holds the labels, set data.y_key"),
    "an empty cell": ("f0,f1\n0,0\n1,\n", "column 'f1', line 3: '' is not a finite number\n"),
    "nan": ("f0,f1\n0,0\n\n1,nan\n", "column 'f1', line 4: 'nan' is not a finite number"),
    "no rows": ("f0,f1\n", "needs a header line naming its columns and rows"),
}  # fmt: skip


@pytest.mark.parametrize("what", CSV_MISTAKES)
def test_a_csv_mistake_is_named_in_one_line(tmp_path, capsys, what):
    content, message = CSV_MISTAKES[what]
    (tmp_path / "rows.csv").write_text(content)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate-clustering",
                                    **_config(tmp_path / "rows.csv")}))  # fmt: skip
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_an_attack_that_cannot_run_on_the_rows_is_named_in_one_line(tmp_path, capsys):
    """Mimicry on four evenly spaced rows, where its detector finds no outlier to conceal: one
    line naming the attack and what to change, not a traceback from inside a unit."""
    np.savez(tmp_path / "grid.npz", x=np.array([[1.0, 2], [3, 4], [5, 6], [7, 8]]))
    config = _config(tmp_path / "grid.npz", attacks=[{"name": "mimicry", "budgets": [0.1]}])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate-clustering", **config}))
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "attack 'mimicry' at budget 0.1 (seed 0) cannot run on grid.npz" in err, err
    assert "leave it out of attacks" in err and "Traceback" not in err


def test_a_missing_relative_file_names_the_directory_it_was_looked_for_in(
    rows, tmp_path, capsys, monkeypatch
):
    """Relative paths are read from the current directory (not the config's): the error says
    which directory that was; the same relative path from the file's directory runs."""
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "rows.npz", x=np.load(rows)["x"])
    config = _config(Path("rows.npz"), attacks=[{"name": "gaussian_noise", "budgets": [0.5]}],
                     n_seeds=2)  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate-clustering", **config}))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    assert f"data.path 'rows.npz': no such file in the current directory {tmp_path}" in (
        capsys.readouterr().err
    )
    monkeypatch.chdir(tmp_path / "data")
    assert main(["run", str(path), "--out", str(tmp_path / "run2")]) == 0
