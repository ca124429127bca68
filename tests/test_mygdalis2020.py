"""The ``mygdalis2020`` reproduction end to end at a tiny scale (Tables 1-2, Fig. 4)."""

from __future__ import annotations

import json

import pytest

from advlab.experiments import Cache, ConfigError, get_experiment, run_experiment, validate_config
from advlab.experiments.planning import make_plan
from tests.conftest import needs_mnist

TINY = {
    "models": ["fc1"], "train_epochs": 1, "n_attack": 4, "chunk_size": 3, "svdd_train": 600,
    "svdd_epochs": 1, "finetune_epochs": 1, "doublings": 2, "bisections": 1, "max_iter": 10,
    "cw_binary_steps": 2, "cw_steps": 20, "n_examples": 2, "ssim_sweep": [0, 10],
    "ssim_sweep_images": 3,
}  # fmt: skip


def _config():
    return validate_config(get_experiment("mygdalis2020").config_cls, TINY)


def _run(out, cache):
    return run_experiment(get_experiment("mygdalis2020"), _config(), out, cache, quiet=True)


@needs_mnist
def test_tiny_reproduction_end_to_end_and_resume(tmp_path):
    cache = Cache(tmp_path / "cache")
    results = _run(tmp_path / "run", cache)
    ids = {c["id"]: c for c in results["comparisons"]}
    assert (
        ids["table1.fc1.W-LC"]["paper"] == 98.64 and ids["table1.fc1.W~-SVDD-Od"]["paper"] == 95.19
    )
    assert ids["table2.fc1.undefended.asr.9-A3"]["paper"] == 100.0
    assert ids["table2.fc1.defended.D.cw.beta0.85"]["paper"] == 96.89
    assert ids["table2.fc1.defended.asr.lbfgs.betaOd"]["paper"] is None
    attacks = ("lbfgs", "deepfool", "cw", "1-A3", "5-A3", "9-A3")
    for attack in attacks:
        for beta in ("1", "0.85", "Od"):
            parts = [
                ids[f"table2.fc1.defended.{m}.{attack}.beta{beta}"]["ours"]
                for m in "asr F D".split()
            ]
            assert sum(parts) == pytest.approx(100.0) and min(parts) >= 0
        assert 0 <= ids[f"table2.fc1.undefended.asr.{attack}"]["ours"] <= 100
        assert ids[f"table2.fc1.undefended.mse.{attack}"]["ours"] >= 0
    # DeepFool always crosses the boundary of a small MLP within 50 steps
    assert ids["table2.fc1.undefended.asr.deepfool"]["ours"] == 100.0
    fc1 = results["fc1"]
    assert fc1["n_undefended"] == 4 and fc1["n_defended"] == 4
    for row in fc1["undefended"].values():
        assert sum(row["rank_pmf"]) == pytest.approx(1.0)
    # the untouched first rank means every successful attack moved y down; the PMF agrees with ASR
    lbfgs = fc1["undefended"]["lbfgs"]
    assert lbfgs["rank_pmf"][0] == pytest.approx(1 - lbfgs["asr"] / 100)
    # the SSIM-weight sweep: one unit per (placement, weight) on the undefended model
    for setting in ("distortion.w0", "distortion.w10", "separate.w0", "separate.w10"):
        sweep = fc1["ssim_sweep"][setting]
        assert sweep["n"] == 3 and 0 <= ids[f"ka3_ssim_weight.fc1.{setting}.asr"]["ours"] <= 100
        assert ids[f"ka3_ssim_weight.fc1.{setting}.ssim"]["ours"] == pytest.approx(
            sweep["ssim"], abs=1e-3
        )
    # weight 0 is the same attack wherever the (absent) term would enter
    assert fc1["ssim_sweep"]["distortion.w0"] == fc1["ssim_sweep"]["separate.w0"]
    run = tmp_path / "run"
    for name in ("fig4.png", "fig4.svg", "examples_fc1.png"):
        assert (run / name).stat().st_size > 1000
    assert (run / "adversarial" / "fc1-undefended-5-A3-000003.safetensors").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    computed = manifest["units_computed"]
    # training + Table 1 + (2 settings x 6 attacks x 2 chunks) + sweep (weight 0 once, weight 10
    # per placement)
    assert computed == 1 + 1 + 2 * 6 * 2 + 3
    # 1-A3 against each baseline on the same images, with a t interval over them
    paired = ids["paired.fc1.undefended.ssim.1-A3_minus_lbfgs"]
    assert paired["n"] == 4 and paired["n_of"] == "images" and paired["ci95"] >= 0
    # advlab plan counts the same units before the run
    plan = make_plan(get_experiment("mygdalis2020"), _config(), throughput=1000.0)
    assert sum(plan["units"].values()) == computed
    # rerunning into the same directory resumes every unit and gives the same results
    again = _run(run, cache)
    assert json.loads((run / "manifest.json").read_text())["units_computed"] == 0
    assert again["comparisons"] == results["comparisons"]


def test_paired_differences_use_the_images_both_attacks_fooled():
    """1-A3 minus a baseline per image (SSIM x 100, MSE x 1e3), over the images both fooled:
    the mean and the 95 % t half-width of those differences."""
    import numpy as np
    import torch
    from scipy import stats

    from advlab.experiments.builtin.mygdalis2020 import _paired_differences

    y = torch.tensor([0, 1, 2, 3, 4])
    ka3 = {"pred": [1, 2, 3, 4, 4], "ssim": [0.9, 0.8, 0.7, 0.6, 0.5],
           "mse": [0.001, 0.002, 0.003, 0.004, 0.005]}  # fmt: skip
    lbfgs = {"pred": [1, 1, 3, 4, 0], "ssim": [0.8, 0.8, 0.6, 0.7, 0.9],
             "mse": [0.002, 0.002, 0.002, 0.002, 0.002]}  # fmt: skip
    out = _paired_differences({"1-A3": ka3, "lbfgs": lbfgs}, y)
    # image 1: L-BFGS failed (pred == y); image 4: 1-A3 failed
    diff = 100 * np.array([0.9 - 0.8, 0.7 - 0.6, 0.6 - 0.7])
    half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
    assert out["lbfgs"]["ssim"] == pytest.approx({"mean": diff.mean(), "ci95": half, "n": 3})
    assert out["lbfgs"]["mse"]["mean"] == pytest.approx(1e3 * np.mean([-0.001, 0.001, 0.002]))
    assert set(out) == {"lbfgs"}  # no DeepFool or C&W in this run
    assert _paired_differences({"lbfgs": lbfgs}, y) == {}


def test_bad_config_is_named():
    exp = get_experiment("mygdalis2020")
    with pytest.raises(ConfigError, match="attacks"):
        validate_config(exp.config_cls, {"attacks": ["fgsm"]})
    with pytest.raises(ConfigError, match="n_attack"):
        validate_config(exp.config_cls, {"n_attack": 0})
    assert validate_config(exp.config_cls, exp.profiles["quick"]).n_attack is not None


def test_paper_profile_fine_tunes_for_the_papers_15_epochs():
    """Sec. 5.2: the network is fine-tuned with the SVDD layer for 15 epochs."""
    exp = get_experiment("mygdalis2020")
    assert validate_config(exp.config_cls, exp.profiles["paper"]).finetune_epochs == 15


@needs_mnist
def test_mnist_pr_is_certified_trained_and_compared_with_its_paper_column(tmp_path):
    """MNIST-PR: wong_small trained by IBP, its certified accuracy in Table 1, the paper's
    MNIST-PR values (MSE printed x 1e2, tuned beta 1.10) beside ours."""
    exp = get_experiment("mygdalis2020")
    tiny = {**TINY, "models": ["wong_small"], "attacks": ["deepfool", "1-A3"], "n_examples": 0,
            "ssim_sweep": [], "pr_train_eps": 0.1, "pr_train_n": 3000, "train_epochs": 6}  # fmt: skip
    results = run_experiment(exp, validate_config(exp.config_cls, tiny), tmp_path / "run",
                             Cache(tmp_path / "cache"), quiet=True)  # fmt: skip
    ids = {c["id"]: c for c in results["comparisons"]}
    assert ids["table1.pr.W-LC"]["paper"] == 87.29 and ids["table1.pr.W~-SVDD-Oc"]["paper"] == 97.61
    assert ids["table2.pr.undefended.mse.deepfool"]["paper"] == pytest.approx(5.6)
    assert ids["table2.pr.defended.asr.1-A3.beta1.1"]["paper"] == 7.35
    assert ids["table2.pr.defended.D.1-A3.beta1"]["paper"] == 83.30
    # six IBP epochs on 3,000 images certify a good share of the test set at eps 0.1, where a
    # plainly trained network certifies next to nothing at this radius (test_interval_bounds)
    certified = ids["table1.pr.W-LC-certified-eps0.1"]["ours"]
    assert 20.0 < certified <= ids["table1.pr.W-LC"]["ours"]


@needs_mnist
def test_a_cuda_runs_deterministic_mode_alerts_nothing_and_changes_nothing_on_cpu(
    tmp_path, monkeypatch
):
    """As for omari2024: the tiny reproduction (M-SVDD-D, every attack, the SSIM sweep) under
    the settings of a CUDA run's units, on CPU, raises no determinism alert and gives the
    default kernels' comparisons."""
    import warnings

    from advlab.experiments import runner

    default = _run(tmp_path / "default", Cache(tmp_path / "c1"))
    monkeypatch.setattr(runner, "computes_on_cuda", lambda config: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pinned = _run(tmp_path / "pinned", Cache(tmp_path / "c2"))
    assert [str(w.message) for w in caught if "determinis" in str(w.message)] == []
    assert pinned["comparisons"] == default["comparisons"]
