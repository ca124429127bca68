"""``evaluate``: a user's own torch model (imported by name, weights from a file) on their own
.npz data, attacked as configured; the numbers equal the attacks called directly, workers give
the serial results, and every mistake in the config is one line before any attack runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from advlab.attacks.evasion import FGSM, PGD, DeepFool
from advlab.cli.main import main
from advlab.data import load_dataset
from advlab.defenses import (
    ROBUST,
    UNKNOWN,
    RandomizedSmoothing,
    certified_radius,
    is_certified,
    is_certified_linear,
    train_certified_classifier,
    verify_linf,
)
from advlab.experiments import Cache, ConfigError
from advlab.experiments.executors import LocalExecutor
from advlab.metrics import robust_accuracy_curve
from advlab.models import Model
from tests.conftest import run_config

N, CHUNK, CLASSES = 24, 10, 5


def build(width: int = 8) -> nn.Module:
    """The user's network (imported by the experiment as ``tests.test_evaluate:build``): 3
    channels, 12 x 12 images, 5 classes."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * width, CLASSES),
    )


class Skip(nn.Sequential):
    """``build``'s layers with a forward that is not them in order (a user's residual net)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + super().forward(x.flip(-1))


class Pair(nn.Sequential):
    """``build``'s layers returning (logits, input), as models with auxiliary outputs do."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return super().forward(x), x


def build_normalised(width: int = 8) -> nn.Module:
    """``build``'s weights with a group normalisation for the ReLU: interval bounds take it,
    linear bounds and exact verification do not."""
    net = build(width)
    net[1] = nn.GroupNorm(1, width, affine=False)
    return net


def build_log_softmax(width: int = 8) -> nn.Module:
    """``build``'s weights ending in log-softmax, as PyTorch's MNIST example ends."""
    return nn.Sequential(*build(width), nn.LogSoftmax(dim=1))


def build_pair(width: int = 8) -> nn.Module:
    return Pair(*build(width))


def build_skip(width: int = 8) -> nn.Module:
    """``build``'s weights in a network interval bounds cannot follow."""
    return Skip(*build(width))


@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> dict[str, Path]:
    return make_user_files(tmp_path_factory.mktemp("user"))


def make_user_files(root: Path) -> dict:
    """Weights (.safetensors and torch.save) and an .npz of 24 images in ``root`` whose labels
    are the network's own decisions except for 4 (so 20 of 24 are classified correctly)."""
    torch.manual_seed(0)
    net = build().eval()
    x = torch.rand(N, 3, 12, 12)
    with torch.no_grad():
        y = net(x).argmax(1)
    y[:4] = (y[:4] + 1) % CLASSES
    save_file(net.state_dict(), str(root / "net.safetensors"))
    torch.save(net.state_dict(), root / "net.pt")
    np.savez(root / "data.npz", x=x.numpy(), y=y.numpy())
    return {"root": root, "weights": root / "net.safetensors", "pt": root / "net.pt",
            "data": root / "data.npz", "x": x, "y": y, "net": net}  # fmt: skip


def _config(files: dict[str, Path], **changes) -> dict:
    config = {
        "data": {"path": str(files["data"])},
        "model": {"factory": "tests.test_evaluate:build", "weights": str(files["weights"])},
        "attacks": [
            {"name": "fgsm", "eps": [0.3, 0.4]},
            {"name": "pgd", "eps": [0.3, 0.4], "params": {"max_iter": 5}},
            {"name": "deepfool", "params": {"max_iter": 20}},
        ],
        "eps_grid": {"l2": [2.6, 3.0, 3.4]},
        "chunk_size": CHUNK,
        "batch_size": 8,
    }
    for key, value in changes.items():
        config[key] = value
    return config


def _run(tmp_path: Path, config: dict, executor=None) -> dict:
    return run_config("evaluate", tmp_path, config, executor)


def _by_id(results: dict) -> dict[str, float]:
    return {c["id"]: c["ours"] for c in results["comparisons"]}


def _chunked(attack_of_start, x: torch.Tensor, y: torch.Tensor):
    """Success and distances of an attack run chunk by chunk as the units run it."""
    parts = [attack_of_start(s)(x[s : s + CHUNK], y[s : s + CHUNK]) for s in range(0, N, CHUNK)]
    return (torch.cat([p.success for p in parts]).numpy(),
            torch.cat([p.distances for p in parts]).double().numpy())  # fmt: skip


@pytest.fixture(scope="module")
def serial(user_files, tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("serial")
    return tmp, _run(tmp, _config(user_files))


def test_the_numbers_are_those_of_the_attacks_called_directly(user_files, serial):
    """Clean accuracy 20/24; FGSM's and PGD's robust accuracy are the images correct and not
    broken; DeepFool's curve is robust_accuracy_curve of its distances; the worst case per norm
    is the per-image minimum over the attacks."""
    _, results = serial
    got, x, y = _by_id(results), user_files["x"], user_files["y"]
    model = Model(user_files["net"])
    correct = np.arange(N) >= 4
    assert got["clean.accuracy"] == pytest.approx(100 * 20 / 24)
    broken_linf = np.full(N, np.inf)
    for eps in (0.4, 0.3):  # the largest first, so the smallest successful budget stays
        fgsm, _ = _chunked(lambda s, e=eps: FGSM(model, eps=e, batch_size=8), x, y)
        pgd, _ = _chunked(lambda s, e=eps: PGD(model, eps=e, max_iter=5, random_state=s,
                                               batch_size=8), x, y)  # fmt: skip
        assert got[f"fgsm.linf.eps{eps:g}.robust_accuracy"] == pytest.approx(
            100 * np.mean(correct & ~fgsm)
        )
        assert got[f"pgd.linf.eps{eps:g}.robust_accuracy"] == pytest.approx(
            100 * np.mean(correct & ~pgd)
        )
        assert got[f"pgd.linf.eps{eps:g}.success_rate"] == pytest.approx(100 * pgd[correct].mean())
        broken_linf[fgsm | pgd] = eps
    ok, dist = _chunked(lambda s: DeepFool(model, max_iter=20, batch_size=8), x, y)
    grid = [2.6, 3.0, 3.4]
    curve = robust_accuracy_curve(correct, dist, grid)
    assert [got[f"deepfool.l2.eps{e:g}.robust_accuracy"] for e in grid] == pytest.approx(curve)
    assert got["deepfool.l2.median_distance"] == pytest.approx(np.median(dist[correct & ok]))
    assert [got[f"worst_case.l2.eps{e:g}.robust_accuracy"] for e in grid] == pytest.approx(curve)
    linf = robust_accuracy_curve(correct, broken_linf, [0.3, 0.4])
    assert [got[f"worst_case.linf.eps{e}.robust_accuracy"] for e in (0.3, 0.4)] == pytest.approx(
        linf
    )
    assert 0 < got["pgd.linf.eps0.3.robust_accuracy"] < got["clean.accuracy"]  # discriminates
    assert 0 < curve[1] < curve[0] < got["clean.accuracy"]
    n = {c["id"]: c.get("n") for c in results["comparisons"]}
    assert n["clean.accuracy"] == N and n["pgd.linf.eps0.3.success_rate"] == 20


def test_report_figures_and_resume(user_files, serial, capsys):
    """A figure per norm, the HTML report, and a rerun that recomputes nothing."""
    tmp, results = serial
    run = tmp / "run"
    figures = ("robustness-linf", "robustness-l2", "examples")  # examples: 3-channel images
    assert all((run / f"{name}.png").is_file() for name in figures)
    assert main(["report", str(run), "--html", str(tmp / "r.html")]) == 0
    html = (tmp / "r.html").read_text()
    assert "worst case" in html and "Wilson 95 %" in html
    assert "measurements</b> with their intervals (no paper to compare with)" in html
    again = _run(tmp, _config(user_files))
    manifest = json.loads((run / "manifest.json").read_text())
    assert again == results and manifest["units_computed"] == 0


def test_local_workers_import_the_model_and_give_the_serial_results(user_files, serial, tmp_path):
    """Two worker processes import the user's factory by name and load the weights file."""
    _, results = serial
    assert _run(tmp_path, _config(user_files), LocalExecutor(2)) == results


def test_torch_save_weights_and_a_0_255_model(user_files, serial, tmp_path):
    """The same network from a torch.save state dict, read on [0, 255] (bounds, preprocessing
    and budgets scaled by 255): the same robust accuracies, DeepFool's distances x 255."""
    _, results = serial
    root = user_files["root"]
    np.savez(root / "data255.npz", x=user_files["x"].numpy() * 255, y=user_files["y"].numpy())
    config = _config(
        user_files,
        data={"path": str(root / "data255.npz")},
        model={
            "factory": "tests.test_evaluate:build",
            "weights": str(user_files["pt"]),
            "bounds": [0, 255],
            "preprocessing": {"mean": 0, "std": 255},
        },
        attacks=[
            {"name": "fgsm", "eps": [0.3 * 255, 0.4 * 255]},
            {"name": "deepfool", "params": {"max_iter": 20}},
        ],
        eps_grid={"l2": [2.6 * 255, 3.0 * 255, 3.4 * 255]},
    )
    got, want = _by_id(_run(tmp_path, config)), _by_id(results)
    for eps in (0.3, 0.4):
        assert got[f"fgsm.linf.eps{eps * 255:g}.robust_accuracy"] == pytest.approx(
            want[f"fgsm.linf.eps{eps:g}.robust_accuracy"]
        )
    for e in (2.6, 3.0, 3.4):
        assert got[f"deepfool.l2.eps{e * 255:g}.robust_accuracy"] == pytest.approx(
            want[f"deepfool.l2.eps{e:g}.robust_accuracy"]
        )
    assert got["deepfool.l2.median_distance"] == pytest.approx(
        255 * want["deepfool.l2.median_distance"], rel=1e-4
    )


def test_certify_brackets_robust_accuracy_from_below(user_files, tmp_path):
    """Certified accuracy per budget is ``is_certified`` on the user's network; no certified
    image is broken by an attack within the budget; it is a lower bound of the worst case and
    falls with eps; on the same network read on [0, 255] (preprocessing 1/255) the same images
    are certified at 255 eps."""
    budgets = [0.01, 0.036, 0.04, 0.3]
    results = _run(tmp_path / "a", _config(user_files, certify=budgets))
    got, x, y = _by_id(results), user_files["x"], user_files["y"]
    want = [100 * float(is_certified(Model(user_files["net"]), x, y, e).double().mean())
            for e in budgets]  # fmt: skip
    certified = [got[f"ibp.linf.eps{e:g}.certified_accuracy"] for e in budgets]
    assert certified == pytest.approx(want)
    assert results["certified_but_attacked"] == {f"eps{e:g}": 0 for e in budgets}
    assert certified[0] == got["clean.accuracy"] > certified[1] > certified[2] > 0 == certified[3]
    assert certified[3] < got["worst_case.linf.eps0.3.robust_accuracy"]
    assert results["curves"]["linf"]["certified"] == {"eps": budgets, "accuracy": certified}
    root = user_files["root"]
    np.savez(root / "data255c.npz", x=x.numpy() * 255, y=y.numpy())
    scaled = _config(
        user_files, data={"path": str(root / "data255c.npz")},
        model={"factory": "tests.test_evaluate:build", "weights": str(user_files["weights"]),
               "bounds": [0, 255], "preprocessing": {"mean": 0, "std": 255}},
        attacks=[{"name": "fgsm", "eps": [0.3 * 255]}], eps_grid={},
        certify=[e * 255 for e in budgets],
    )  # fmt: skip
    got255 = _by_id(_run(tmp_path / "b", scaled))
    assert [got255[f"ibp.linf.eps{e * 255:g}.certified_accuracy"] for e in budgets] == certified


def test_verify_is_exact_between_the_certificate_and_the_attacks(user_files, tmp_path):
    """``verify`` statuses (decided by the attacks and interval bounds where they can, by the
    mixed-integer program elsewhere) prove robust exactly the images ``verify_linf`` proves on
    its own over all of them; the rate lies between the certified accuracy and the attacks'
    worst case, and the images the program attacked beyond every attack are counted."""
    budgets = [0.02, 0.036]
    config = _config(user_files, certify=[0.036], verify=budgets,
                     eps_grid={"linf": [0.036, 0.3, 0.4]})  # fmt: skip
    results = _run(tmp_path, config)
    got, x, y = _by_id(results), user_files["x"], user_files["y"]
    for eps in budgets:
        direct = verify_linf(Model(user_files["net"]), x, y, eps).status
        assert not np.any(direct == UNKNOWN)
        want = 100 * float(np.mean(direct == ROBUST))
        assert got[f"milp.linf.eps{eps:g}.robust_accuracy"] == pytest.approx(want)
        assert got[f"milp.linf.eps{eps:g}.unknown"] == 0
    exact = got["milp.linf.eps0.036.robust_accuracy"]
    assert got["ibp.linf.eps0.036.certified_accuracy"] < exact
    assert exact <= got["worst_case.linf.eps0.036.robust_accuracy"]
    assert got["milp.linf.eps0.02.robust_accuracy"] >= exact
    assert results["curves"]["linf"]["verified"]["eps"] == budgets
    missed = results["verified_missed_by_attacks"]
    assert set(missed) == {"eps0.02", "eps0.036"}
    # no L-inf attack runs at 0.036: every correct image the program attacks there is missed
    gap = got["worst_case.linf.eps0.036.robust_accuracy"] - exact
    assert gap == pytest.approx(100 * missed["eps0.036"] / len(y))


def test_linear_bounds_certify_between_interval_bounds_and_the_programs(user_files, tmp_path):
    """``certify_bounds: [interval, linear]``: per budget the linear certificate is
    ``is_certified_linear`` on the user's network, every image interval bounds certify is
    linear-certified and every linear-certified one is proved robust by ``verify``; linear
    bounds certify more images than interval bounds at some budget (the test tells them
    apart), none certified is broken by an attack, and ``verify`` gives the statuses of
    ``verify_linf`` whichever certificates decided images before it."""
    budgets = [0.02, 0.036]
    config = _config(user_files, certify=budgets, certify_bounds=["interval", "linear"],
                     verify=budgets, eps_grid={"linf": [0.02, 0.036, 0.3, 0.4]})  # fmt: skip
    results = _run(tmp_path, config)
    got, x, y, net = _by_id(results), user_files["x"], user_files["y"], user_files["net"]
    gained = 0.0
    for eps in budgets:
        linear = is_certified_linear(Model(net), x, y, eps).numpy()
        interval = is_certified(Model(net), x, y, eps).numpy()
        status = verify_linf(Model(net), x, y, eps).status
        assert not (interval & ~linear).any() and not (linear & (status != ROBUST)).any()
        rate = got[f"linear.linf.eps{eps:g}.certified_accuracy"]
        assert rate == pytest.approx(100 * linear.mean())
        assert got[f"ibp.linf.eps{eps:g}.certified_accuracy"] <= rate
        assert rate <= got[f"milp.linf.eps{eps:g}.robust_accuracy"]
        assert got[f"milp.linf.eps{eps:g}.robust_accuracy"] == pytest.approx(
            100 * np.mean(status == ROBUST)
        )
        gained += rate - got[f"ibp.linf.eps{eps:g}.certified_accuracy"]
    assert gained > 0
    assert results["certified_but_attacked"] == {
        f"{m}eps{e:g}": 0 for m in ("", "linear.") for e in budgets
    }
    curves = results["curves"]["linf"]
    assert curves["certified_linear"] == {
        "eps": budgets,
        "accuracy": [got[f"linear.linf.eps{e:g}.certified_accuracy"] for e in budgets],
    }
    only = _run(tmp_path / "linear-only", _config(user_files, certify=budgets,
                                                  certify_bounds=["linear"]))  # fmt: skip
    assert "certified" not in only["curves"]["linf"]
    assert not any(c["id"].startswith("ibp.") for c in only["comparisons"])
    assert only["curves"]["linf"]["certified_linear"] == curves["certified_linear"]


def test_a_network_ending_in_log_softmax_is_certified_and_verified_on_its_logits(
    user_files, tmp_path
):
    """The same weights with a trailing LogSoftmax: every certificate, radius and verification
    id equals the network's without it (the margins are the logits'), and the attacks' ids too
    (log-softmax keeps the cross-entropy and the logits' differences)."""
    budgets = [0.02, 0.036]
    changes = dict(certify=budgets, certify_bounds=["interval", "linear"], certify_radius=0.3,
                   verify=budgets, eps_grid={"linf": [0.02, 0.036, 0.3, 0.4]})  # fmt: skip
    plain = _by_id(_run(tmp_path / "plain", _config(user_files, **changes)))
    model = {"factory": "tests.test_evaluate:build_log_softmax",
             "weights": str(user_files["weights"])}  # fmt: skip
    ending = _by_id(_run(tmp_path / "log-softmax", _config(user_files, model=model, **changes)))
    certificates = [k for k in plain if k.split(".")[0] in ("ibp", "linear", "milp")]
    assert len(certificates) >= 7
    assert {k: ending[k] for k in certificates} == {k: plain[k] for k in certificates}
    assert ending["pgd.linf.eps0.3.robust_accuracy"] == plain["pgd.linf.eps0.3.robust_accuracy"]


def test_certified_radii_are_those_of_the_bisection_and_below_every_attack(
    user_files, tmp_path, capsys
):
    """``certify_radius: 0.3`` with both certificates: each median is that of
    ``certified_radius`` on the user's network over the correctly classified images, linear
    above interval, no radius exceeds the smallest L-inf attack found, and the plan times the
    radii on the user's weights."""
    config = _config(user_files, certify_radius=0.3, certify_bounds=["interval", "linear"])
    results = _run(tmp_path, config)
    got, x, y, net = _by_id(results), user_files["x"], user_files["y"], user_files["net"]
    correct = (net(x).argmax(1) == y).numpy()
    medians = {}
    for method, prefix in (("interval", "ibp"), ("linear", "linear")):
        radii = certified_radius(Model(net), x, y, 0.3, method)
        medians[prefix] = got[f"{prefix}.linf.median_certified_radius"]
        assert medians[prefix] == pytest.approx(np.median(radii[correct]))
    assert 0 < medians["ibp"] < medians["linear"] < 0.3
    assert results["radius_but_attacked"] == {"ibp": 0, "linear": 0}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate", **config}))
    assert main(["plan", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["units"]["certified radius chunks"] == -(-N // CHUNK)
    timed = [a["what"] for a in plan["attacks"] if a["what"].startswith("certified radius")]
    assert len(timed) == 2 and "(linear bounds) up to 0.3" in timed[1]


def test_l2_certificates_and_radii_are_the_librarys_and_below_every_l2_attack(
    user_files, tmp_path, capsys
):
    """``certify_norm: l2`` with interval and linear bounds: each certified accuracy and the
    median radius are those of ``is_certified`` / ``is_certified_linear`` and
    ``certified_radius`` with norm l2 on the user's network, no certified image or radius is
    beaten by the L2 attacks (DeepFool, L2 PGD), the L-inf ids are absent, and the plan times
    the L2 certificate."""
    attacks = [{"name": "deepfool", "params": {"max_iter": 20}},
               {"name": "pgd", "label": "pgd2", "eps": [1.0], "params": {"norm": "l2", "max_iter": 10}}]  # fmt: skip
    config = _config(user_files, attacks=attacks, certify=[0.15, 0.45], certify_radius=1.0,
                     certify_norm="l2", certify_bounds=["interval", "linear"])  # fmt: skip
    results = _run(tmp_path, config)
    got, x, y, net = _by_id(results), user_files["x"], user_files["y"], Model(user_files["net"])
    correct = (net(x).argmax(1) == y).numpy()
    for eps in (0.15, 0.45):
        hits = is_certified_linear(net, x, y, eps, norm="l2").numpy()
        assert got[f"linear.l2.eps{eps:g}.certified_accuracy"] == pytest.approx(100 * hits.mean())
        hits = is_certified(net, x, y, eps, norm="l2").numpy()
        assert got[f"ibp.l2.eps{eps:g}.certified_accuracy"] == pytest.approx(100 * hits.mean())
    assert (
        0
        < got["linear.l2.eps0.45.certified_accuracy"]
        < got["linear.l2.eps0.15.certified_accuracy"]
    )
    assert 0 < got["ibp.l2.eps0.15.certified_accuracy"]
    for method, prefix in (("linear", "linear"), ("interval", "ibp")):
        radii = certified_radius(net, x, y, 1.0, method, norm="l2")
        assert got[f"{prefix}.l2.median_certified_radius"] == pytest.approx(
            np.median(radii[correct])
        )
    assert results["radius_but_attacked"] == {"ibp": 0, "linear": 0}
    assert results["certified_but_attacked"] == {
        "eps0.15": 0, "eps0.45": 0, "linear.eps0.15": 0, "linear.eps0.45": 0,
    }  # fmt: skip
    assert not any(".linf." in key for key in got)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate", **config}))
    assert main(["plan", str(path), "--json"]) == 0
    timed = [a["what"] for a in json.loads(capsys.readouterr().out)["attacks"]]
    assert any(w.startswith("linear certificate at eps 0.45") for w in timed)


def test_randomized_smoothing_is_the_librarys_whatever_the_chunks(user_files, tmp_path, capsys):
    """``smoothing``: the smoothed classifier's figures equal ``RandomizedSmoothing.certify`` on
    the whole data set (noise seeded by each image's index and the config's seed), chunks of 5
    give the same as chunks of 24, the report names it as the smoothed classifier's, and the
    plan times it."""
    smoothing = {"sigma": 0.1, "radii": [0.05, 0.15], "n0": 20, "n": 300}
    config = _config(user_files, smoothing=smoothing, seed=3)
    results = _run(tmp_path / "a", config)
    got, x, y = _by_id(results), user_files["x"], user_files["y"].numpy()
    direct = RandomizedSmoothing(Model(user_files["net"]), 0.1, 20, 300, random_state=3).certify(x)
    right = direct.labels == y
    assert got["smoothing.clean_accuracy"] == pytest.approx(100 * right.mean())
    assert got["smoothing.abstained"] == pytest.approx(100 * (direct.labels < 0).mean())
    for r in (0.05, 0.15):
        assert got[f"smoothing.l2.eps{r:g}.certified_accuracy"] == pytest.approx(
            100 * direct.certified_accuracy(y, r)
        )
    assert got["smoothing.l2.median_certified_radius"] == pytest.approx(
        np.median(direct.radii[right])
    )
    assert 0 < got["smoothing.l2.eps0.05.certified_accuracy"] < 100
    chunked = _by_id(_run(tmp_path / "b", {**config, "chunk_size": 5}))
    assert {k: v for k, v in chunked.items() if k.startswith("smoothing.")} == {
        k: v for k, v in got.items() if k.startswith("smoothing.")
    }
    assert main(["report", str(tmp_path / "a" / "run"), "--markdown"]) == 0
    assert (
        "certified accuracy (%) of the smoothed classifier, not of the model"
        in capsys.readouterr().out
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate", **config}))
    assert main(["plan", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["units"]["randomized smoothing chunks"] == -(-N // CHUNK)
    assert any(a["what"].startswith("randomized smoothing, sigma 0.1") for a in plan["attacks"])


def test_the_quick_profile_trains_a_zoo_model_on_the_digits(tmp_path):
    """The built-in default: an MLP trained here on the 8x8 digits' training split, attacked on
    their test split (no file of the user's, no download)."""
    config = {"data": {"name": "digits", "n": 60}, "model": {"factory": "mlp", "train_epochs": 5},
              "attacks": [{"name": "pgd", "eps": [0.1, 0.3], "params": {"max_iter": 5}}]}  # fmt: skip
    got = _by_id(_run(tmp_path, config))
    assert got["clean.accuracy"] > 70
    assert got["pgd.linf.eps0.3.robust_accuracy"] < got["pgd.linf.eps0.1.robust_accuracy"]


def test_a_zoo_model_trained_against_its_l2_interval_bounds(tmp_path, capsys):
    """``model.train_certified``: the run trains the MLP by ``train_certified_classifier``
    (the same recipe is then in its cache), its L2 interval certificate is ``is_certified`` on
    that network, it certifies far more than the same MLP trained plainly, and the plan times
    the certified training on the model's initial weights."""
    model = {"factory": "mlp", "train_epochs": 10, "train_certified": {"eps": 0.5, "norm": "l2"}}
    config = {"data": {"name": "digits", "n": 60}, "model": model,
              "attacks": [{"name": "pgd", "eps": [0.25], "params": {"norm": "l2", "max_iter": 10}}],
              "certify": [0.25], "certify_norm": "l2"}  # fmt: skip
    got = _by_id(_run(tmp_path / "a", config))
    trained = train_certified_classifier("mlp", load_dataset("digits", "train"), 0.5, 10,
                                         norm="l2", cache=Cache(tmp_path / "a" / "cache"))  # fmt: skip
    assert trained.from_cache
    test = load_dataset("digits", "test")
    x, y = torch.from_numpy(test.images[:60]), torch.from_numpy(test.labels[:60])
    hits = is_certified(Model(trained.model), x, y, 0.25, norm="l2").numpy()
    assert got["ibp.l2.eps0.25.certified_accuracy"] == pytest.approx(100 * hits.mean())
    plain = _by_id(
        _run(tmp_path / "b", {**config, "model": {"factory": "mlp", "train_epochs": 10}})
    )
    assert (
        got["ibp.l2.eps0.25.certified_accuracy"] > plain["ibp.l2.eps0.25.certified_accuracy"] + 30
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate", **config}))
    assert main(["plan", str(path), "--json"]) == 0
    lines = {a["what"]: a for a in json.loads(capsys.readouterr().out)["attacks"]}
    (line,) = [w for w in lines if w.startswith("training mlp (10 epochs against its interval "
                                                 "bounds, L2 eps 0.5; timed on 2 epochs of ")]  # fmt: skip
    assert lines[line]["image_steps"] == 10 * len(load_dataset("digits", "train"))
    assert lines[line]["image_steps_per_second"] > 0


def _bad(files: dict[str, Path], tmp: Path, what: str) -> dict:
    """A config with one mistake."""
    root = files["root"]
    if what == "missing array":
        np.savez(root / "nolabels.npz", x=files["x"].numpy())
        return _config(files, data={"path": str(root / "nolabels.npz")})
    if what == "out of bounds":
        np.savez(root / "big.npz", x=files["x"].numpy() * 255, y=files["y"].numpy())
        return _config(files, data={"path": str(root / "big.npz")})
    if what == "labels beyond outputs":
        np.savez(root / "nine.npz", x=files["x"].numpy(), y=np.full(N, 9))
        return _config(files, data={"path": str(root / "nine.npz")})
    if what == "weights of another model":
        save_file(build(width=4).state_dict(), str(tmp / "small.safetensors"))
        return _config(files, model={"factory": "tests.test_evaluate:build",
                                     "weights": str(tmp / "small.safetensors")})  # fmt: skip
    if what == "pickled module":
        torch.save(build(), tmp / "module.pt")
        return _config(files, model={"factory": "tests.test_evaluate:build",
                                     "weights": str(tmp / "module.pt")})  # fmt: skip
    if what == "unknown factory":
        return _config(files, model={"factory": "tests.nowhere:build",
                                     "weights": str(files["weights"])})  # fmt: skip
    if what == "unknown attack parameter":
        return _config(files, attacks=[{"name": "pgd", "eps": [0.1], "params": {"stepz": 3}}])
    if what == "eps on deepfool":
        return _config(files, attacks=[{"name": "deepfool", "eps": [0.1]}])
    if what == "same attack twice":
        return _config(
            files, attacks=[{"name": "fgsm", "eps": [0.1]}, {"name": "fgsm", "eps": [0.2]}]
        )
    if what == "grid of an unmeasured norm":
        return _config(files, attacks=[{"name": "fgsm", "eps": [0.1]}])  # eps_grid has l2
    if what == "training on a file":
        return _config(files, model={"factory": "small_cnn", "train_epochs": 1})
    if what == "preprocessing of a network trained here":
        return _config(files, data={"name": "digits", "n": 20},
                       model={"factory": "mlp", "train_epochs": 1,
                              "preprocessing": {"mean": [0.3], "std": [0.4]}})  # fmt: skip
    if what == "channels last":
        x = files["x"].numpy().transpose(0, 2, 3, 1)  # (N, H, W, C), as many image sets come
        np.savez(root / "nhwc.npz", x=x, y=files["y"].numpy())
        return _config(files, data={"path": str(root / "nhwc.npz")})
    if what == "several outputs":
        return _config(files, model={"factory": "tests.test_evaluate:build_pair",
                                     "weights": str(files["weights"])})  # fmt: skip
    if what == "verify a network with group normalisation":
        return _config(files, model={"factory": "tests.test_evaluate:build_normalised",
                                     "weights": str(files["weights"])}, verify=[0.01])  # fmt: skip
    if what == "certify without an L-inf attack":
        return _config(files, attacks=[{"name": "deepfool"}], certify=[0.01])
    if what == "certify a network that is not its layers":
        return _config(files, model={"factory": "tests.test_evaluate:build_skip",
                                     "weights": str(files["weights"])}, certify=[0.01])  # fmt: skip
    if what == "linear bounds on a network with group normalisation":
        return _config(files, model={"factory": "tests.test_evaluate:build_normalised",
                                     "weights": str(files["weights"])}, certify=[0.01],
                       certify_bounds=["interval", "linear"])  # fmt: skip
    if what == "a certificate named twice":
        return _config(files, certify=[0.01], certify_bounds=["linear", "linear"])
    if what == "radii without an L-inf attack":
        return _config(files, attacks=[{"name": "deepfool"}], certify_radius=0.1)
    if what == "per-feature budgets for torchattacks":
        return _config(files, eps_units="feature_std",
                       attacks=[{"name": "torchattacks:PGD", "eps": [0.1]}])  # fmt: skip
    if what == "training noise for given weights":
        return _config(files, model={"factory": "tests.test_evaluate:build",
                                     "weights": str(files["weights"]), "train_noise": 0.1})  # fmt: skip
    if what == "certified training for given weights":
        return _config(files, model={"factory": "tests.test_evaluate:build",
                                     "weights": str(files["weights"]),
                                     "train_certified": {"eps": 0.1}})  # fmt: skip
    if what == "certified training with noise":
        return _config(files, model={"factory": "mlp", "train_epochs": 1, "train_noise": 0.1,
                                     "train_certified": {"eps": 0.1}})  # fmt: skip
    if what == "certified training at eps 0":
        return _config(files, model={"factory": "mlp", "train_epochs": 1,
                                     "train_certified": {"eps": 0.0}})  # fmt: skip
    if what == "smoothing without radii":
        return _config(files, smoothing={"sigma": 0.1})
    if what == "smoothing with sigma 0":
        return _config(files, smoothing={"sigma": 0.0, "radii": [0.1]})
    if what == "L2 certificates with verify":
        return _config(files, certify=[0.1], verify=[0.1], certify_norm="l2",
                       attacks=[{"name": "pgd", "eps": [0.1], "params": {"norm": "l2"}}])  # fmt: skip
    if what == "L2 certificates without an L2 attack":
        return _config(files, attacks=[{"name": "fgsm", "eps": [0.1]}], eps_grid={},
                       certify=[0.1], certify_norm="l2", certify_bounds=["linear"])  # fmt: skip
    if what == "units in an attack's params":
        return _config(files, eps_units="feature_std",
                       attacks=[{"name": "pgd", "eps": [0.1], "params": {"units": [1.0]}}])  # fmt: skip
    raise AssertionError(what)


MISTAKES = {
    "missing array": "has no array ['y']",
    "out of bounds": "outside model.bounds [0, 1]",
    "labels beyond outputs": "labels go up to 9 but the model has 5 outputs",
    "weights of another model": "do not fit the model",
    "pickled module": "weights_only=True",
    "unknown factory": "cannot be imported here",
    "unknown attack parameter": "attack 'pgd'",
    "eps on deepfool": "drop eps",
    "same attack twice": "appear twice",
    "training on a file": "for an .npz file give model.weights",
    "preprocessing of a network trained here": "takes its normalisation as kwargs {mean, std}",
    "grid of an unmeasured norm": "eps_grid has ['l2'], a norm no attack measures",
    "several outputs": "must return one tensor of logits, got tuple",
    "channels last": "channels last? store x as (N, C, H, W)",
    "certify without an L-inf attack": "add an L-inf attack",
    "verify a network with group normalisation": "unsupported layer GroupNorm",
    "certify a network that is not its layers": "unsupported operation 'flip'",
    "linear bounds on a network with group normalisation": "unsupported layer GroupNorm",
    "a certificate named twice": "certify_bounds must name each of its methods once",
    "radii without an L-inf attack": "certify_radius gives a lower bound on L-inf robust",
    "per-feature budgets for torchattacks": "torchattacks:PGD does not take",
    "units in an attack's params": "params ['units'] are set by evaluate",
    "L2 certificates with verify": "verify's programs are L-inf ones",
    "smoothing without radii": "smoothing.radii",
    "training noise for given weights": "train_noise is noise in the training run",
    "certified training for given weights": "train_certified is the training run of train_epochs",
    "certified training with noise": "give one of them",
    "certified training at eps 0": "train_certified.eps",
    "smoothing with sigma 0": "smoothing.sigma",
    "L2 certificates without an L2 attack": "certify gives a lower bound on L2 robust accuracy",
}


@pytest.mark.parametrize("what", MISTAKES)
def test_a_mistake_is_one_line_before_any_attack(user_files, tmp_path, capsys, what):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate", **_bad(user_files, tmp_path, what)}))
    code = main(["run", str(path), "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and MISTAKES[what] in err, err
    errors = [line for line in err.splitlines() if line.startswith("advlab: error:")]
    assert "Traceback" not in err and len(errors) == 1  # (a config key's error lists the keys)
    assert not (tmp_path / "run" / "units").exists() or not any(
        (tmp_path / "run" / "units").iterdir()
    )


@pytest.mark.parametrize(
    "what", ["missing array", "unknown factory", "verify a network with group normalisation"]
)
def test_a_mistake_the_plan_meets_is_one_line_too(user_files, tmp_path, capsys, what):
    """``advlab plan`` reads the data, builds the factory's network and (with the weights and
    verify) runs the certificates: a mistake there is the run's one line, not a traceback."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate", **_bad(user_files, tmp_path, what)}))
    code = main(["plan", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and MISTAKES[what] in err and "Traceback" not in err, err


def test_a_run_refuses_to_resume_on_changed_weights(user_files, tmp_path):
    """Units computed on one weights file are never mixed with another: the same config over
    a changed file is refused, naming what changed; results.json records both checksums."""
    files = {**user_files, "weights": tmp_path / "w.safetensors"}
    save_file(user_files["net"].state_dict(), str(files["weights"]))
    config = _config(files, attacks=[{"name": "fgsm", "eps": [0.3]}], eps_grid={})
    results = _run(tmp_path, config)
    assert len(results["weights_sha256"]) == 64 and len(results["data_sha256"]) == 64
    torch.manual_seed(1)
    save_file(build().state_dict(), str(files["weights"]))
    with pytest.raises(ConfigError, match="the weights changed since this run directory"):
        _run(tmp_path, config)


def test_plan_counts_the_users_model_passes(user_files, tmp_path, capsys):
    """advlab plan on a config of the user's model: units per chunk, attack and budget, and
    image-steps per attack (FGSM 1, PGD its 5 iterations, DeepFool its 20, per budget and
    image), each rate measured on the user's network."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"experiment": "evaluate", **_config(user_files)}))
    assert main(["plan", str(path), "--workers", "1", "2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["units"] == {"clean chunks": 3, "fgsm (budgets x chunks)": 6,
                             "pgd (budgets x chunks)": 6, "deepfool (chunks)": 3}  # fmt: skip
    steps = {a["what"]: a["image_steps"] for a in plan["attacks"]}
    assert steps == {"fgsm at 2 budgets": 2 * N, "pgd at 2 budgets": 2 * N * 5, "deepfool": N * 20}
    assert all(a["image_steps_per_second"] > 0 for a in plan["attacks"])


def test_plan_times_the_certificates_on_the_users_weights(user_files, tmp_path, capsys):
    """With the weights given, the plan times the linear certificate on every input and
    verify's programs on the inputs the run would give one: the 20 of 24 the model classifies
    correctly at 0.06 (no attack budget or certificate reaches it), none at 0.02 (every correct
    input is certified there); a model trained in the run is not timed, and the plan says so."""
    path = tmp_path / "config.yaml"
    config = _config(user_files, certify=[0.02], certify_bounds=["interval", "linear"],
                     verify=[0.02, 0.06])  # fmt: skip
    path.write_text(yaml.safe_dump({"experiment": "evaluate", **config}))
    assert main(["plan", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    lines = {a["what"]: a for a in plan["attacks"]}
    assert lines["linear certificate at eps 0.02 (timed on 24 inputs)"]["image_steps"] == N
    verify = lines["verify at eps 0.06 (programs for 20 of 24 sampled inputs, 20 timed)"]
    assert verify["image_steps"] == 20 and verify["image_steps_per_second"] > 0
    assert not any(what.startswith("verify at eps 0.02") for what in lines)
    assert any(
        "verify at eps 0.02: the attacks and certificates decided" in n for n in plan["notes"]
    )
    assert main(["plan", "evaluate", "--profile", "quick", "--json"]) == 0
    quick = json.loads(capsys.readouterr().out)
    assert not any(a["what"].startswith(("verify", "linear")) for a in quick["attacks"])
    assert any("give model.weights to have them timed" in n for n in quick["notes"])


def tabular(width: int = 8) -> nn.Module:
    """A user's network on 6 features (``tests.test_evaluate:tabular``)."""
    return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3))


def tabular_double() -> nn.Module:
    """A user's float64 network on 6 features (``tests.test_evaluate:tabular_double``)."""
    return tabular().double()


def tabular_bfloat16() -> nn.Module:
    """A user's bfloat16 network on 6 features (``tests.test_evaluate:tabular_bfloat16``)."""
    return tabular().to(torch.bfloat16)


@pytest.mark.parametrize("factory", ["tabular_double", "tabular_bfloat16"])
def test_a_double_or_bfloat16_network_is_attacked_certified_and_verified(tmp_path, factory):
    """A factory returning a ``.double()`` or bfloat16 network, its weights in that dtype and
    float32 rows: the run attacks, certifies and verifies it (the double one stopped at the
    model check with 'mat1 and mat2 must have the same dtype', the bfloat16 one at the weights'
    fingerprint with 'Got unsupported ScalarType BFloat16'); certificates <= exact
    verification <= PGD."""
    torch.manual_seed(0)
    net = globals()[factory]().eval()
    dtype = next(net.parameters()).dtype
    x = 2 * torch.randn(24, 6, dtype=dtype)
    with torch.no_grad():
        np.savez(tmp_path / "rows.npz", x=x.float().numpy(), y=net(x).argmax(1).numpy())
    save_file(net.state_dict(), str(tmp_path / "tab.safetensors"))
    config = {
        "experiment": "evaluate",
        "data": {"path": str(tmp_path / "rows.npz")},
        "model": {"factory": f"tests.test_evaluate:{factory}",
                  "weights": str(tmp_path / "tab.safetensors"), "bounds": [None, None]},
        "attacks": [{"name": "pgd", "eps": [0.3], "params": {"max_iter": 10}}],
        "certify": [0.3], "certify_bounds": ["interval", "linear"], "verify": [0.3],
    }  # fmt: skip
    path, out = tmp_path / "config.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--out", str(out), "--cache", str(tmp_path / "c")]) == 0
    got = {
        c["id"]: c["ours"] for c in json.loads((out / "results.json").read_text())["comparisons"]
    }
    ibp, linear = (
        got["ibp.linf.eps0.3.certified_accuracy"],
        got["linear.linf.eps0.3.certified_accuracy"],
    )
    exact, pgd = got["milp.linf.eps0.3.robust_accuracy"], got["pgd.linf.eps0.3.robust_accuracy"]
    assert ibp <= linear <= exact <= pgd and pgd < 100.0 and linear > 0.0


def _rows_in_their_own_units(tmp_path: Path) -> tuple[Model, torch.Tensor, torch.Tensor, dict]:
    """60 rows whose 6 features have units from 0.01 to 1000, the user's network that
    standardises them in its preprocessing (unbounded), its own labels, and the config's data
    and model blocks (files in ``tmp_path``)."""
    units = np.array([1.0, 10.0, 100.0, 1000.0, 0.1, 0.01])
    torch.manual_seed(0)
    net = tabular().eval()
    x = (torch.randn(60, 6) * torch.from_numpy(units)).float()
    pre = {"mean": [0.0] * 6, "std": units.tolist(), "axis": -1}
    model = Model(net, (-np.inf, np.inf), pre)
    with torch.no_grad():
        y = model(x).argmax(1)
    np.savez(tmp_path / "rows.npz", x=x.numpy(), y=y.numpy())
    save_file(net.state_dict(), str(tmp_path / "tab.safetensors"))
    files = {"data": {"path": str(tmp_path / "rows.npz")},
             "model": {"factory": "tests.test_evaluate:tabular", "preprocessing": pre,
                       "weights": str(tmp_path / "tab.safetensors"), "bounds": [None, None]}}  # fmt: skip
    return model, x, y, files


def test_budgets_in_each_features_std_on_rows_in_their_own_units(tmp_path, capsys):
    """Rows whose 6 features have units from 0.01 to 1000 (the network standardises them in its
    preprocessing) with ``eps_units: feature_std``: PGD and FGSM attack the box eps * std_d
    (std over the attacked rows), L2 PGD the ellipsoid ||delta / std||_2 <= eps, DeepFool's
    distances are its perturbations' std-weighted L2 norms, the certificates and programs bound
    that box, and every figure equals the functions called directly; interval <= linear <=
    exact <= PGD, and the report names the units. With the same eps in the inputs' units, the
    features of unit 0.01 may move by 50 of their std and PGD breaks more."""
    model, x, y, files = _rows_in_their_own_units(tmp_path)
    config = {**files,
              "attacks": [{"name": "pgd", "eps": [0.2, 0.5], "params": {"max_iter": 10}},
                          {"name": "fgsm", "eps": [0.5]}, {"name": "deepfool"},
                          {"name": "pgd", "label": "pgd2", "eps": [1.0],
                           "params": {"max_iter": 10, "norm": "l2"}}],
              "eps_units": "feature_std", "certify": [0.2], "verify": [0.2],
              "certify_bounds": ["interval", "linear"], "chunk_size": 20}  # fmt: skip
    results = _run(tmp_path / "a", config)
    got = _by_id(results)
    std = x.numpy().astype(np.float64).std(0)
    for eps in (0.2, 0.5):
        box = torch.from_numpy(eps * std)
        broken = np.concatenate([PGD(model, eps=box, max_iter=10, random_state=s,
                                     batch_size=64)(x[s : s + 20], y[s : s + 20]).success.numpy()
                                 for s in range(0, 60, 20)])  # fmt: skip
        assert got[f"pgd.linf.eps{eps:g}.robust_accuracy"] == pytest.approx(100 * (~broken).mean())
    ellipsoid = np.concatenate([PGD(model, eps=1.0, max_iter=10, norm="l2", units=std,
                                    random_state=s, batch_size=64)(x[s : s + 20], y[s : s + 20])
                                .success.numpy() for s in range(0, 60, 20)])  # fmt: skip
    assert got["pgd2.l2.eps1.robust_accuracy"] == pytest.approx(100 * (~ellipsoid).mean())
    assert 0 < ellipsoid.mean() < 1
    fgsm = FGSM(model, eps=torch.from_numpy(0.5 * std))(x, y).success.numpy()
    assert got["fgsm.linf.eps0.5.robust_accuracy"] == pytest.approx(100 * (~fgsm).mean())
    fool = DeepFool(model)(x, y)
    weighted = ((fool.x_adv - x).double() / torch.from_numpy(std)).norm(dim=1).numpy()
    found = fool.success.numpy()
    assert got["deepfool.l2.median_distance"] == pytest.approx(np.median(weighted[found]))
    ibp = is_certified(model, x, y, torch.from_numpy(0.2 * std)).numpy()
    linear = is_certified_linear(model, x, y, torch.from_numpy(0.2 * std)).numpy()
    assert got["ibp.linf.eps0.2.certified_accuracy"] == pytest.approx(100 * ibp.mean())
    assert got["linear.linf.eps0.2.certified_accuracy"] == pytest.approx(100 * linear.mean())
    ordered = [got["ibp.linf.eps0.2.certified_accuracy"], got["linear.linf.eps0.2.certified_accuracy"],
               got["milp.linf.eps0.2.robust_accuracy"], got["pgd.linf.eps0.2.robust_accuracy"]]  # fmt: skip
    assert ordered == sorted(ordered) and 0 < ordered[0] and ordered[-1] < 100
    assert got["milp.linf.eps0.2.unknown"] == 0.0
    assert results["eps_units"] == "feature_std"
    assert main(["report", str(tmp_path / "a" / "run"), "--markdown"]) == 0
    assert "eps in multiples of each feature's std)" in capsys.readouterr().out
    plain = _by_id(_run(tmp_path / "b", {**config, "eps_units": "input", "certify": [],
                                         "verify": []}))  # fmt: skip
    assert plain["pgd.linf.eps0.5.robust_accuracy"] < got["pgd.linf.eps0.5.robust_accuracy"]


def test_l2_certificates_and_smoothing_in_each_features_std(tmp_path):
    """``certify_norm: l2`` and ``smoothing`` with ``eps_units: feature_std`` on rows whose
    features have units from 0.01 to 1000: the certificate is the ellipsoid
    ||delta / std||_2 <= eps of ``is_certified_linear(..., units=std)`` and of
    ``is_certified(..., units=std)``, the smoothing noise is std * N(0, sigma^2), and all equal
    the library called directly."""
    model, x, y, files = _rows_in_their_own_units(tmp_path)
    config = {**files,
              "attacks": [{"name": "deepfool"}], "eps_units": "feature_std",
              "certify": [0.2, 0.5], "certify_norm": "l2", "certify_bounds": ["linear", "interval"],
              "smoothing": {"sigma": 0.25, "radii": [0.2], "n0": 20, "n": 300},
              "chunk_size": 20}  # fmt: skip
    got = _by_id(_run(tmp_path / "a", config))
    std = x.numpy().astype(np.float64).std(0)
    for eps in (0.2, 0.5):
        hits = is_certified_linear(model, x, y, eps, norm="l2", units=std).numpy()
        assert got[f"linear.l2.eps{eps:g}.certified_accuracy"] == pytest.approx(100 * hits.mean())
        hits = is_certified(model, x, y, eps, norm="l2", units=std).numpy()
        assert got[f"ibp.l2.eps{eps:g}.certified_accuracy"] == pytest.approx(100 * hits.mean())
    assert (
        0
        < got["linear.l2.eps0.5.certified_accuracy"]
        < got["linear.l2.eps0.2.certified_accuracy"]
        < 100
    )
    smoothed = RandomizedSmoothing(model, 0.25, 20, 300, units=std).certify(x)
    assert got["smoothing.l2.eps0.2.certified_accuracy"] == pytest.approx(
        100 * smoothed.certified_accuracy(y.numpy(), 0.2)
    )


def test_rows_of_a_csv_file_give_the_npz_results(tmp_path, capsys):
    """Tabular rows as a .csv file with a header line (label column 'target'): the .npz run's
    comparisons; class names in the label column are refused (a classifier's classes are its
    outputs' order, which names do not give)."""
    torch.manual_seed(0)
    net = tabular().eval()
    x = (2 * torch.randn(30, 6)).numpy()
    with torch.no_grad():
        y = net(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(tmp_path / "rows.npz", x=x, y=y)
    lines = ["a,b,c,target,d,e,f"] + [
        ",".join([*(repr(float(v)) for v in row[:3]), str(t), *(repr(float(v)) for v in row[3:])])
        for row, t in zip(x, y, strict=True)
    ]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    save_file(net.state_dict(), str(tmp_path / "tab.safetensors"))
    model = {"factory": "tests.test_evaluate:tabular", "weights": str(tmp_path / "tab.safetensors"),
             "bounds": [None, None]}  # fmt: skip
    attacks = [{"name": "pgd", "eps": [0.5], "params": {"max_iter": 10}}]
    results = {}
    for name, data in (("npz", {"path": str(tmp_path / "rows.npz")}),
                       ("csv", {"path": str(tmp_path / "rows.csv"), "y_key": "target"})):  # fmt: skip
        config = {"experiment": "evaluate", "data": data, "model": model, "attacks": attacks}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
        out = tmp_path / f"run-{name}"
        assert main(["run", str(tmp_path / f"{name}.yaml"), "--out", str(out)]) == 0
        comparisons = json.loads((out / "results.json").read_text())["comparisons"]
        results[name] = {c["id"]: c["ours"] for c in comparisons}
    assert (
        results["csv"] == results["npz"] and 0 < results["csv"]["pgd.linf.eps0.5.robust_accuracy"]
    )
    named = [",".join([*lines[0].split(",")[:3], "target", "d", "e", "f"])] + [
        line.replace(f",{t},", f",class{t},", 1) for line, t in zip(lines[1:], y, strict=True)
    ]
    (tmp_path / "rows.csv").write_text("\n".join(named) + "\n")
    capsys.readouterr()
    assert main(["run", str(tmp_path / "csv.yaml"), "--out", str(tmp_path / "named")]) == 2
    assert "must hold integer class labels" in capsys.readouterr().err


def test_null_bounds_are_open_sides():
    """YAML's null (what config.json writes for an infinite bound) leaves a side open, in
    evaluate's model and evaluate-kmeans' inputs; a word is still refused."""
    from advlab.experiments.builtin.evaluate import ModelSpec
    from advlab.experiments.builtin.evaluate_kmeans import EvaluateKMeansConfig

    spec = {"factory": "tests.test_evaluate:tabular", "weights": "w.safetensors"}
    assert ModelSpec.model_validate({**spec, "bounds": [None, None]}).bounds == (-np.inf, np.inf)
    assert ModelSpec.model_validate({**spec, "bounds": [0, None]}).bounds == (0.0, np.inf)
    with pytest.raises(ValueError, match="bounds"):
        ModelSpec.model_validate({**spec, "bounds": ["low", 1]})
    kmeans = EvaluateKMeansConfig.model_validate(
        {"train": {"name": "digits"}, "test": {"name": "digits"}, "n_clusters": 5, "eps": [0.1],
         "bounds": [None, None]}
    )  # fmt: skip
    assert kmeans.bounds == (-np.inf, np.inf)


def test_unbounded_features_resume_and_a_corrected_config_reuses_the_folder(tmp_path, capsys):
    """Tabular rows with infinite bounds (null in config.json): L-BFGS succeeds on them, a rerun
    resumes with nothing recomputed; a config refused before any unit leaves the folder free for
    the corrected config."""
    torch.manual_seed(0)
    net = tabular().eval()
    x = 2 * torch.randn(30, 6)
    with torch.no_grad():
        np.savez(tmp_path / "rows.npz", x=x.numpy(), y=net(x).argmax(1).numpy())
    save_file(net.state_dict(), str(tmp_path / "tab.safetensors"))
    model = {
        "factory": "tests.test_evaluate:tabular",
        "weights": str(tmp_path / "tab.safetensors"),
        "bounds": [-float("inf"), float("inf")],
    }
    config = {
        "data": {"path": str(tmp_path / "rows.npz")},
        "model": model,
        "attacks": [{"name": "lbfgs", "params": {"doublings": 2, "bisections": 2}}],
    }
    path, out = tmp_path / "config.yaml", tmp_path / "run"
    bad = {**config, "attacks": [{"name": "cw", "params": {"steps": 0}}]}  # refused at the check
    path.write_text(yaml.safe_dump({"experiment": "evaluate", **bad}))
    assert main(["run", str(path), "--out", str(out), "--cache", str(tmp_path / "c")]) == 2
    assert "steps must be >= 1" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({"experiment": "evaluate", **config}))
    for _ in range(2):
        assert main(["run", str(path), "--out", str(out), "--cache", str(tmp_path / "c")]) == 0
    got = {
        c["id"]: c["ours"] for c in json.loads((out / "results.json").read_text())["comparisons"]
    }
    assert got["lbfgs.l2.success_rate"] == 100.0
    assert json.loads((out / "manifest.json").read_text())["units_computed"] == 0  # resumed


def test_torchattacks_classes_join_the_worst_case(user_files, tmp_path, capsys):
    """torchattacks:BIM at advlab BIM's settings gives its robust accuracies; torchattacks:APGD
    runs beside them in the worst case; on the same network read on [0, 255] (data and eps
    times 255) torchattacks:BIM gives the same robust accuracies; a model with open bounds is
    refused."""
    pytest.importorskip("torchattacks")
    attacks = [
        {"name": "bim", "eps": [0.3, 0.4], "params": {"max_iter": 5, "eps_step": 0.1}},
        {"name": "torchattacks:BIM", "eps": [0.3, 0.4], "params": {"alpha": 0.1, "steps": 5}},
        {"name": "torchattacks:APGD", "eps": [0.3], "params": {"steps": 5}},
    ]
    got = _by_id(_run(tmp_path, _config(user_files, attacks=attacks, eps_grid={})))
    for eps in (0.3, 0.4):
        ours = got[f"bim.linf.eps{eps:g}.robust_accuracy"]
        assert got[f"torchattacks-BIM.linf.eps{eps:g}.robust_accuracy"] == pytest.approx(ours)
    apgd = got["torchattacks-APGD.linf.eps0.3.robust_accuracy"]
    assert got["worst_case.linf.eps0.3.robust_accuracy"] <= min(
        apgd, got["bim.linf.eps0.3.robust_accuracy"]
    )
    np.savez(tmp_path / "bytes.npz", x=255 * user_files["x"].numpy(), y=user_files["y"].numpy())
    model = {"factory": "tests.test_evaluate:build", "weights": str(user_files["weights"]),
             "bounds": [0, 255], "preprocessing": {"mean": 0.0, "std": 255.0}}  # fmt: skip
    scaled = [{"name": "torchattacks:BIM", "eps": [76.5, 102.0],
               "params": {"alpha": 25.5, "steps": 5}}]  # fmt: skip
    read = _by_id(_run(tmp_path / "bytes", _config(user_files, model=model, attacks=scaled, eps_grid={},
                                                  data={"path": str(tmp_path / "bytes.npz")})))  # fmt: skip
    for eps, wide in ((0.3, 76.5), (0.4, 102.0)):
        assert read[f"torchattacks-BIM.linf.eps{wide:g}.robust_accuracy"] == pytest.approx(
            got[f"torchattacks-BIM.linf.eps{eps:g}.robust_accuracy"]
        )
    path = tmp_path / "config.yaml"
    model = {"factory": "tests.test_evaluate:build", "weights": str(user_files["weights"]),
             "bounds": [None, None]}  # fmt: skip
    path.write_text(yaml.safe_dump({"experiment": "evaluate",
                                    **_config(user_files, model=model, attacks=attacks[1:2], eps_grid={})}))  # fmt: skip
    assert (
        main(["run", str(path), "--out", str(tmp_path / "r2"), "--cache", str(tmp_path / "c")]) == 2
    )
    assert "torchattacks needs a finite box" in capsys.readouterr().err


def test_per_feature_model_bounds_on_rows_in_their_own_units(tmp_path, capsys):
    """``model.bounds`` per feature on the 6-feature rows of units 0.01 to 1000: written out
    as lists (a lower bound of 0 for the two features the rows hold as non-negative, others
    open) and as ``feature_range`` (each feature's range over the rows); PGD, FGSM, the
    interval and linear certificates and the programs equal the functions called with a
    ``Model`` on that box, and every attacked row stays in it; with ``feature_range`` the box
    binds (PGD breaks fewer rows than with open bounds)."""
    units = np.array([1.0, 10.0, 100.0, 1000.0, 0.1, 0.01])
    torch.manual_seed(0)
    net = tabular().eval()
    x = (torch.randn(60, 6) * torch.from_numpy(units)).float()
    x[:, :2] = x[:, :2].abs()
    pre = {"mean": [0.0] * 6, "std": units.tolist(), "axis": -1}
    with torch.no_grad():
        y = Model(net, (-np.inf, np.inf), pre)(x).argmax(1)
    np.savez(tmp_path / "rows.npz", x=x.numpy(), y=y.numpy())
    save_file(net.state_dict(), str(tmp_path / "tab.safetensors"))
    config = {"data": {"path": str(tmp_path / "rows.npz")},
              "model": {"factory": "tests.test_evaluate:tabular", "preprocessing": pre,
                        "weights": str(tmp_path / "tab.safetensors")},
              "attacks": [{"name": "pgd", "eps": [0.5], "params": {"max_iter": 10}},
                          {"name": "fgsm", "eps": [0.5]}],
              "eps_units": "feature_std", "certify": [0.2], "verify": [0.2],
              "certify_bounds": ["interval", "linear"], "chunk_size": 20}  # fmt: skip
    std = x.numpy().astype(np.float64).std(0)
    lists = [[0, 0, None, None, None, None], [None] * 6]
    observed = (
        torch.from_numpy(x.numpy().min(0)).double(),
        torch.from_numpy(x.numpy().max(0)).double(),
    )
    inf = torch.full((6,), np.inf, dtype=torch.float64)
    for name, bounds, box in (("lists", lists, (torch.tensor([0, 0, -np.inf, -np.inf, -np.inf, -np.inf], dtype=torch.float64), inf)),
                              ("range", "feature_range", observed)):  # fmt: skip
        results = _run(tmp_path / name, {**config, "model": {**config["model"], "bounds": bounds}})
        got = _by_id(results)
        assert results["bounds"] == {"lists": "per_feature", "range": "feature_range"}[name]
        assert main(["report", str(tmp_path / name / "run"), "--markdown"]) == 0
        words = {"lists": "inputs kept in per-feature bounds",
                 "range": "inputs kept in each feature's range over the data"}[name]  # fmt: skip
        assert f"; {words})" in capsys.readouterr().out
        model = Model(net, box, pre)
        budget = torch.from_numpy(0.5 * std)
        pgd = [PGD(model, eps=budget, max_iter=10, random_state=s, batch_size=64)(x[s : s + 20], y[s : s + 20])
               for s in range(0, 60, 20)]  # fmt: skip
        broken = np.concatenate([r.success.numpy() for r in pgd])
        for r in pgd:
            assert bool(((r.x_adv.double() >= box[0]) & (r.x_adv.double() <= box[1])).all())
        assert got["pgd.linf.eps0.5.robust_accuracy"] == pytest.approx(100 * (~broken).mean())
        fgsm = FGSM(model, eps=budget)(x, y).success.numpy()
        assert got["fgsm.linf.eps0.5.robust_accuracy"] == pytest.approx(100 * (~fgsm).mean())
        small = torch.from_numpy(0.2 * std)
        ibp, linear = is_certified(model, x, y, small), is_certified_linear(model, x, y, small)
        assert got["ibp.linf.eps0.2.certified_accuracy"] == pytest.approx(100 * ibp.float().mean())
        assert got["linear.linf.eps0.2.certified_accuracy"] == pytest.approx(
            100 * linear.float().mean()
        )
        exact = verify_linf(model, x, y, small).status == 1
        assert got["milp.linf.eps0.2.robust_accuracy"] == pytest.approx(100 * exact.mean())
        if name == "range":
            free = PGD(Model(net, (-np.inf, np.inf), pre), eps=budget, max_iter=10, random_state=0,
                       batch_size=64)  # fmt: skip
            assert int(broken.sum()) < int(free(x, y).success.sum())
