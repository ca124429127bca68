"""Feed bad inputs to advlab's public API and CLI; count how each is handled.

    .venv/bin/python scripts/fuzz_inputs.py [--details]

Each case is a call with one bad value (NaN, inf, a negative or out-of-range number, a wrong
type, a wrong shape, a corrupt file, ...). It is

- **clear**: refused with ValueError / TypeError (or their subclasses) whose message names the
  parameter, key or path at fault;
- **unclear**: refused, but with another exception type or a message that does not name it;
- **silent**: accepted (no error).

Prints JSON: the counts, and with --details every case that is not clear.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

NAN, INF = float("nan"), float("inf")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()


def _cases() -> list[tuple[str, str, Callable[[], Any]]]:
    """(name, the token a clear message names, call)."""
    from advlab.attacks import evasion as ev
    from advlab.attacks import poisoning as po
    from advlab.cluster import KMeans, SeededKMeans, kmeans_plusplus
    from advlab.defenses import (
        KMeansAdversarialTraining,
        KMeansMinusMinus,
        MSVDDDefense,
        NKMeans,
        SanitizedKMeans,
        TrimmedKMeans,
    )
    from advlab.metrics import cw_ssim, mean_ci, mse, ssim
    from advlab.models import Model, build_model

    model = _model()
    x = torch.rand(6, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    cases: list[tuple[str, str, Callable[[], Any]]] = []

    def add(name: str, token: str, call: Callable[[], Any]) -> None:
        cases.append((name, token, call))

    attacks: dict[str, tuple[Callable[..., Any], dict[str, list[Any]]]] = {
        "FGSM": (
            lambda **k: ev.FGSM(model, **{"eps": 0.1, **k})(x, y),
            {"eps": [NAN, INF, -1.0, "a"]},
        ),
        "IFGSM": (
            lambda **k: ev.IFGSM(model, **{"eps": 0.1, "max_iter": 2, **k})(x, y),
            {
                "eps": [NAN, INF, -1.0],
                "max_iter": [0, -1, 2.5, NAN],
                "eps_step": [NAN, INF, -0.01],
                "eps_units": ["bytes", "standardized"],
            },
        ),
        "PGD": (
            lambda **k: ev.PGD(model, **{"eps": 0.1, "max_iter": 2, **k})(x, y),
            {
                "eps": [NAN, INF, -1.0],
                "max_iter": [0, NAN],
                "norm": ["l3"],
                "loss": ["mse"],
                "random_state": [-1, 1.5],
                "batch_size": [0, NAN],
            },
        ),
        "PGD-l2": (
            lambda **k: ev.PGD(model, **{"eps": 0.5, "max_iter": 2, "norm": "l2", **k})(x, y),
            {"eps": [INF, NAN], "eps_step": [INF, -1.0]},
        ),
        "DeepFool": (
            lambda **k: ev.DeepFool(model, **k)(x, y),
            {"overshoot": [NAN, INF, -1.0], "max_iter": [0, NAN]},
        ),
        "CarliniWagnerL2": (
            lambda **k: ev.CarliniWagnerL2(model, **{"steps": 5, **k})(x, y),
            {
                "confidence": [NAN, INF, -1.0],
                "initial_const": [NAN, INF, 0.0],
                "lr": [NAN, 0.0],
                "binary_search_steps": [0],
                "steps": [0],
            },
        ),
        "LBFGS": (
            lambda **k: ev.LBFGS(model, **{"max_iter": 5, **k})(x, y),
            {
                "initial_const": [NAN, INF, 0.0],
                "doublings": [-1, NAN],
                "bisections": [-1],
                "max_iter": [0],
            },
        ),
        "KA3": (
            lambda **k: ev.KA3(model, **{"max_iter": 5, "ssim_weight": 0.0, **k})(x, y),
            {"ssim_weight": [NAN, INF, -1.0], "K": [0, NAN, 4]},
        ),
    }
    for name, (run, params) in attacks.items():
        for param, values in params.items():
            for value in values:
                token = "K" if param == "K" and value == 4 else param
                if param == "eps_units" and value == "standardized":
                    token = "std"
                add(
                    f"{name}({param}={value!r})",
                    token,
                    lambda run=run, p=param, v=value: run(**{p: v}),
                )
    bad_images = {
        "NaN pixel": (torch.full((6, 1, 4, 4), NAN), "NaN"),
        "inf pixel": (torch.full((6, 1, 4, 4), INF), "infinite"),
        "pixel > 1": (x + 1.5, "bounds"),
        "negative pixel": (x - 1.5, "bounds"),
        "wrong channels": (torch.rand(6, 3, 4, 4), "shape"),
        "wrong size": (torch.rand(6, 1, 5, 5), "shape"),
        "1-D input": (torch.rand(6), "shape"),
        "empty batch": (torch.rand(0, 1, 4, 4), "empty"),
        "integer images": (torch.ones(6, 1, 4, 4, dtype=torch.int64), "floating-point"),
        "numpy images": (np.random.default_rng(0).random((6, 1, 4, 4), dtype=np.float32), "tensor"),
    }
    for name, make in (
        ("FGSM", lambda: ev.FGSM(model, eps=0.1)),
        ("DeepFool", lambda: ev.DeepFool(model)),
        ("LBFGS", lambda: ev.LBFGS(model, max_iter=3)),
    ):
        for what, (images, token) in bad_images.items():
            add(f"{name} on {what}", token, lambda make=make, images=images: make()(images, y))
        for what, labels, token in (
            ("float labels", y.float(), "integer"),
            ("labels out of range", y + 10, "y"),
            ("labels wrong length", y[:3], "y"),
            ("missing targets", None, "target"),
        ):
            crit = ev.TargetedMisclassification() if what == "missing targets" else None
            lab = y if labels is None else labels
            add(
                f"{name} with {what}",
                token,
                lambda make=make, lab=lab, crit=crit: (
                    make() if crit is None else ev.FGSM(model, eps=0.1, criterion=crit)
                )(x, lab),
            )
    add("Model(bounds=(1, 0))", "bounds", lambda: Model(model, bounds=(1, 0)))
    add("Model(bounds=(nan, 1))", "bounds", lambda: Model(model, bounds=(NAN, 1)))
    add("Model(std=0)", "std", lambda: Model(model, preprocessing=dict(mean=0, std=0)))
    add("Model(std=nan)", "std", lambda: Model(model, preprocessing=dict(mean=0, std=NAN)))
    add("Model(unknown key)", "preprocessing", lambda: Model(model, preprocessing=dict(mu=0)))
    add(
        "Model(3-channel stats on 1 channel)",
        "channels",
        lambda: Model(model, preprocessing=dict(mean=[0, 0, 0], std=[1, 1, 1]))(x),
    )
    add("Model(module='net')", "module", lambda: Model("net"))  # type: ignore[arg-type]
    add("build_model('vgg')", "vgg", lambda: build_model("vgg", 10, (1, 28, 28)))
    add("build_model(n_classes=1)", "n_classes", lambda: build_model("mlp", 1, (1, 28, 28)))
    add("small_cnn on 6x6 images", "10 x 10", lambda: build_model("small_cnn", 10, (1, 6, 6)))
    add(
        "build_model(input_shape=(28, 28))",
        "input_shape",
        lambda: build_model("lenet5", 10, (28, 28)),
    )

    X = np.random.default_rng(0).normal(size=(40, 3))
    bad_X = {
        "NaN": np.where(np.eye(40, 3) > 0, NAN, X),
        "inf": np.where(np.eye(40, 3) > 0, INF, X),
        "complex": X + 1j,
        "strings": np.array([["a", "b", "c"]] * 40),
        "1-D": X[:, 0],
        "empty": X[:0],
        "sparse": __import__("scipy.sparse").sparse.csr_matrix(X),
    }
    estimators = {
        "KMeans": lambda **k: KMeans(**{"n_clusters": 3, **k}),
        "KMeansMinusMinus": lambda **k: KMeansMinusMinus(**{"n_clusters": 3, **k}),
        "TrimmedKMeans": lambda **k: TrimmedKMeans(**{"n_clusters": 3, **k}),
        "NKMeans": lambda **k: NKMeans(**{"n_clusters": 3, **k}),
        "SanitizedKMeans": lambda **k: SanitizedKMeans(**{"n_clusters": 3, **k}),
        "KMeansAdversarialTraining": lambda **k: KMeansAdversarialTraining(
            **{"n_clusters": 3, "beta": 2, **k}
        ),
    }
    tokens = {
        "NaN": "NaN",
        "inf": "infinity",
        "complex": "omplex",
        "strings": "string",
        "1-D": "2D",
        "empty": "0 sample",
        "sparse": "parse",
    }
    for name, make in estimators.items():
        for what, data in bad_X.items():
            add(
                f"{name}.fit({what} X)", tokens[what], lambda make=make, data=data: make().fit(data)
            )
        add(
            f"{name}(n_clusters=50) on 40 points",
            "n_samples",
            lambda make=make: make(n_clusters=50).fit(X),
        )
        add(f"{name}(n_clusters=0)", "n_clusters", lambda make=make: make(n_clusters=0).fit(X))
        add(f"{name}(n_clusters=2.5)", "n_clusters", lambda make=make: make(n_clusters=2.5).fit(X))
        add(
            f"{name}(n_clusters=True)", "n_clusters", lambda make=make: make(n_clusters=True).fit(X)
        )
        add(f"{name}.predict before fit", "not fitted", lambda make=make: make().predict(X))
        add(
            f"{name}.predict with 2 features",
            "features",
            lambda make=make: make().fit(X).predict(X[:, :2]),
        )
    for param, values in {
        "max_iter": [0, NAN],
        "tol": [-1.0, NAN],
        "n_init": [0],
        "init": ["kmeans++", np.zeros((2, 3))],
        "init_algorithm": ["fast"],
        "random_state": ["a"],
        "chunk_size": [0],
        "bounds": ["yes"],
    }.items():
        for value in values:
            token = "init" if param == "init" else param
            add(
                f"KMeans({param}={value!r})",
                token,
                lambda p=param, v=value: KMeans(3, **{p: v}).fit(X),
            )
    add(
        "KMeans sample_weight<0",
        "sample_weight",
        lambda: KMeans(3).fit(X, sample_weight=-np.ones(40)),
    )
    add(
        "KMeans sample_weight NaN",
        "sample_weight",
        lambda: KMeans(3).fit(X, sample_weight=np.full(40, NAN)),
    )
    add(
        "KMeans sample_weight length",
        "sample_weight",
        lambda: KMeans(3).fit(X, sample_weight=np.ones(5)),
    )
    for params, token in (
        ({"n_outliers": 40}, "n_outliers"),
        ({"n_outliers": -1}, "n_outliers"),
        ({"n_outliers": 2.5}, "n_outliers"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
    ):
        add(f"KMeansMinusMinus({params})", token, lambda p=params: KMeansMinusMinus(3, **p).fit(X))
    for trim in (0.99, 1.0, -0.1, NAN):
        add(f"TrimmedKMeans(trim={trim})", "trim", lambda t=trim: TrimmedKMeans(3, trim=t).fit(X))
    for z in (0, 30, 1.5):
        add(f"NKMeans(n_outliers={z})", "n_outliers", lambda z=z: NKMeans(3, n_outliers=z).fit(X))
    add(
        "SanitizedKMeans(detector='oracle')",
        "detector",
        lambda: SanitizedKMeans(3, detector="oracle").fit(X),
    )
    for param, value in (
        ("eta", 0.0),
        ("eta", 1.5),
        ("eta", NAN),
        ("beta", 0),
        ("beta", 2.5),
        ("eps_max", -1.0),
        ("eps_max", NAN),
        ("attack", "ifgsm"),
    ):
        add(
            f"KMeansAdversarialTraining({param}={value!r})",
            param,
            lambda p=param, v=value: KMeansAdversarialTraining(3, **{p: v}).fit(X),
        )
    labels = np.arange(40) % 3
    add("SeededKMeans all unlabelled", "labelled", lambda: SeededKMeans().fit(X, np.full(40, -1)))
    add("SeededKMeans continuous y", "Unknown label type", lambda: SeededKMeans().fit(X, X[:, 0]))
    add("SeededKMeans y wrong length", "inconsistent", lambda: SeededKMeans().fit(X, labels[:5]))
    add("kmeans_plusplus(n_clusters=100)", "n_samples", lambda: kmeans_plusplus(X, 100))
    add("kmeans_plusplus(NaN X)", "NaN", lambda: kmeans_plusplus(bad_X["NaN"], 3))
    msvdd = {
        "n_projections": [0],
        "nu": [0.0, NAN],
        "v_a": [0.1],
        "ties": ["random"],
        "defense_recall": [0.0, 1.5],
        "feature_layer": ["nope"],
        "batch_size": [0],
        "random_state": ["a"],
    }
    for param, values in msvdd.items():
        for value in values:
            token = {"v_a": "v_a", "feature_layer": "feature_layer"}.get(param, param)
            add(
                f"MSVDDDefense({param}={value!r})",
                token,
                lambda p=param, v=value: MSVDDDefense(
                    _model(), **{p: v}, epochs_positive=1, epochs_both=1, finetune_epochs=0
                ).fit(x, y),
            )
    add(
        "MSVDDDefense one class",
        "class",
        lambda: MSVDDDefense(epochs_positive=1).fit(X, np.zeros(40)),
    )
    add(
        "MSVDDDefense y of 3 classes on a 4-class model",
        "classes",
        lambda: MSVDDDefense(_model()).fit(x[:3], y[:3]),
    )
    add("MSVDDDefense.predict before fit", "not fitted", lambda: MSVDDDefense().predict(X))

    add("mean_ci([])", "value", lambda: mean_ci([]))
    add("mean_ci(level=1.5)", "level", lambda: mean_ci([1.0, 2.0], level=1.5))
    add("mean_ci(level=nan)", "level", lambda: mean_ci([1.0, 2.0], level=NAN))
    add("ssim different shapes", "shape", lambda: ssim(x, x[:3]))
    add("mse NaN images", "NaN", lambda: mse(x, torch.full_like(x, NAN)))
    add("cw_ssim tiny images", "window", lambda: cw_ssim(torch.rand(2, 4, 4), torch.rand(2, 4, 4)))
    Xi, yi = np.random.default_rng(0).normal(size=(30, 2)), np.arange(30) % 3
    for name, call, token in (
        ("gaussian_noise(sigma=inf)", lambda: po.gaussian_noise(Xi, yi, sigma=INF), "sigma"),
        ("gaussian_noise(sigma=nan)", lambda: po.gaussian_noise(Xi, yi, sigma=NAN), "sigma"),
        ("gaussian_noise(sigma=-1)", lambda: po.gaussian_noise(Xi, yi, sigma=-1.0), "sigma"),
        ("uniform_outliers(n=-1)", lambda: po.uniform_outliers(Xi, yi, n=-1), "n"),
        ("uniform_outliers(n=2.5)", lambda: po.uniform_outliers(Xi, yi, n=2.5), "n"),
        ("uniform_outliers(margin=nan)", lambda: po.uniform_outliers(Xi, yi, margin=NAN), "margin"),
        ("label_shuffle(fraction=2)", lambda: po.label_shuffle(Xi, yi, fraction=2.0), "fraction"),
        ("label_shuffle(fraction=nan)", lambda: po.label_shuffle(Xi, yi, fraction=NAN), "fraction"),
        ("gaussian_noise NaN X", lambda: po.gaussian_noise(np.full((30, 2), NAN), yi), "NaN"),
        ("gaussian_noise y wrong length", lambda: po.gaussian_noise(Xi, yi[:3]), "y"),
    ):
        add(name, token, call)
    _clustering_attack_cases(add)
    _certificate_cases(add)
    return cases


def _clustering_attack_cases(add: Callable[[str, str, Callable[[], Any]], None]) -> None:
    """Bad parameters and data of the attacks on clustering (Biggio, Chhabra, Cinà, Crussell),
    each on a quick victim; a parameter's case only builds the attack."""
    from sklearn.cluster import DBSCAN, AgglomerativeClustering

    from advlab.attacks import clustering as ca

    rng = np.random.default_rng(0)
    unit = np.clip(np.r_[rng.normal(0.3, 0.05, (20, 2)), rng.normal(0.7, 0.05, (20, 2))], 0, 1)
    victim = AgglomerativeClustering(2)
    nan_X = unit.copy()
    nan_X[0, 0] = NAN
    for name, token, call in (
        ("BiggioBridge(n_points=-1)", "n_points", lambda: ca.BiggioBridge(victim, n_points=-1)),
        ("BiggioBridge(strategy='all')", "strategy", lambda: ca.BiggioBridge(victim, strategy="all")),
        ("BiggioBridge(clusters=(0, 0))", "clusters",
         lambda: ca.BiggioBridge(victim, clusters=(0, 0)).attack(unit)),
        ("BiggioBridge NaN X", "NaN", lambda: ca.BiggioBridge(victim).attack(nan_X)),
        ("BiggioBridge 1-D X", "X", lambda: ca.BiggioBridge(victim).attack(unit[:, 0])),
        ("Chhabra(budget=-1)", "budget", lambda: ca.Chhabra(victim, budget=-1.0)),
        ("Chhabra(budget=nan)", "budget", lambda: ca.Chhabra(victim, budget=NAN)),
        ("Chhabra(box=(1, 0))", "box", lambda: ca.Chhabra(victim, box=(1.0, 0.0))),
        ("Chhabra X outside box", "box", lambda: ca.Chhabra(victim).attack(unit * 3)),
        ("Chhabra(target_index=1000)", "target_index",
         lambda: ca.Chhabra(victim, target_index=1000).attack(unit)),
        ("Chhabra budget of 5 for fewer features", "budget",
         lambda: ca.Chhabra(victim, budget=[0.1] * 5).attack(unit[:, :2])),
        ("Chhabra budget all 0", "budget", lambda: ca.Chhabra(victim, budget=[0.0, 0.0])),
        ("Cina(s=0)", "s", lambda: ca.Cina(victim, s=0)),
        ("Cina(delta=inf)", "delta", lambda: ca.Cina(victim, delta=INF)),
        ("Cina(objective='f1')", "objective", lambda: ca.Cina(victim, objective="f1")),
        ("Cina X outside box", "box", lambda: ca.Cina(victim).attack(unit * 3)),
        ("Cina(victim=1, target=1)", "victim", lambda: ca.Cina(victim, victim=1, target=1).attack(unit)),
        ("CrussellMerge of KMeans", "DBSCAN", lambda: ca.CrussellMerge(victim)),
        ("CrussellMerge(clusters=(1, 1))", "clusters", lambda: ca.CrussellMerge(DBSCAN(), clusters=(1, 1))),
        ("CrussellMerge(n_points=-1)", "n_points", lambda: ca.CrussellMerge(DBSCAN(), n_points=-1)),
    ):  # fmt: skip
        add(name, token, call)


def _certificate_cases(add: Callable[[str, str, Callable[[], Any]], None]) -> None:
    """Bad budgets, inputs, boxes and networks of the certificates (interval bounds, linear
    bounds, MILP verification, Voronoi radii) and of certified training."""
    from advlab.attacks.evasion import kmeans_certified_radius
    from advlab.defenses import (
        is_certified,
        is_certified_linear,
        margin_lower_bounds,
        train_ibp,
        verify_linf,
    )
    from advlab.models import Model

    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    pooled = nn.Sequential(nn.MaxPool2d(2, return_indices=True)).eval()
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    byte = Model(net, bounds=(0, 255))
    centres = np.random.default_rng(0).random((3, 16))
    for name, token, call in (
        ("is_certified(eps=nan)", "eps", lambda: is_certified(net, x, y, NAN)),
        ("is_certified(eps=-1)", "eps", lambda: is_certified(net, x, y, -1.0)),
        ("is_certified x outside box", "box", lambda: is_certified(net, 255 * x, y, 0.1)),
        ("is_certified Model(0, 255) with bounds=(0, 1)", "Model's bounds",
         lambda: is_certified(byte, x, y, 1.0, bounds=(0, 1))),
        ("is_certified y wrong length", "y", lambda: is_certified(net, x, y[:3], 0.1)),
        ("margin_lower_bounds LPPool1d", "LPPool1d", lambda: margin_lower_bounds(
            nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.Unflatten(1, (4, 1)),
                          nn.LPPool1d(2, 1), nn.Flatten()), x, y, 0.1)),
        ("is_certified_linear max pooling with indices", "max pooling that returns its",
         lambda: is_certified_linear(pooled, x, y, 0.1)),
        ("is_certified_linear(eps=inf)", "eps", lambda: is_certified_linear(net, x, y, INF)),
        ("is_certified_linear label 9 of 4", "y must lie", lambda: is_certified_linear(net, x, 9 + 0 * y, 0.1)),
        ("verify_linf(time_limit=0)", "time_limit", lambda: verify_linf(net, x, y, 0.1, time_limit=0)),
        ("verify_linf(layer_bounds='exact')", "layer_bounds",
         lambda: verify_linf(net, x, y, 0.1, layer_bounds="exact")),
        ("verify_linf NaN x", "NaN", lambda: verify_linf(net, x * NAN, y, 0.1)),
        ("train_ibp(epochs=0)", "epochs", lambda: train_ibp(net, x, y, 0.1, epochs=0)),
        ("train_ibp(kappa_end=2)", "kappa_end", lambda: train_ibp(net, x, y, 0.1, kappa_end=2.0)),
        ("is_certified L2 per-feature eps", "one number",
         lambda: is_certified(net, x, y, torch.full((1, 4, 4), 0.1), norm="l2")),
        ("is_certified L2 units of another shape", "units",
         lambda: is_certified(net, x, y, 0.1, norm="l2", units=[1.0, 2.0])),
        ("is_certified L2 units all 0", "units", lambda: is_certified(net, x, y, 0.1, norm="l2", units=0.0)),
        ("is_certified norm='L2'", "norm", lambda: is_certified(net, x, y, 0.1, norm="L2")),
        ("train_ibp(norm='l1')", "norm", lambda: train_ibp(net, x, y, 0.1, norm="l1")),
        ("margin_lower_bounds L2 eps=inf", "eps", lambda: margin_lower_bounds(net, x, y, INF, norm="l2")),
        ("kmeans_certified_radius(norm='l1')", "norm", lambda: kmeans_certified_radius(centres, centres, norm="l1")),
        ("kmeans_certified_radius D mismatch", "feature",
         lambda: kmeans_certified_radius(centres, centres[:, :4])),
        ("kmeans_certified_radius one centre", "centres", lambda: kmeans_certified_radius(centres[:1], centres)),
    ):  # fmt: skip
        add(name, token, call)
    _kmeans_pipeline_cases(add)


def _kmeans_pipeline_cases(add: Callable[[str, str, Callable[[], Any]], None]) -> None:
    """A k-means behind a pipeline step that is not affine, a clusterer whose predict is not
    the nearest centre, a feature network that is not a module or of the wrong width, and the
    k-means certificate through a network with bad budgets and mappings."""
    from sklearn.cluster import BisectingKMeans
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, QuantileTransformer

    from advlab.attacks.evasion import KMeansMinimalAttack, KMeansPGD, kmeans_certified_radius
    from advlab.cluster import KMeans
    from advlab.defenses import (
        kmeans_is_certified,
        kmeans_is_certified_linear,
        verify_kmeans_linf,
        verify_linf,
    )

    rows = np.random.default_rng(0).random((60, 16)).astype(np.float32)
    x = torch.from_numpy(rows).reshape(60, 1, 4, 4)
    km = KMeans(4, random_state=0).fit(rows)
    normalised = make_pipeline(Normalizer(), KMeans(3, random_state=0)).fit(rows)
    quantiles = make_pipeline(QuantileTransformer(n_quantiles=20), KMeans(3, random_state=0)).fit(
        rows
    )
    bisecting = BisectingKMeans(5, random_state=0).fit(rows)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU())
    for name, token, call in (
        ("KMeansPGD behind Normalizer", "normalizer", lambda: KMeansPGD(normalised, None, 0.1, 2)),
        ("kmeans_certified_radius behind QuantileTransformer", "quantiletransformer",
         lambda: kmeans_certified_radius(quantiles, rows)),
        ("KMeansMinimalAttack on BisectingKMeans", "nearest centre", lambda: KMeansMinimalAttack(bisecting)),
        ("KMeansPGD(features='net')", "features", lambda: KMeansPGD(km, None, 0.1, 2, features="net")),
        ("KMeansPGD features of the wrong width", "features per sample",
         lambda: KMeansPGD(km, None, 0.1, 2, features=net)(x, torch.zeros(60, dtype=torch.long))),
        ("kmeans_is_certified(eps=nan)", "eps", lambda: kmeans_is_certified(km, x, NAN)),
        ("kmeans_is_certified mapping of 3 for 4 clusters", "mapping",
         lambda: kmeans_is_certified(km, x, 0.1, mapping=[0, 1, 0])),
        ("kmeans_is_certified x outside the box", "box", lambda: kmeans_is_certified(km, 3 * x, 0.1)),
        ("verify_kmeans_linf(eps=-1)", "eps", lambda: verify_kmeans_linf(km, x, -1.0)),
        ("verify_kmeans_linf x with NaN", "NaN", lambda: verify_kmeans_linf(km, x * NAN, 0.1)),
        ("verify_kmeans_linf through a Tanh", "Tanh",
         lambda: verify_kmeans_linf(km, x, 0.1, features=nn.Sequential(nn.Flatten(), nn.Tanh()))),
        ("verify_kmeans_linf features of the wrong width", "features per sample",
         lambda: verify_kmeans_linf(km, x, 0.1, features=net)),
        ("verify_kmeans_linf network of the wrong input shape", "shape",
         lambda: verify_kmeans_linf(km, x[:, :, :2], 0.1, features=nn.Linear(16, 16))),
        ("verify_kmeans_linf(minimal='yes')", "minimal",
         lambda: verify_kmeans_linf(km, x, 0.1, minimal="yes")),
        ("verify_linf(minimal=1)", "minimal",
         lambda: verify_linf(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), x, torch.zeros(60, dtype=torch.long), 0.1, minimal=1)),
        ("kmeans_is_certified_linear(eps=inf)", "eps",
         lambda: kmeans_is_certified_linear(km, x, float("inf"))),
        ("kmeans_is_certified_linear mapping of 3 for 4 clusters", "mapping",
         lambda: kmeans_is_certified_linear(km, x, 0.1, mapping=[0, 1, 0])),
    ):  # fmt: skip
        add(name, token, call)
    _per_feature_budget_cases(add, km, x)
    _per_feature_bounds_cases(add, km, x)


def _per_feature_bounds_cases(
    add: Callable[[str, str, Callable[[], Any]], None], km: Any, x: torch.Tensor
) -> None:
    """Per-feature input bounds (one [lo_d, hi_d] per feature) that cross, hold NaN,
    booleans or strings, are empty, fix every feature, do not broadcast to one input or
    leave an input outside, in ``Model``, the attacks, the certificates, the verifiers and
    the k-means attacks and radius."""
    from advlab.attacks.evasion import (
        PGD,
        CarliniWagnerL2,
        KMeansMinimalAttack,
        KMeansPGD,
        kmeans_certified_radius,
    )
    from advlab.defenses import is_certified, kmeans_is_certified, verify_kmeans_linf, verify_linf
    from advlab.models import Model

    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    y = torch.zeros(len(x), dtype=torch.long)
    lo, hi = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    narrow = (lo, torch.full((1, 4, 4), 0.05))  # x (uniform on [0, 1]) lies outside
    rows = x.flatten(1).numpy()
    for name, token, call in (
        ("Model bounds crossing at one feature", "lower <= upper",
         lambda: Model(net, bounds=(torch.tensor([0.0, 2.0]), 1.0))),
        ("Model bounds with NaN", "NaN", lambda: Model(net, bounds=(lo * NAN, hi))),
        ("Model bounds of booleans", "booleans", lambda: Model(net, bounds=(lo > 0, hi))),
        ("Model bounds of strings", "number", lambda: Model(net, bounds=(["a"], hi))),
        ("Model bounds empty", "empty", lambda: Model(net, bounds=([], 1.0))),
        ("Model bounds fixing every feature", "fix every feature", lambda: Model(net, bounds=(hi, hi))),
        ("Model bounds of three values", "(lower, upper)", lambda: Model(net, bounds=(0.0, 0.5, 1.0))),
        ("PGD with bounds of shape (3,) for (1, 4, 4)", "broadcast",
         lambda: PGD(Model(net, bounds=(torch.zeros(3), 1.0)), eps=0.1, max_iter=2)(x, y)),
        ("PGD with inputs outside their feature's bounds", "per-feature bounds",
         lambda: PGD(Model(net, bounds=narrow), eps=0.1, max_iter=2)(x, y)),
        ("CarliniWagnerL2 with bounds of shape (3,) for (1, 4, 4)", "broadcast",
         lambda: CarliniWagnerL2(Model(net, bounds=(torch.zeros(3), 1.0)), steps=2)(x, y)),
        ("is_certified with bounds other than the Model's", "differ",
         lambda: is_certified(Model(net, bounds=(lo, hi * 2)), x, y, 0.1, bounds=(0.0, 1.0))),
        ("verify_linf with inputs outside per-feature bounds", "per-feature bounds",
         lambda: verify_linf(Model(net, bounds=narrow), x, y, 0.1)),
        ("KMeansPGD with crossing bounds", "lower <= upper",
         lambda: KMeansPGD(km, None, 0.1, 2, bounds=(hi, lo))(x, y)),
        ("KMeansMinimalAttack with inputs outside", "per-feature bounds",
         lambda: KMeansMinimalAttack(km, bounds=narrow)(x)),
        ("kmeans_is_certified with bounds of shape (5,)", "broadcast",
         lambda: kmeans_is_certified(km, x, 0.1, bounds=(torch.zeros(5), 1.0))),
        ("verify_kmeans_linf with NaN bounds", "NaN",
         lambda: verify_kmeans_linf(km, x, 0.1, bounds=(lo * NAN, hi))),
        ("kmeans_certified_radius with bounds of shape (1, 4, 4) for rows", "broadcast",
         lambda: kmeans_certified_radius(km, rows, "linf", bounds=(lo, hi))),
        ("kmeans_certified_radius with rows outside per-feature bounds", "per-feature bounds",
         lambda: kmeans_certified_radius(km, rows, "linf", bounds=(np.zeros(16), np.full(16, 0.05)))),
    ):  # fmt: skip
        add(name, token, call)


def _per_feature_budget_cases(
    add: Callable[[str, str, Callable[[], Any]], None], km: Any, x: torch.Tensor
) -> None:
    """Per-feature budgets (one L-inf half-width per feature) of the wrong shape, negative,
    NaN, boolean or empty, in the attacks, the certificates and the verifiers, and in L2; the
    k-means radius' and minimal attack's per-feature units (``scale``) and Algorithm 1's
    training attacks' (``units``); the certified radii's searches."""
    from advlab.attacks.evasion import (
        FGSM,
        PGD,
        KMeansMinimalAttack,
        KMeansPGD,
        kmeans_certified_radius,
    )
    from advlab.defenses import (
        KMeansAdversarialTraining,
        KMeansWhiteBoxAttack,
        RandomizedSmoothing,
        SurrogateAttack,
        certified_radius,
        is_certified,
        is_certified_linear,
        kmeans_certified_radius_through,
        kmeans_is_certified,
        kmeans_is_certified_linear,
        verify_kmeans_linf,
        verify_linf,
    )

    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    y = torch.zeros(len(x), dtype=torch.long)
    wide = torch.full((1, 4, 4), 0.1)
    rows = x.flatten(1).numpy()
    for name, token, call in (
        ("FGSM eps of 3 entries for (1, 4, 4)", "broadcast", lambda: FGSM(net, eps=[0.1] * 3)(x, y)),
        ("PGD eps with a negative entry", ">= 0", lambda: PGD(net, eps=-wide, max_iter=2)(x, y)),
        ("PGD eps_step of shape (2, 4, 4)", "eps_step",
         lambda: PGD(net, eps=0.1, eps_step=torch.ones(2, 4, 4), max_iter=2)(x, y)),
        ("PGD-l2 with a per-feature eps", "L2", lambda: PGD(net, eps=wide, max_iter=2, norm="l2")),
        ("PGD eps of booleans", "numbers", lambda: PGD(net, eps=wide > 0, max_iter=2)(x, y)),
        ("PGD eps empty", "empty", lambda: PGD(net, eps=[], max_iter=2)(x, y)),
        ("KMeansPGD eps with NaN", "finite", lambda: KMeansPGD(km, None, wide * NAN, 2)(x, y)),
        ("is_certified eps of shape (16,) for (1, 4, 4)", "broadcast",
         lambda: is_certified(net, x, y, torch.full((16,), 0.1))),
        ("is_certified_linear eps with inf", "finite",
         lambda: is_certified_linear(net, x, y, wide * INF)),
        ("verify_linf eps of shape (4, 4, 4)", "broadcast",
         lambda: verify_linf(net, x, y, torch.full((4, 4, 4), 0.1))),
        ("kmeans_is_certified eps of 3 entries", "broadcast",
         lambda: kmeans_is_certified(km, x, [0.1, 0.2, 0.3])),
        ("kmeans_is_certified_linear eps negative", ">= 0",
         lambda: kmeans_is_certified_linear(km, x, -wide)),
        ("verify_kmeans_linf eps of strings", "eps", lambda: verify_kmeans_linf(km, x, ["a", "b"])),
        ("kmeans_certified_radius scale of 3 for 16 features", "scale",
         lambda: kmeans_certified_radius(km, rows, "linf", scale=[1.0, 2.0, 3.0])),
        ("kmeans_certified_radius scale all 0", "scale",
         lambda: kmeans_certified_radius(km, rows, "linf", scale=np.zeros(16))),
        ("KMeansMinimalAttack scale negative", "scale", lambda: KMeansMinimalAttack(km, scale=-np.ones(16))),
        ("KMeansMinimalAttack scale NaN", "scale", lambda: KMeansMinimalAttack(km, scale=[NAN] * 16)),
        ("SurrogateAttack units in standardized units", "units",
         lambda: SurrogateAttack(net, y, "standardized", units=np.ones(16))),
        ("certified_radius(method='exact')", "method",
         lambda: certified_radius(net, x, y, 0.1, method="exact")),
        ("certified_radius(eps_max=0)", "eps_max", lambda: certified_radius(net, x, y, 0.0)),
        ("kmeans_certified_radius_through(tol=2)", "tol",
         lambda: kmeans_certified_radius_through(km, x, 0.1, tol=2.0)),
        ("kmeans_certified_radius_through scale of 3", "scale",
         lambda: kmeans_certified_radius_through(km, x, 0.1, scale=[1.0, 1.0, 1.0])),
        ("Algorithm 1 with units of 3 for 16 features", "units",
         lambda: KMeansAdversarialTraining(3, beta=1, attack=KMeansWhiteBoxAttack(units=[1.0] * 3),
                                           random_state=0).fit(rows)),
        ("PGD-l2 units of 3 entries for (1, 4, 4)", "units",
         lambda: PGD(net, eps=0.5, max_iter=2, norm="l2", units=[1.0] * 3)(x, y)),
        ("PGD-l2 units all 0", "units", lambda: PGD(net, eps=0.5, max_iter=2, norm="l2", units=wide * 0)),
        ("PGD-l2 units with NaN", "units", lambda: PGD(net, eps=0.5, max_iter=2, norm="l2", units=wide * NAN)),
        ("PGD units beside an array eps", "eps is one number",
         lambda: PGD(net, eps=wide, max_iter=2, units=wide)),
        ("FGSM units in standardized units", "units",
         lambda: FGSM(net, eps=0.1, eps_units="standardized", units=wide)),
        ("KMeansPGD-l2 units negative", "units",
         lambda: KMeansPGD(km, None, 0.5, 2, norm="l2", units=-wide)(x, y)),
        ("is_certified_linear-l2 with a per-feature eps", "L2",
         lambda: is_certified_linear(net, x, y, wide, norm="l2")),
        ("is_certified_linear norm='l3'", "norm", lambda: is_certified_linear(net, x, y, 0.1, norm="l3")),
        ("is_certified_linear-l2 units of 3 for (1, 4, 4)", "units",
         lambda: is_certified_linear(net, x, y, 0.1, norm="l2", units=[1.0] * 3)),
        ("certified_radius-l2 by interval bounds, scale of 3 for (1, 4, 4)", "scale",
         lambda: certified_radius(net, x, y, 0.1, method="interval", norm="l2", scale=[1.0] * 3)),
        ("RandomizedSmoothing(sigma=0)", "sigma", lambda: RandomizedSmoothing(net, 0.0)),
        ("RandomizedSmoothing(alpha=1.5)", "alpha", lambda: RandomizedSmoothing(net, 0.1, alpha=1.5)),
        ("RandomizedSmoothing(n=True)", "n", lambda: RandomizedSmoothing(net, 0.1, n=True)),
        ("RandomizedSmoothing certify of inputs outside [0, 1]", "bounds",
         lambda: RandomizedSmoothing(net, 0.1, n=10).certify(x + 5)),
        ("RandomizedSmoothing predict of NaN inputs", "NaN",
         lambda: RandomizedSmoothing(net, 0.1, n=10).predict(x * NAN)),
    ):  # fmt: skip
        add(name, token, call)


def _cli_cases(tmp: Path) -> list[tuple[str, str, Callable[[], Any]]]:
    from advlab.cli.main import main

    (tmp / "file").write_text("x")
    configs = {
        "not yaml": ("experiment: [", "YAML"),
        "a list": ("- 1\n- 2\n", "mapping"),
        "no experiment": ("n_clusters: 3\n", "experiment"),
        "experiment 123": ("experiment: 123\n", "experiment"),
        "unknown experiment": ("experiment: nope\n", "nope"),
        "unknown key": ("experiment: demo\nbogus: 1\n", "bogus"),
        "wrong type": ("experiment: demo\nn_clusters: many\n", "n_clusters"),
        "bool for int": ("experiment: demo\nn_repeats: true\n", "n_repeats"),
        "negative": ("experiment: demo\nn_clusters: -3\n", "n_clusters"),
        "device gpu0": ("experiment: omari2024\ndevice: gpu0\n", "device"),
        "device cuda": ("experiment: omari2024\ndevice: cuda\n", "device"),
        "binary file": (None, "c.yaml"),
    }
    cases: list[tuple[str, str, Callable[[], Any]]] = []

    def cli(argv: list[str]) -> Callable[[], Any]:
        def call() -> Any:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
            if code == 2:
                raise ValueError(err.getvalue())
            return code

        return call

    for name, (text, token) in configs.items():
        path = tmp / f"{name.replace(' ', '_')}" / "c.yaml"
        path.parent.mkdir()
        if text is None:
            path.write_bytes(b"\xff\xfe\x00bad")
        else:
            path.write_text(text)
        cases.append(
            (
                f"advlab run ({name})",
                token,
                cli(["run", str(path), "--out", str(tmp / "o"), "--quiet"]),
            )
        )
    for name, argv, token in (
        ("config is a folder", ["run", str(tmp)], str(tmp)),
        ("config missing", ["run", str(tmp / "none.yaml")], "none.yaml"),
        ("--out is a file", ["reproduce", "demo", "--out", str(tmp / "file")], "--out"),
        ("--out unwritable", ["reproduce", "demo", "--out", "/proc/advlab"], "--out"),
        (
            "--cache is a file",
            ["reproduce", "demo", "--out", str(tmp / "o2"), "--cache", str(tmp / "file")],
            "--cache",
        ),
        (
            "unknown profile",
            ["reproduce", "demo", "--profile", "huge", "--out", str(tmp / "o3")],
            "huge",
        ),
        ("unknown experiment", ["reproduce", "nope"], "nope"),
    ):
        cases.append((f"advlab {name}", token, cli([*argv, "--quiet"])))
    for name, (_, token) in configs.items():  # plan reads the same configs
        path = tmp / f"{name.replace(' ', '_')}" / "c.yaml"
        cases.append((f"advlab plan ({name})", token, cli(["plan", str(path)])))
    missing = tmp / "missing_data" / "c.yaml"
    missing.parent.mkdir()
    missing.write_text(f"experiment: evaluate\ndata: {{path: {tmp / 'none.npz'}}}\n"
                       "model: {factory: mlp, weights: w.safetensors}\nattacks: [{name: deepfool}]\n")  # fmt: skip
    tables = {  # a user's .csv rows for evaluate-clustering, each with one mistake
        "empty": (b"", "header line"),
        "header only": (b"a,b,y\n", "header line"),
        "ragged row": (b"a,b\n1,2\n3\n", "line 3"),
        "a word among numbers": (b"a,b\n1,2\n3,four\n", "'four'"),
        "an empty cell": (b"a,b\n1,2\n3,\n", "column 'b'"),
        "labels only": (b"y\n1\n2\n", "no feature column"),
        "not utf-8": (b"a,b\n\xff\xfe,1\n", ".csv"),
        "nan cell": (b"a,b\n1,2\n3,nan\n4,5\n6,7\n", "NaN"),
    }
    for name, (content, token) in tables.items():
        folder = tmp / f"csv_{name.replace(' ', '_')}"
        folder.mkdir()
        (folder / "rows.csv").write_bytes(content)
        (folder / "c.yaml").write_text(
            f"experiment: evaluate-clustering\ndata: {{path: {folder / 'rows.csv'}}}\n"
            "clusterer: {factory: 'sklearn.cluster:KMeans', kwargs: {n_clusters: 2}}\n"
            "attacks: [{name: gaussian_noise, budgets: [0.1]}]\n"
        )
        argv = ["run", str(folder / "c.yaml"), "--out", str(folder / "o"), "--quiet"]
        cases.append((f"advlab run evaluate-clustering (csv: {name})", token, cli(argv)))
    for name, argv, token in (
        ("plan --workers 0", ["plan", "demo", "--workers", "0"], "--workers"),
        ("plan unknown profile", ["plan", "demo", "--profile", "huge"], "huge"),
        ("plan evaluate without its data file", ["plan", str(missing)], "none.npz"),
    ):
        cases.append((f"advlab {name}", token, cli(argv)))
    return cases


def classify(token: str, call: Callable[[], Any]) -> tuple[str, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = call()
    except (ValueError, TypeError) as exc:
        message = str(exc)
        return (
            "clear" if token.lower() in message.lower() else "unclear",
            f"{type(exc).__name__}: {message[:160]}",
        )
    except Exception as exc:
        return "unclear", f"{type(exc).__name__}: {str(exc)[:160]}"
    detail = "accepted"
    result = getattr(out, "x_adv", None)
    if isinstance(result, torch.Tensor) and not bool(torch.isfinite(result).all()):
        detail = "accepted, returned NaN"
    elif isinstance(out, float) and math.isnan(out):
        detail = "accepted, returned NaN"
    return "silent", detail


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--details", action="store_true", help="list every case that is not clear")
    args = parser.parse_args()
    import os

    os.environ.setdefault("ADVLAB_QUIET", "1")
    os.environ.setdefault("ADVLAB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ADVLAB_CACHE"] = str(Path(tmp) / "cache")
        cases = _cases() + _cli_cases(Path(tmp))
        rows = [(name, *classify(token, call)) for name, token, call in cases]
    counts = {k: sum(r[1] == k for r in rows) for k in ("clear", "unclear", "silent")}
    report: dict[str, Any] = {"cases": len(rows), **counts}
    if args.details:
        report["not_clear"] = [
            {"case": n, "outcome": o, "detail": d} for n, o, d in rows if o != "clear"
        ]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
