"""``evaluate-kmeans``: k-means under evasion on a user's own data with their own surrogate; the
numbers equal the attacks called directly, the certified bound lies below every attack,
workers give the serial results, and mistakes are one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_model
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler, minmax_scale
from torch import nn

from advlab.attacks.evasion import (
    IFGSM,
    PGD,
    KMeansMinimalAttack,
    KMeansPGD,
    kmeans_certified_radius,
)
from advlab.attacks.evasion.kmeans_pgd import kmeans_model
from advlab.cli.main import main
from advlab.cluster import KMeans, majority_vote_mapping
from advlab.data import load_dataset
from advlab.defenses import KMeansAdversarialTraining, RandomizedSmoothing, SurrogateAttack
from advlab.experiments import Cache
from advlab.experiments.config import ConfigError
from advlab.experiments.executors import LocalExecutor
from advlab.models import Model, train_classifier
from tests.conftest import run_config

CHUNK = 40


def rows_net(n_features: int = 30, width: int = 16, n_classes: int = 2) -> nn.Module:
    """The user's network on tabular rows (``tests.test_evaluate_kmeans:rows_net``)."""
    return nn.Sequential(nn.Linear(n_features, width), nn.ReLU(), nn.Linear(width, n_classes))


def encoder(width: int = 32, out: int = 8) -> nn.Module:
    """The user's embedding network on the 8x8 digits (``tests.test_evaluate_kmeans:encoder``)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, out))


def smooth_encoder() -> nn.Module:
    """An embedding network that is not piecewise linear: linear bounds take it, exact
    verification does not (``tests.test_evaluate_kmeans:smooth_encoder``)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh())


def normalised_encoder() -> nn.Module:
    """An embedding network that only interval bounds take: a layer normalisation
    (``tests.test_evaluate_kmeans:normalised_encoder``)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.LayerNorm(8))


def scale_and_reduce(n_components: int = 15) -> Pipeline:
    """The user's preprocessing (``tests.test_evaluate_kmeans:scale_and_reduce``); its
    random_state is replaced by the run's seed."""
    return make_pipeline(StandardScaler(), PCA(n_components, random_state=123))


def _digits_config(**changes) -> dict:
    config = {
        "train": {"name": "digits", "split": "train"},
        "test": {"name": "digits", "split": "test", "n": 100},
        "n_clusters": 20,
        "surrogate": {"factory": "mlp", "train_epochs": 3},
        "eps": [0.1, 0.2],
        "max_iter": 5,
        "whitebox_iter": 10,
        "chunk_size": CHUNK,
    }
    return {**config, **changes}


def _run(tmp_path: Path, config: dict, executor=None) -> dict:
    return run_config("evaluate-kmeans", tmp_path, config, executor)


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("serial")
    return tmp, _run(tmp, _digits_config())


def _chunked(attack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.cat(
        [attack(x[s : s + CHUNK], y[s : s + CHUNK]).x_adv for s in range(0, len(x), CHUNK)]
    )


def test_the_numbers_are_those_of_the_attacks_called_directly(serial):
    """k-means fitted and mapped on the training digits; the transfer I-FGSM through the
    zoo surrogate trained on them, the white-box PGD and the certified radius, chunk by chunk."""
    tmp, results = serial
    got = {c["id"]: c for c in results["comparisons"]}
    train, test = (
        load_dataset("digits", "train"),
        load_dataset("digits", "test").subset(slice(0, 100)),
    )
    km = KMeans(20, random_state=0).fit(train.data)
    mapping = majority_vote_mapping(km.labels_, train.labels, 20)

    def accuracy(x: np.ndarray) -> float:
        return 100 * float((mapping[km.predict(x.reshape(len(x), -1))] == test.labels).mean())

    correct = mapping[km.predict(test.data)] == test.labels
    assert got["kmeans.clean_accuracy"]["ours"] == pytest.approx(100 * correct.mean())
    assert got["kmeans.clean_accuracy"]["n"] == 100
    radius = kmeans_certified_radius(km, test.data, "linf", mapping=mapping, bounds=(0.0, 1.0))
    net = train_classifier("mlp", train, epochs=3, seed=0, cache=Cache(tmp / "cache")).model
    x, y = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    exact_attack = KMeansMinimalAttack(km, mapping, "linf", "other-class", exact=True, max_size=0.2)
    exact_sizes = exact_attack(x, y).distances.numpy()
    for eps in (0.1, 0.2):
        transfer = _chunked(IFGSM(Model(net.eval()), eps=eps, max_iter=5, eps_step=eps / 4), x, y)
        whitebox = _chunked(KMeansPGD(km, mapping, eps=eps, max_iter=10), x, y)
        assert got[f"transfer.linf.eps{eps:g}.accuracy"]["ours"] == pytest.approx(
            accuracy(transfer.numpy())
        )
        assert got[f"whitebox.linf.eps{eps:g}.accuracy"]["ours"] == pytest.approx(
            accuracy(whitebox.numpy())
        )
        certified = 100 * float((correct & (radius > eps)).mean())
        assert got[f"certified.linf.eps{eps:g}.accuracy"]["ours"] == pytest.approx(certified)
        exact = 100 * float((correct & (exact_sizes > eps)).mean())
        assert got[f"exact.linf.eps{eps:g}.accuracy"]["ours"] == pytest.approx(exact)
    # the attacks bite, and the bounds are ordered: certified <= exact = worst case <= each attack
    for eps in ("eps0.1", "eps0.2"):
        worst = got[f"worst_case.linf.{eps}.accuracy"]["ours"]
        assert got[f"certified.linf.{eps}.accuracy"]["ours"] <= worst
        assert got[f"exact.linf.{eps}.accuracy"]["ours"] == worst
        for attack in ("transfer", "whitebox", "minimal"):
            assert worst <= got[f"{attack}.linf.{eps}.accuracy"]["ours"]
    assert got["exact.linf.eps0.2.accuracy"]["ours"] < got["minimal.linf.eps0.2.accuracy"]["ours"]
    assert got["whitebox.linf.eps0.2.accuracy"]["ours"] < got["kmeans.clean_accuracy"]["ours"]
    assert results["certified_but_attacked"] == {"eps0.1": 0, "eps0.2": 0}
    assert results["exact_but_attacked"] == {"eps0.1": 0, "eps0.2": 0}


def test_figure_report_resume_and_workers(serial, tmp_path):
    tmp, results = serial
    run = tmp / "run"
    assert (run / "kmeans-linf.png").is_file()
    assert main(["report", str(run), "--html", str(tmp_path / "r.html")]) == 0
    assert "certified" in (tmp_path / "r.html").read_text()
    assert _run(tmp, _digits_config()) == results  # resumed: nothing recomputed, same numbers
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["units_computed"] == 0
    assert _run(tmp_path, _digits_config(), LocalExecutor(2)) == results


def test_rows_of_a_users_own_file_and_network(tmp_path):
    """Breast-cancer rows scaled to [0, 1] as the user's .npz files, the user's network from
    its factory and safetensors weights: the run measures every attack, and without a
    surrogate only k-means' own bounds."""
    X, y = load_breast_cancer(return_X_y=True)
    X = minmax_scale(X).astype(np.float32)
    np.savez(tmp_path / "train.npz", x=X[:400], y=y[:400])
    np.savez(tmp_path / "test.npz", x=X[400:], y=y[400:])
    torch.manual_seed(0)
    save_model(rows_net(), str(tmp_path / "net.safetensors"))
    config = {"train": {"path": str(tmp_path / "train.npz")},
              "test": {"path": str(tmp_path / "test.npz")}, "n_clusters": 8,
              "surrogate": {"factory": "tests.test_evaluate_kmeans:rows_net",
                            "weights": str(tmp_path / "net.safetensors")},
              "eps": [0.05, 0.2], "chunk_size": 100}  # fmt: skip
    got = {c["id"]: c["ours"] for c in _run(tmp_path / "a", config)["comparisons"]}
    assert {"surrogate.clean_accuracy", "transfer.linf.eps0.2.accuracy"} <= set(got)
    assert got["worst_case.linf.eps0.2.accuracy"] < got["kmeans.clean_accuracy"]
    bare = _run(tmp_path / "b", {**config, "surrogate": None})
    ids = {c["id"] for c in bare["comparisons"]}
    assert "whitebox.linf.eps0.2.accuracy" in ids and not any(i.startswith("transfer") for i in ids)


def _wine_files(tmp_path: Path) -> tuple[np.ndarray, np.ndarray, nn.Module, dict]:
    """The raw wine rows (units from 0.1 to 1,000), shuffled, as the user's train (130 rows)
    and test files, the user's network on them, and the config's train, test, k and
    surrogate (unbounded)."""
    from sklearn.datasets import load_wine

    X, labels = load_wine(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    X, labels = X[order].astype(np.float32), labels[order]
    np.savez(tmp_path / "train.npz", x=X[:130], y=labels[:130])
    np.savez(tmp_path / "test.npz", x=X[130:], y=labels[130:])
    torch.manual_seed(0)
    net = rows_net(13, 16, 3).eval()
    save_model(net, str(tmp_path / "net.safetensors"))
    files = {"train": {"path": str(tmp_path / "train.npz")},
             "test": {"path": str(tmp_path / "test.npz")}, "n_clusters": 6,
             "surrogate": {"factory": "tests.test_evaluate_kmeans:rows_net",
                           "kwargs": {"n_features": 13, "n_classes": 3},
                           "weights": str(tmp_path / "net.safetensors"), "bounds": [None, None]}}  # fmt: skip
    return X, labels, net, files


def test_budgets_in_each_features_std_on_raw_tabular_rows(tmp_path, capsys):
    """The raw wine features (units from 0.1 to 1,000) as the user's files, unbounded, behind a
    StandardScaler, with ``eps_units: feature_std``: each budget eps is the per-feature box
    eps * std_d of the training rows, and every number is that of the attacks called directly
    with that box (the transfer I-FGSM through the user's network, the white-box PGD) or in the
    norm weighted by std (the certified radius and the exact minimum); the bounds stay
    ordered, and the report names the units. Algorithm 1 takes the same box at each step: its
    k-means is ``KMeansAdversarialTraining`` with ``SurrogateAttack(units=std)``."""
    X, labels, net, files = _wine_files(tmp_path)
    config = {**files,
              "bounds": [None, None], "eps_units": "feature_std", "eps": [0.1, 0.3],
              "preprocess": {"factory": "sklearn.preprocessing:StandardScaler"},
              "chunk_size": 20}  # fmt: skip
    results = _run(tmp_path / "a", config)
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    train, test = X[:130], X[130:]
    std = train.astype(np.float64).std(0)
    pipe = make_pipeline(StandardScaler(), KMeans(6, random_state=0)).fit(train)
    mapping = majority_vote_mapping(pipe.predict(train), labels[:130], 6)
    truth = labels[130:]
    correct = mapping[pipe.predict(test)] == truth
    assert got["kmeans.clean_accuracy"] == pytest.approx(100 * correct.mean())
    x, y = torch.from_numpy(test), torch.from_numpy(truth)
    radius = kmeans_certified_radius(pipe, test, "linf", mapping=mapping, scale=std)
    exact_sizes = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", bounds=None,
                                      exact=True, max_size=0.3, scale=std)(x, y).distances.numpy()  # fmt: skip
    surrogate = Model(net, bounds=(-np.inf, np.inf))
    for eps in (0.1, 0.3):
        box = torch.from_numpy(eps * std)
        for attack, adv in (
            ("whitebox", _chunked(KMeansPGD(pipe, mapping, eps=box, max_iter=20, bounds=None), x, y)),
            ("transfer", _chunked(IFGSM(surrogate, eps=box, max_iter=10, eps_step=box / 4), x, y)),
        ):  # fmt: skip
            rounding = 1e-6 * x.double().abs()  # (the attacks compute in float32)
            assert bool(((adv.double() - x.double()).abs() <= box + rounding).all())
            still = mapping[pipe.predict(adv.numpy())] == truth
            assert got[f"{attack}.linf.eps{eps:g}.accuracy"] == pytest.approx(100 * still.mean())
        certified = got[f"certified.linf.eps{eps:g}.accuracy"]
        assert certified == pytest.approx(100 * (correct & (radius > eps)).mean())
        exact = got[f"exact.linf.eps{eps:g}.accuracy"]
        assert exact == pytest.approx(100 * (correct & (exact_sizes > eps)).mean())
        assert certified <= exact <= got[f"whitebox.linf.eps{eps:g}.accuracy"]
    assert (
        got["exact.linf.eps0.3.accuracy"] < got["exact.linf.eps0.1.accuracy"] < 100 * correct.mean()
    )
    assert results["eps_units"] == "feature_std"
    assert results["certified_but_attacked"] == {"eps0.1": 0, "eps0.3": 0}
    assert results["exact_but_attacked"] == {"eps0.1": 0, "eps0.3": 0}
    assert main(["report", str(tmp_path / "a" / "run"), "--markdown"]) == 0
    assert "under L-inf attacks (eps in multiples of each feature's training std)" in (
        capsys.readouterr().out
    )
    training = {"eta": 0.5, "beta": 2, "eps_max": 0.3}
    trained = _run(tmp_path / "b", {**config, "adversarial_training": training, "eps": [0.3]})
    attack = SurrogateAttack(surrogate, labels[:130], "pixel", max_iter=10, units=std)
    est = KMeansAdversarialTraining(6, eta=0.5, beta=2, attack=attack, eps_max=0.3,
                                    random_state=0, preprocess=StandardScaler()).fit(train)  # fmt: skip
    mapping = majority_vote_mapping(est.labels_, labels[:130], 6)  # (on the last D', as the run)
    pipe = make_pipeline(est.preprocess_, est.kmeans_)
    got = {c["id"]: c["ours"] for c in trained["comparisons"]}
    clean = mapping[pipe.predict(test)] == truth
    assert got["trained.kmeans.clean_accuracy"] == pytest.approx(100 * clean.mean())
    assert [h["eps"] for h in trained["training_history"]] == [0.0, 0.15, 0.3]


def test_a_preprocessing_is_attacked_in_the_inputs_units(tmp_path):
    """With ``preprocess`` (a StandardScaler and PCA from the user's factory), k-means clusters
    the transformed digits and every number is that of the pipeline attacked directly: its
    clean accuracy from ``predict``, the white-box PGD, the certified radius and the exact
    minimum, all in the inputs' units; the bounds stay ordered, a resumed run recomputes
    nothing, and two workers give the same results."""
    config = _digits_config(eps=[0.02, 0.05], surrogate=None, preprocess={
        "factory": "tests.test_evaluate_kmeans:scale_and_reduce", "kwargs": {"n_components": 12}})  # fmt: skip
    results = _run(tmp_path / "a", config)
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test").subset(slice(0, 100))
    pipe = make_pipeline(StandardScaler(), PCA(12, random_state=0), KMeans(20, random_state=0))
    pipe.fit(train.data)
    mapping = majority_vote_mapping(pipe.predict(train.data), train.labels, 20)
    correct = mapping[pipe.predict(test.data)] == test.labels
    assert got["kmeans.clean_accuracy"] == pytest.approx(100 * correct.mean())
    radius = kmeans_certified_radius(pipe, test.data, "linf", mapping=mapping, bounds=(0.0, 1.0))
    x, y = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    exact_attack = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", exact=True,
                                       max_size=0.05)  # fmt: skip
    exact_sizes = exact_attack(x, y).distances.numpy()
    for eps in (0.02, 0.05):
        whitebox = _chunked(KMeansPGD(pipe, mapping, eps=eps, max_iter=10), x, y).numpy()
        still = mapping[pipe.predict(whitebox.reshape(len(x), -1))] == test.labels
        assert got[f"whitebox.linf.eps{eps:g}.accuracy"] == pytest.approx(100 * still.mean())
        certified = correct & (radius > eps)
        assert got[f"certified.linf.eps{eps:g}.accuracy"] == pytest.approx(100 * certified.mean())
        exact = correct & (exact_sizes > eps)
        assert got[f"exact.linf.eps{eps:g}.accuracy"] == pytest.approx(100 * exact.mean())
        assert got[f"certified.linf.eps{eps:g}.accuracy"] <= got[f"exact.linf.eps{eps:g}.accuracy"]
    assert got["exact.linf.eps0.05.accuracy"] < got["kmeans.clean_accuracy"]
    assert results["certified_but_attacked"] == {"eps0.02": 0, "eps0.05": 0}
    assert results["exact_but_attacked"] == {"eps0.02": 0, "eps0.05": 0}
    assert results["preprocess"] == "tests.test_evaluate_kmeans:scale_and_reduce"
    assert _run(tmp_path / "a", config) == results
    manifest = json.loads((tmp_path / "a" / "run" / "manifest.json").read_text())
    assert manifest["units_computed"] == 0
    assert _run(tmp_path / "b", config, LocalExecutor(2)) == results


MISTAKES = {
    "k above the rows": ({"n_clusters": 5000}, "n_clusters = 5000 > the 1437 training inputs"),
    "budget zero": ({"eps": [0.0]}, "eps must hold finite budgets > 0"),
    "an exact L2 minimum through a network": (
        {"features": {"factory": "tests.test_evaluate_kmeans:encoder", "weights": "x"},
         "norm": "l2"}, "norm: l2 through features takes exact: false"),
    "an unknown norm": ({"norm": "l1"}, "norm"),
    "other bounds": ({"surrogate": {"factory": "mlp", "train_epochs": 1, "bounds": [0, 255]}},
                     "surrogate.bounds [0, 255] differ from bounds [0, 1]"),
    "other shapes": ({"test": {"path": "SMALL"}}, "they must match"),
    "test file without labels": ({"test": {"path": "NOLABELS"}}, "test.path"),
    "a network of other inputs": ({"surrogate": {"factory": "tests.test_evaluate_kmeans:rows_net",
                                                 "weights": "ROWS"}},
                                  "surrogate fails on inputs of shape (100, 1, 8, 8)"),
    "unknown key": ({"n_cluster": 3}, "n_cluster"),
    "training without a surrogate": ({"surrogate": None, "adversarial_training": {"eps_max": 0.1}},
                                     "adversarial_training attacks through the surrogate"),
    "a preprocessing that is not affine": (
        {"preprocess": {"factory": "sklearn.preprocessing:Normalizer"}},
        "preprocess.factory 'sklearn.preprocessing:Normalizer': pipeline step 'normalizer' "
        "(Normalizer) is not affine"),
    "a preprocessing that is not a transformer": (
        {"preprocess": {"factory": "sklearn.svm:SVC"}}, "gave SVC, which is not a transformer"),
    "a feature network with Algorithm 1": (
        {"features": {"factory": "tests.test_evaluate_kmeans:encoder", "weights": "x"},
         "adversarial_training": {"eps_max": 0.1}},
        "adversarial_training refits k-means on perturbed inputs, not on a network's features"),
    "unknown budget units": ({"eps_units": "pixels"}, "eps_units"),
    "a feature network to train": (
        {"features": {"factory": "mlp", "train_epochs": 1}}, "features takes your network with"),
    "an exact verification through a Tanh": (
        {"features": {"factory": "tests.test_evaluate_kmeans:smooth_encoder", "weights": "SMOOTH"}},
        "unsupported layer Tanh"),
    "a preprocessing given wrong arguments": (
        {"preprocess": {"factory": "sklearn.decomposition:PCA", "kwargs": {"n_comp": 3}}},
        "preprocess.factory 'sklearn.decomposition:PCA' with preprocess.kwargs"),
}  # fmt: skip


@pytest.mark.parametrize("what", MISTAKES)
def test_a_mistake_is_one_line_before_any_work(tmp_path, capsys, what):
    changes, message = MISTAKES[what]
    if what == "other shapes":  # 4 x 4 images against the 8 x 8 digits
        np.savez(tmp_path / "small.npz", x=np.zeros((5, 1, 4, 4), np.float32), y=np.zeros(5, int))
        changes = {"test": {"path": str(tmp_path / "small.npz")}}
    if what == "a network of other inputs":  # a 30-feature network against 8 x 8 digits
        torch.manual_seed(0)
        save_model(rows_net(), str(tmp_path / "rows.safetensors"))
        changes = {"surrogate": {"factory": "tests.test_evaluate_kmeans:rows_net",
                                 "weights": str(tmp_path / "rows.safetensors")}}  # fmt: skip
    if what == "an exact verification through a Tanh":
        save_model(smooth_encoder(), str(tmp_path / "smooth.safetensors"))
        changes = {**changes, "features": {"factory": "tests.test_evaluate_kmeans:smooth_encoder",
                                           "weights": str(tmp_path / "smooth.safetensors")}}  # fmt: skip
    if what == "test file without labels":  # the error names the block: test.path, not data
        np.savez(tmp_path / "x_only.npz", x=np.zeros((5, 1, 8, 8), np.float32))
        changes = {"test": {"path": str(tmp_path / "x_only.npz")}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate-kmeans", **_digits_config(**changes)}))
    code = main(["run", str(path), "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "units").exists() or not any(
        (tmp_path / "run" / "units").iterdir()
    )


def test_l2_budgets_are_those_of_the_l2_attacks_called_directly(serial, tmp_path, capsys):
    """``norm: l2`` on the digits: every id reads l2 and equals the L2 attacks called directly
    (the transfer PGD-L2 without random start, the white-box L2 PGD, the closed-form and exact
    L2 minimal perturbations, the L2 Voronoi radius in [0, 1]^64); the bounds stay ordered,
    results.json and the report name the norm."""
    tmp, _ = serial
    results = _run(tmp_path, _digits_config(norm="l2", eps=[0.5, 1.0]))
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test").subset(slice(0, 100))
    km = KMeans(20, random_state=0).fit(train.data)
    mapping = majority_vote_mapping(km.labels_, train.labels, 20)

    def accuracy(x: torch.Tensor) -> float:
        return 100 * float(
            (mapping[km.predict(x.numpy().reshape(len(x), -1))] == test.labels).mean()
        )

    correct = mapping[km.predict(test.data)] == test.labels
    x, y = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    radius = kmeans_certified_radius(km, test.data, "l2", mapping=mapping, bounds=(0.0, 1.0))
    closed = KMeansMinimalAttack(km, mapping, "l2", "other-class")(x, y).distances.numpy()
    exact = KMeansMinimalAttack(km, mapping, "l2", "other-class", exact=True, max_size=1.0)
    exact_sizes = exact(x, y).distances.numpy()
    net = Model(
        train_classifier("mlp", train, epochs=3, seed=0, cache=Cache(tmp / "cache")).model.eval()
    )
    for eps in (0.5, 1.0):
        transfer = PGD(net, eps=eps, max_iter=5, eps_step=eps / 4, norm="l2", random_start=False)
        whitebox = KMeansPGD(km, mapping, eps=eps, max_iter=10, norm="l2")
        assert got[f"transfer.l2.eps{eps:g}.accuracy"] == pytest.approx(
            accuracy(_chunked(transfer, x, y))
        )
        assert got[f"whitebox.l2.eps{eps:g}.accuracy"] == pytest.approx(
            accuracy(_chunked(whitebox, x, y))
        )
        for name, sizes in (("certified", radius), ("minimal", closed), ("exact", exact_sizes)):
            expected = 100 * float((correct & (sizes > eps)).mean())
            assert got[f"{name}.l2.eps{eps:g}.accuracy"] == pytest.approx(expected)
        worst = got[f"worst_case.l2.eps{eps:g}.accuracy"]
        assert (
            got[f"certified.l2.eps{eps:g}.accuracy"]
            <= worst
            == got[f"exact.l2.eps{eps:g}.accuracy"]
        )
        assert all(
            worst <= got[f"{a}.l2.eps{eps:g}.accuracy"] for a in ("transfer", "whitebox", "minimal")
        )
    assert (
        0 < got["exact.l2.eps1.accuracy"] < got["exact.l2.eps0.5.accuracy"] < 100 * correct.mean()
    )
    assert got["kmeans.median_certified_radius"] == pytest.approx(np.median(radius[correct]))
    assert not any(".linf." in key for key in got)
    assert results["norm"] == "l2" and results["certified_but_attacked"] == {"eps0.5": 0, "eps1": 0}
    assert results["exact_but_attacked"] == {"eps0.5": 0, "eps1": 0}
    assert (tmp_path / "run" / "kmeans-l2.png").exists()
    assert main(["report", str(tmp_path / "run"), "--markdown"]) == 0
    assert "under L2 attacks" in capsys.readouterr().out


def test_randomized_smoothing_of_each_kmeans_beside_its_exact_l2_robustness(tmp_path, capsys):
    """``smoothing`` with ``norm: l2``: the smoothed k-means' figures equal
    ``RandomizedSmoothing`` on ``kmeans_model(km, mapping)`` called directly (noise seeded by
    each test input's index), Algorithm 1's k-means gets its own ``trained.smoothing.*`` ids,
    the report gives each a table, and the plan times it."""
    smoothing = {"sigma": 0.25, "radii": [0.25, 0.5], "n0": 20, "n": 200}
    config = _digits_config(norm="l2", eps=[0.25, 0.5], smoothing=smoothing,
                            adversarial_training={"eta": 0.5, "beta": 2, "eps_max": 0.5})  # fmt: skip
    results = _run(tmp_path, config)
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test").subset(slice(0, 100))
    km = KMeans(20, random_state=0).fit(train.data)
    mapping = majority_vote_mapping(km.labels_, train.labels, 20)
    x = torch.from_numpy(test.images)
    direct = RandomizedSmoothing(kmeans_model(km, mapping, (0.0, 1.0)), 0.25, 20, 200).certify(x)
    right = direct.labels == test.labels
    assert got["smoothing.clean_accuracy"] == pytest.approx(100 * right.mean())
    for r in (0.25, 0.5):
        assert got[f"smoothing.l2.eps{r:g}.certified_accuracy"] == pytest.approx(
            100 * direct.certified_accuracy(test.labels, r)
        )
        assert 0 <= got[f"trained.smoothing.l2.eps{r:g}.certified_accuracy"] <= 100
    assert got["smoothing.l2.median_certified_radius"] == pytest.approx(
        np.median(direct.radii[right])
    )
    assert 0 < got["smoothing.l2.eps0.25.certified_accuracy"] < 100
    assert main(["report", str(tmp_path / "run"), "--markdown"]) == 0
    shown = capsys.readouterr().out
    assert "certified accuracy (%) of the smoothed classifier, not of k-means" in shown
    assert "not of Algorithm 1's k-means" in shown
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate-kmeans", **config}))
    assert main(["plan", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["units"]["randomized smoothing (chunks)"] == -(-100 // CHUNK)


def test_l2_ellipsoids_of_each_features_std_and_algorithm_1_in_l2(tmp_path):
    """``norm: l2`` with ``eps_units: feature_std`` on raw wine rows behind a StandardScaler:
    the white-box and transfer PGD attack the ellipsoid ||delta / std||_2 <= eps, the exact
    minimum and the radius are measured in that norm, each equal to the functions called
    directly; Algorithm 1 in L2 is ``KMeansAdversarialTraining`` with the surrogate's L2 PGD in
    the same ellipsoid."""
    from functools import partial

    X, labels, net, files = _wine_files(tmp_path)
    config = {**files,
              "bounds": [None, None], "eps_units": "feature_std", "eps": [1.0], "norm": "l2",
              "preprocess": {"factory": "sklearn.preprocessing:StandardScaler"},
              "adversarial_training": {"eta": 0.5, "beta": 2, "eps_max": 1.0},
              "chunk_size": 20}  # fmt: skip
    results = _run(tmp_path / "a", config)
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    train, test, truth = X[:130], X[130:], labels[130:]
    std = train.astype(np.float64).std(0)
    pipe = make_pipeline(StandardScaler(), KMeans(6, random_state=0)).fit(train)
    mapping = majority_vote_mapping(pipe.predict(train), labels[:130], 6)
    correct = mapping[pipe.predict(test)] == truth
    x, y = torch.from_numpy(test), torch.from_numpy(truth)
    radius = kmeans_certified_radius(pipe, test, "l2", mapping=mapping, scale=std)
    exact_sizes = KMeansMinimalAttack(pipe, mapping, "l2", "other-class", bounds=None,
                                      exact=True, max_size=1.0, scale=std)(x, y).distances.numpy()  # fmt: skip
    surrogate = Model(net, bounds=(-np.inf, np.inf))
    l2 = partial(PGD, norm="l2", random_start=False, units=std)
    for attack, adv in (
        ("whitebox", _chunked(KMeansPGD(pipe, mapping, eps=1.0, max_iter=20, norm="l2", bounds=None,
                                        units=std), x, y)),
        ("transfer", _chunked(l2(surrogate, eps=1.0, max_iter=10, eps_step=0.25), x, y)),
    ):  # fmt: skip
        sizes = ((adv.double() - x.double()) / torch.from_numpy(std)).norm(dim=1)
        assert float(sizes.max()) <= 1.0 + 1e-5  # (the attacks compute in float32)
        still = mapping[pipe.predict(adv.numpy())] == truth
        assert got[f"{attack}.l2.eps1.accuracy"] == pytest.approx(100 * still.mean())
    assert got["certified.l2.eps1.accuracy"] == pytest.approx(100 * (correct & (radius > 1)).mean())
    assert got["exact.l2.eps1.accuracy"] == pytest.approx(
        100 * (correct & (exact_sizes > 1)).mean()
    )
    assert got["certified.l2.eps1.accuracy"] <= got["exact.l2.eps1.accuracy"] < 100 * correct.mean()
    attack = SurrogateAttack(surrogate, labels[:130], "pixel", max_iter=10, attack_cls=l2)
    est = KMeansAdversarialTraining(6, eta=0.5, beta=2, attack=attack, eps_max=1.0,
                                    random_state=0, preprocess=StandardScaler()).fit(train)  # fmt: skip
    trained = make_pipeline(est.preprocess_, est.kmeans_)
    mapping = majority_vote_mapping(est.labels_, labels[:130], 6)
    clean = mapping[trained.predict(test)] == truth
    assert got["trained.kmeans.clean_accuracy"] == pytest.approx(100 * clean.mean())
    assert [h["eps"] for h in results["training_history"]] == [0.0, 0.5, 1.0]


TRAINING = {"eta": 0.5, "beta": 3, "eps_max": 0.2}


def test_algorithm_1_is_measured_beside_plain_kmeans(serial):
    """With adversarial_training, Algorithm 1 (KMeansAdversarialTraining through the same
    surrogate, eps in input units) trains a second k-means; its ids, prefixed trained., equal
    the defense called directly, and the plain ids do not move."""
    tmp, plain = serial
    results = _run(tmp / "t", _digits_config(adversarial_training=TRAINING))
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    assert all(got[c["id"]] == c["ours"] for c in plain["comparisons"])
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test").subset(slice(0, 100))
    net = train_classifier("mlp", train, epochs=3, seed=0, cache=Cache(tmp / "t" / "cache")).model
    attack = SurrogateAttack(Model(net.eval()), train.labels, "pixel", 5)
    est = KMeansAdversarialTraining(20, attack=attack, random_state=0, **TRAINING).fit(train.images)
    mapping = majority_vote_mapping(est.labels_, train.labels, 20)
    correct = mapping[est.predict(test.data)] == test.labels
    assert got["trained.kmeans.clean_accuracy"] == pytest.approx(100 * correct.mean())
    radius = kmeans_certified_radius(est.kmeans_, test.data, "linf", mapping=mapping, bounds=(0, 1))
    assert got["trained.certified.linf.eps0.2.accuracy"] == pytest.approx(
        100 * (correct & (radius > 0.2)).mean()
    )
    assert [h["step"] for h in results["training_history"]] == [0, 1, 2, 3]
    assert results["trained_certified_but_attacked"] == {"eps0.1": 0, "eps0.2": 0}
    assert results["trained_exact_but_attacked"] == {"eps0.1": 0, "eps0.2": 0}
    for eps in ("eps0.1", "eps0.2"):
        assert (
            got[f"trained.exact.linf.{eps}.accuracy"]
            == got[f"trained.worst_case.linf.{eps}.accuracy"]
        )
    assert (tmp / "t" / "run" / "kmeans-trained-linf.png").is_file()


def test_algorithm_1_behind_a_preprocessing(serial):
    """adversarial_training with preprocess: Algorithm 1 refits k-means on the preprocessed
    D' while the surrogate perturbs the inputs; its ids equal the defense called directly
    with the same preprocessing, certified through it, and the soundness counts are 0."""
    tmp, _ = serial
    preprocess = {"factory": "tests.test_evaluate_kmeans:scale_and_reduce",
                  "kwargs": {"n_components": 12}}  # fmt: skip
    results = _run(tmp / "tp", _digits_config(adversarial_training=TRAINING, preprocess=preprocess))
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test").subset(slice(0, 100))
    net = train_classifier("mlp", train, epochs=3, seed=0, cache=Cache(tmp / "tp" / "cache")).model
    attack = SurrogateAttack(Model(net.eval()), train.labels, "pixel", 5)
    est = KMeansAdversarialTraining(20, attack=attack, random_state=0, **TRAINING,
                                    preprocess=scale_and_reduce(12).set_params(pca__random_state=0))  # fmt: skip
    est.fit(train.images)
    mapping = majority_vote_mapping(est.labels_, train.labels, 20)
    correct = mapping[est.predict(test.data)] == test.labels
    assert got["trained.kmeans.clean_accuracy"] == pytest.approx(100 * correct.mean())
    radius = kmeans_certified_radius(est, test.data, "linf", mapping=mapping, bounds=(0, 1))
    for eps in (0.1, 0.2):
        assert got[f"trained.certified.linf.eps{eps:g}.accuracy"] == pytest.approx(
            100 * (correct & (radius > eps)).mean()
        )
    assert results["trained_certified_but_attacked"] == {"eps0.1": 0, "eps0.2": 0}
    assert results["trained_exact_but_attacked"] == {"eps0.1": 0, "eps0.2": 0}
    assert got["trained.exact.linf.eps0.2.accuracy"] < got["trained.kmeans.clean_accuracy"]


@pytest.mark.parametrize("killed_after", [0, 2])
def test_a_killed_training_resumes_after_its_last_step(tmp_path, monkeypatch, killed_after):
    """Algorithm 1 checkpoints every step: a run killed after step 0 or 2 resumes there and
    gives the uninterrupted run's results.json byte for byte."""
    from advlab.experiments.runner import RunContext

    config = _digits_config(adversarial_training=TRAINING)
    _run(tmp_path / "ref", config)
    real_save = RunContext.save_checkpoint
    steps = []

    def save_then_die(self, key, arrays, meta):
        real_save(self, key, arrays, meta)
        steps.append(meta["history"][-1]["step"])
        if steps.count(killed_after) == 1 and steps[-1] == killed_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunContext, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, config)
    _run(tmp_path, config)
    assert steps == list(range(killed_after + 1)) + list(range(killed_after + 1, 4))
    assert (tmp_path / "run" / "results.json").read_bytes() == (
        tmp_path / "ref" / "run" / "results.json"
    ).read_bytes()


def test_a_heldout_surrogate_is_the_transfer_control(tmp_path):
    """heldout_surrogate: a second network (a zoo one trained with seed + 1) whose I-FGSM
    examples Algorithm 1 never trained on, measured on both k-means (heldout.* ids)."""
    config = _digits_config(adversarial_training=TRAINING,
                            heldout_surrogate={"factory": "fc1", "train_epochs": 2})  # fmt: skip
    results = _run(tmp_path, config)
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    train, test = (
        load_dataset("digits", "train"),
        load_dataset("digits", "test").subset(slice(0, 100)),
    )
    other = train_classifier("fc1", train, epochs=2, seed=1, cache=Cache(tmp_path / "cache")).model
    with torch.no_grad():
        pred = other.eval()(torch.from_numpy(test.images)).argmax(1).numpy()
    assert got["heldout_surrogate.clean_accuracy"] == pytest.approx(
        100 * (pred == test.labels).mean()
    )
    for prefix in ("", "trained."):
        assert {
            f"{prefix}heldout.linf.eps0.1.accuracy",
            f"{prefix}transfer.linf.eps0.1.accuracy",
        } <= set(got)
    assert (
        "heldout_weights_sha256" in results
        and results["heldout_weights_sha256"] != results["weights_sha256"]
    )


def test_plan_counts_the_units_and_image_steps(tmp_path, capsys):
    """advlab plan: the k-means fit, Algorithm 1, a unit per budget and chunk and one per chunk
    for the minimal perturbation, each serving both k-means (the run makes these and its
    fingerprint); the image-steps of each attack from the config, the transfer examples crafted
    once for both k-means; the k-means work timed on a k-means fitted as the run fits it."""
    config = _digits_config(adversarial_training=TRAINING)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate-kmeans", **config}))
    assert main(["plan", str(path), "--workers", "1", "2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["units"] == {"k-means fit": 1, "attacks (budgets x chunks)": 2 * 3,
                             "minimal perturbation (chunks)": 3,
                             "Algorithm 1 (checkpointed per step)": 1}  # fmt: skip
    steps = {a["what"]: a["image_steps"] for a in plan["attacks"]}
    assert steps == {"training surrogate (3 epochs)": 1437 * 3,
                     "transfer I-FGSM (2 budgets)": 2 * 100 * 5,  # crafted once for both
                     "Algorithm 1 (3 steps)": round(3 * 0.5 * 1437) * 5,
                     "white-box PGD (2 k-means x 2 budgets)": 2 * 2 * 100 * 10,
                     # timed on the run's own k-means: fits per training input, and every
                     # test input's minimal perturbation and radius for both k-means
                     "k-means fit (k = 20)": 1437, "Algorithm 1's k-means fits (3)": 3 * 1437,
                     "minimal perturbation and certified radius (2 k-means; timed on 100 inputs)":
                         2 * 100}  # fmt: skip
    assert all(a["image_steps_per_second"] > 0 for a in plan["attacks"])
    _run(tmp_path, config)
    made = json.loads((tmp_path / "run" / "manifest.json").read_text())["units_computed"]
    assert made == sum(plan["units"].values()) + 1  # + the fingerprint of the files


def _encoder_run(tmp_path: Path, **changes) -> tuple:
    """A run on the digits through the user's ReLU encoder (k = 12, no surrogate) with
    ``changes``, and what it should equal: the config, its results, the encoder, the k-means
    and mapping fitted on the encoder's training features, the 100 test digits and which of
    them k-means classifies correctly."""
    torch.manual_seed(0)
    net = encoder().eval()
    save_model(net, str(tmp_path / "encoder.safetensors"))
    features = {"factory": "tests.test_evaluate_kmeans:encoder",
                "weights": str(tmp_path / "encoder.safetensors")}  # fmt: skip
    config = _digits_config(n_clusters=12, surrogate=None, features=features, **changes)
    results = _run(tmp_path / "a", config)
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test").subset(slice(0, 100))
    with torch.no_grad():
        km = KMeans(12, random_state=0).fit(net(torch.from_numpy(train.images)).numpy())
        mapping = majority_vote_mapping(km.labels_, train.labels, 12)
        correct = mapping[km.predict(net(torch.from_numpy(test.images)).numpy())] == test.labels
    return config, results, net, km, mapping, test, correct


def test_l2_through_a_feature_network_is_the_librarys_l2_certificate(tmp_path):
    """``norm: l2`` with ``features`` and ``exact: false``: the white-box L2 PGD through the
    encoder, the linear L2 certificate and the median L2 radius of its bisection equal the
    functions called directly, and the certified share lies below the white-box one; through
    a Tanh encoder the certificate is the linear bounds' L2 one too (eq. R), called directly."""
    from advlab.defenses import (
        kmeans_certified_radius_through,
        kmeans_is_certified_linear,
    )

    _, results, net, km, mapping, test, correct = _encoder_run(
        tmp_path, eps=[0.05, 0.1], norm="l2", exact=False
    )
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    x, y = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    for eps in (0.05, 0.1):
        adv = _chunked(KMeansPGD(km, mapping, eps=eps, max_iter=10, norm="l2", features=net), x, y)
        with torch.no_grad():
            still = mapping[km.predict(net(adv).numpy())] == test.labels
        assert got[f"whitebox.l2.eps{eps:g}.accuracy"] == pytest.approx(100 * still.mean())
        hits = kmeans_is_certified_linear(km, x, eps, mapping, features=net, norm="l2").numpy()
        assert got[f"certified.l2.eps{eps:g}.accuracy"] == pytest.approx(
            100 * (correct & hits).mean()
        )
        assert (
            0 < got[f"certified.l2.eps{eps:g}.accuracy"] <= got[f"whitebox.l2.eps{eps:g}.accuracy"]
        )
    radii = kmeans_certified_radius_through(km, x[correct], 4 * 0.1, mapping, features=net,
                                            norm="l2")  # fmt: skip
    assert got["kmeans.median_certified_radius"] == pytest.approx(np.median(radii))
    assert results["norm"] == "l2" and results["certified_but_attacked"] == {
        "eps0.05": 0,
        "eps0.1": 0,
    }
    assert not any(".linf." in key or key.startswith("exact.") for key in got)
    torch.manual_seed(0)
    smooth = smooth_encoder().eval()
    save_model(smooth, str(tmp_path / "smooth.safetensors"))
    tanh = {"factory": "tests.test_evaluate_kmeans:smooth_encoder",
            "weights": str(tmp_path / "smooth.safetensors")}  # fmt: skip
    config = _digits_config(n_clusters=12, surrogate=None, features=tanh, eps=[0.05, 0.1],
                            norm="l2", exact=False)  # fmt: skip
    bounded = _run(tmp_path / "tanh", config)
    assert bounded["certificate"] == "linear" and bounded["certified_but_attacked"] == {
        "eps0.05": 0, "eps0.1": 0,
    }  # fmt: skip
    train = load_dataset("digits", "train")
    with torch.no_grad():
        km = KMeans(12, random_state=0).fit(smooth(torch.from_numpy(train.images)).numpy())
        mapping = majority_vote_mapping(km.labels_, train.labels, 12)
        correct = mapping[km.predict(smooth(x).numpy())] == test.labels
    got = {c["id"]: c["ours"] for c in bounded["comparisons"]}
    for eps in (0.05, 0.1):
        hits = kmeans_is_certified_linear(km, x, eps, mapping, features=smooth,
                                          norm="l2").numpy()  # fmt: skip
        assert got[f"certified.l2.eps{eps:g}.accuracy"] == pytest.approx(
            100 * (correct & hits).mean()
        )
    assert got["certified.l2.eps0.05.accuracy"] > 0


def test_a_feature_network_is_attacked_and_verified_through(tmp_path, capsys):
    """With ``features`` (the user's ReLU encoder and its weights), k-means clusters the
    encoder's outputs and every number is that of the attacks called directly through it: the
    white-box PGD through the encoder, the linear certificate and the exact minimal
    perturbation by mixed-integer programs; the bounds stay ordered, a resumed run recomputes
    nothing, two workers give the same results, ``advlab plan`` times the work through the
    encoder, the transfer attack is judged through it, a preprocessing behind the encoder is
    fitted on its outputs, and a layer-normalised encoder gets interval bounds; the median certified radius is that of the linear bounds'
    bisection."""
    from advlab.defenses import (
        kmeans_certified_radius_through,
        kmeans_is_certified,
        kmeans_is_certified_linear,
        verify_kmeans_linf,
    )

    config, results, net, km, mapping, test, correct = _encoder_run(tmp_path, eps=[0.01, 0.02])
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    train = load_dataset("digits", "train")
    x, y = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    assert got["kmeans.clean_accuracy"] == pytest.approx(100 * correct.mean())
    sizes = np.zeros(len(x))
    sizes[correct] = verify_kmeans_linf(km, x[correct], 0.02, mapping, features=net,
                                        minimal=True).distances  # fmt: skip
    for eps in (0.01, 0.02):
        adv = _chunked(KMeansPGD(km, mapping, eps=eps, max_iter=10, features=net), x, y)
        with torch.no_grad():
            still = mapping[km.predict(net(adv).numpy())] == test.labels
        assert got[f"whitebox.linf.eps{eps:g}.accuracy"] == pytest.approx(100 * still.mean())
        certified = correct & kmeans_is_certified_linear(km, x, eps, mapping, features=net).numpy()
        assert got[f"certified.linf.eps{eps:g}.accuracy"] == pytest.approx(100 * certified.mean())
        exact = correct & (sizes > eps)
        assert got[f"exact.linf.eps{eps:g}.accuracy"] == pytest.approx(100 * exact.mean())
        assert (got[f"certified.linf.eps{eps:g}.accuracy"] <= got[f"exact.linf.eps{eps:g}.accuracy"]
                <= got[f"whitebox.linf.eps{eps:g}.accuracy"])  # fmt: skip
    assert got["exact.linf.eps0.02.accuracy"] < got["kmeans.clean_accuracy"]
    assert not any(i.startswith("minimal.") for i in got)
    radii = kmeans_certified_radius_through(km, x[correct], 4 * 0.02, mapping, features=net)
    assert got["kmeans.median_certified_radius"] == pytest.approx(np.median(radii))
    assert 0 < got["kmeans.median_certified_radius"] < 4 * 0.02
    assert results["certificate"] == "linear" and results["exact_unknown"] == 0
    assert results["features"] == "tests.test_evaluate_kmeans:encoder"
    assert results["certified_but_attacked"] == {"eps0.01": 0, "eps0.02": 0}
    assert results["exact_but_attacked"] == {"eps0.01": 0, "eps0.02": 0}
    assert _run(tmp_path / "a", config) == results
    manifest = json.loads((tmp_path / "a" / "run" / "manifest.json").read_text())
    assert manifest["units_computed"] == 0
    assert _run(tmp_path / "b", config, LocalExecutor(2)) == results
    assert main(["report", str(tmp_path / "a" / "run"), "--markdown"]) == 0
    shown = capsys.readouterr().out
    assert "encoder's features (k = 12)" in shown and "(linear bounds through the network)" in shown
    from advlab.experiments.builtin.evaluate_kmeans import _report_tables

    undecided = _report_tables({**results, "exact_unknown": 3}, config)[0].title
    assert undecided.endswith("(linear bounds through the network; 3 inputs left undecided by "
                              "the exact programs)")  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate-kmeans", **config}))
    assert main(["plan", str(path), "--json"]) == 0
    plan = {a["what"]: a for a in json.loads(capsys.readouterr().out)["attacks"]}
    assert plan["white-box PGD (1 k-means x 2 budgets)"]["image_steps"] == 2 * 100 * 10
    timed = "exact minimal perturbation, certificates and radii through the features (1 k-means; "
    assert plan[timed + "timed on 100 inputs)"]["image_steps_per_second"] > 0
    reduce = {
        "factory": "tests.test_evaluate_kmeans:scale_and_reduce",
        "kwargs": {"n_components": 4},
    }
    behind = _run(tmp_path / "d", {**config, "preprocess": reduce, "eps": [0.02]})
    with torch.no_grad():
        embedded = net(torch.from_numpy(train.images)).double().numpy()
        pipe = make_pipeline(StandardScaler(), PCA(4, random_state=0), KMeans(12, random_state=0))
        mapping = majority_vote_mapping(pipe.fit(embedded).predict(embedded), train.labels, 12)
        correct = mapping[pipe.predict(net(x).double().numpy())] == test.labels
    got = {c["id"]: c["ours"] for c in behind["comparisons"]}
    assert got["kmeans.clean_accuracy"] == pytest.approx(100 * correct.mean())
    assert got["certified.linf.eps0.02.accuracy"] <= got["exact.linf.eps0.02.accuracy"]
    assert behind["exact_but_attacked"] == {"eps0.02": 0} and behind["exact_unknown"] == 0
    torch.manual_seed(0)
    normalised = normalised_encoder().eval()
    save_model(normalised, str(tmp_path / "normalised.safetensors"))
    layer_norm = {"factory": "tests.test_evaluate_kmeans:normalised_encoder",
                  "weights": str(tmp_path / "normalised.safetensors")}  # fmt: skip
    transfer = {**config, "surrogate": {"factory": "mlp", "train_epochs": 1}, "eps": [0.1],
                "exact": False}  # fmt: skip
    got = {c["id"]: c["ours"] for c in _run(tmp_path / "e", transfer)["comparisons"]}
    surrogate = train_classifier(
        "mlp", train, epochs=1, seed=0, cache=Cache(tmp_path / "e" / "cache")
    )
    adv = _chunked(IFGSM(Model(surrogate.model.eval()), eps=0.1, max_iter=5, eps_step=0.025), x, y)
    with torch.no_grad():
        km = KMeans(12, random_state=0).fit(net(torch.from_numpy(train.images)).numpy())
        mapping = majority_vote_mapping(km.labels_, train.labels, 12)
        still = mapping[km.predict(net(adv).numpy())] == test.labels
    assert got["transfer.linf.eps0.1.accuracy"] == pytest.approx(100 * still.mean())
    assert got["transfer.linf.eps0.1.accuracy"] < got["kmeans.clean_accuracy"]
    bounded = _run(tmp_path / "c", {**config, "features": layer_norm, "exact": False,
                                    "eps": [0.02]})  # fmt: skip
    assert bounded["certificate"] == "interval"
    with torch.no_grad():
        km = KMeans(12, random_state=0).fit(normalised(torch.from_numpy(train.images)).numpy())
        mapping = majority_vote_mapping(km.labels_, train.labels, 12)
        correct = mapping[km.predict(normalised(x).numpy())] == test.labels
    certified = correct & kmeans_is_certified(km, x, 0.02, mapping, features=normalised).numpy()
    got = {c["id"]: c["ours"] for c in bounded["comparisons"]}
    assert got["certified.linf.eps0.02.accuracy"] == pytest.approx(100 * certified.mean())
    assert "exact.linf.eps0.02.accuracy" not in got


def _breast_cancer_files(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Raw breast-cancer rows (30 features, all >= 0, units from 0.001 to 4,000) as the user's
    files: 450 training rows and 119 test rows."""
    X, labels = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(1).permutation(len(X))
    X, labels = X[order].astype(np.float32), labels[order]
    np.savez(tmp_path / "train.npz", x=X[:450], y=labels[:450])
    np.savez(tmp_path / "test.npz", x=X[450:], y=labels[450:])
    return X, labels


def test_per_feature_bounds_from_the_features_range_on_raw_tabular_rows(tmp_path, capsys):
    """``bounds: feature_range`` on raw breast-cancer rows behind a StandardScaler: each
    feature's box is its minimum and maximum over the training and test rows, and every
    number is that of the attacks called directly with that box (the transfer I-FGSM through
    the user's network, the white-box PGD, the exact minimum and the certified radius, budgets
    eps * std_d); the attacked rows never leave it, the bounds stay ordered, and the box
    binds: the exact minimal perturbation in it is never smaller than without it, and larger
    for some rows."""
    X, labels = _breast_cancer_files(tmp_path)
    torch.manual_seed(0)
    net = rows_net(30, 16, 2).eval()
    save_model(net, str(tmp_path / "net.safetensors"))
    config = {"train": {"path": str(tmp_path / "train.npz")},
              "test": {"path": str(tmp_path / "test.npz")}, "n_clusters": 10,
              "surrogate": {"factory": "tests.test_evaluate_kmeans:rows_net",
                            "weights": str(tmp_path / "net.safetensors"),
                            "bounds": "feature_range"},
              "bounds": "feature_range", "eps_units": "feature_std", "eps": [0.5, 1.0],
              "preprocess": {"factory": "sklearn.preprocessing:StandardScaler"},
              "chunk_size": CHUNK}  # fmt: skip
    results = _run(tmp_path / "a", config)
    got = {c["id"]: c["ours"] for c in results["comparisons"]}
    train, test, truth = X[:450], X[450:], labels[450:]
    lo, hi = torch.from_numpy(X.min(0)).double(), torch.from_numpy(X.max(0)).double()
    std = train.astype(np.float64).std(0)
    pipe = make_pipeline(StandardScaler(), KMeans(10, random_state=0)).fit(train)
    mapping = majority_vote_mapping(pipe.predict(train), labels[:450], 10)
    correct = mapping[pipe.predict(test)] == truth
    assert got["kmeans.clean_accuracy"] == pytest.approx(100 * correct.mean())
    x, y = torch.from_numpy(test), torch.from_numpy(truth)
    radius = kmeans_certified_radius(pipe, test, "linf", mapping=mapping, bounds=(lo, hi),
                                     scale=std)  # fmt: skip
    exact = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", bounds=(lo, hi),
                                exact=True, max_size=1.0, scale=std)(x, y).distances.numpy()  # fmt: skip
    unboxed = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", bounds=None,
                                  exact=True, max_size=1.0, scale=std)(x, y).distances.numpy()  # fmt: skip
    surrogate = Model(net, bounds=(lo, hi))
    for eps in (0.5, 1.0):
        box = torch.from_numpy(eps * std)
        for attack, adv in (
            ("whitebox", _chunked(KMeansPGD(pipe, mapping, eps=box, max_iter=20, bounds=(lo, hi)), x, y)),
            ("transfer", _chunked(IFGSM(surrogate, eps=box, max_iter=10, eps_step=box / 4), x, y)),
        ):  # fmt: skip
            assert bool(((adv.double() >= lo) & (adv.double() <= hi)).all())
            still = mapping[pipe.predict(adv.numpy())] == truth
            assert got[f"{attack}.linf.eps{eps:g}.accuracy"] == pytest.approx(100 * still.mean())
        certified = got[f"certified.linf.eps{eps:g}.accuracy"]
        assert certified == pytest.approx(100 * (correct & (radius > eps)).mean())
        robust = got[f"exact.linf.eps{eps:g}.accuracy"]
        assert robust == pytest.approx(100 * (correct & (exact > eps)).mean())
        assert certified <= robust <= got[f"whitebox.linf.eps{eps:g}.accuracy"]
        assert robust >= 100 * (correct & (unboxed > eps)).mean()
    finite = np.isfinite(unboxed) & (unboxed <= 1.0)  # (exact up to max_size)
    assert np.all(exact[finite] >= unboxed[finite] - 1e-9)
    assert np.sum(exact[finite] > unboxed[finite] + 1e-3) >= 5  # the box binds for some rows
    assert results["exact_but_attacked"] == {"eps0.5": 0, "eps1": 0}
    assert results["certified_but_attacked"] == {"eps0.5": 0, "eps1": 0}
    assert results["bounds"] == "feature_range"
    assert main(["report", str(tmp_path / "a" / "run"), "--markdown"]) == 0
    assert "; inputs kept in each feature's range over the data, and its certified" in (
        capsys.readouterr().out
    )


def test_per_feature_bounds_in_a_config_are_checked_before_any_work(tmp_path):
    """A side given as a list needs one number per feature; rows outside their feature's
    bounds are named by row and feature; a network whose bounds are not the run's is refused."""
    X, _ = _breast_cancer_files(tmp_path)
    base = {"train": {"path": str(tmp_path / "train.npz")},
            "test": {"path": str(tmp_path / "test.npz")}, "n_clusters": 10, "eps": [0.1]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"the lower side has 3 entries, but one input has 30 "):
        _run(tmp_path / "a", {**base, "bounds": [[0, 0, 0], None]})
    upper = [float(v) for v in X.max(0)]
    upper[4] = float(np.median(X[:, 4]))
    with pytest.raises(ConfigError, match=r"inputs must lie in its per-feature bounds; input \d+, "
                                          r"feature 4 is .*, outside \[0, "):  # fmt: skip
        _run(tmp_path / "b", {**base, "bounds": [0, upper]})
    net = {"factory": "tests.test_evaluate_kmeans:rows_net", "weights": "net.safetensors"}
    with pytest.raises(ConfigError, match=r"surrogate.bounds \[0, 1\] differ from bounds "
                                          r"'feature_range'"):  # fmt: skip
        _run(tmp_path / "c", {**base, "bounds": "feature_range", "surrogate": net})
