from __future__ import annotations

import json

import pytest

from advlab.experiments import Cache, get_experiment, run_experiment, validate_config
from advlab.experiments.builtin import _shared
from tests.conftest import needs_mnist

TINY = {
    "datasets": ["mnist"], "surrogate": "fc1", "surrogate_epochs": 1, "n_clusters": 20,
    "n_train": 600, "n_test": 200, "repetitions": 2, "beta": 2, "max_iter": 2,
    "fig3_etas": [0.5, 1.0], "whitebox_iter": 3,
}  # fmt: skip


@pytest.fixture
def attack_calls(monkeypatch):
    calls = []
    real = _shared.AdversarialPool._attack

    def counting(self, idx, eps):
        calls.append(len(idx))
        return real(self, idx, eps)

    monkeypatch.setattr(_shared.AdversarialPool, "_attack", counting)
    return calls


def _run(out, cache, **overrides):
    exp = get_experiment("omari2024")
    config = validate_config(exp.config_cls, {**TINY, **overrides})
    return run_experiment(exp, config, out, cache, quiet=True)


@needs_mnist
def test_tiny_reproduction_end_to_end(tmp_path, attack_calls):
    cache = Cache(tmp_path / "cache")
    results = _run(tmp_path / "run", cache, figures=["fig2ef", "fig2ab", "fig3"])
    ids = {c["id"]: c for c in results["comparisons"]}
    for panel in ("fig2a", "fig2e"):
        for key in ("clean.first", "clean.last", "adv.first", "adv.last"):
            assert 0.0 <= ids[f"{panel}.{key}"]["ours"] <= 100.0
    assert ids["fig2a.adv.first"]["paper"] == 43.0 and ids["fig2e.adv.last"]["paper"] == 84.0
    assert (
        ids["fig3.mnist.eta1/2.clean"]["paper"] == 89.9
        and ids["fig3.mnist.eta1.adv"]["paper"] == 73.9
    )
    assert (
        "controls.mnist.trained.adv_clean_mapping" in ids
        and "controls.mnist.plain.certified" in ids
    )
    for name in ("fig2.png", "fig2.svg", "fig3.png", "fig3.svg"):
        assert (tmp_path / "run" / name).stat().st_size > 1000
    # eta = 1 in repetition 0 attacked every training image at every eps: later units reuse them
    n_attacked = sum(attack_calls)
    assert n_attacked == 600 * 2 + 2 * 200  # train pool at 2 eps + test and random-target pools
    summary = results["summary"]["mnist/fig2ab"]
    assert summary["steps"] == [0, 1, 2] and summary["eps"] == [0.0, 0.5, 1.0]

    attack_calls.clear()
    again = _run(tmp_path / "run2", cache, figures=["fig2ef", "fig2ab", "fig3"])
    assert attack_calls == []  # a second run calls the surrogate for nothing: all pools are cached
    assert again["comparisons"] == results["comparisons"]


@needs_mnist
def test_interrupted_repetition_resumes_from_its_last_step(tmp_path, monkeypatch):
    from advlab.defenses import kmeans_adversarial_training as alg

    cache = Cache(tmp_path / "cache")
    reference = _run(tmp_path / "ref", cache, figures=["fig2ab"], repetitions=1)
    real_step = alg.KMeansAdversarialTraining._train_step
    steps_run = []

    def crash_at_step_2(self, step, *args, **kwargs):
        if step == 2 and not steps_run.count("crashed"):
            steps_run.append("crashed")
            raise KeyboardInterrupt
        steps_run.append(step)
        return real_step(self, step, *args, **kwargs)

    monkeypatch.setattr(alg.KMeansAdversarialTraining, "_train_step", crash_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "run", cache, figures=["fig2ab"], repetitions=1)
    resumed = _run(tmp_path / "run", cache, figures=["fig2ab"], repetitions=1)
    assert steps_run == [0, 1, "crashed", 2]  # steps 0 and 1 were not redone
    assert resumed["comparisons"] == reference["comparisons"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["datasets"]["mnist/train"]["n"] == 600
