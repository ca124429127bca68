from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from advlab.data import load_dataset
from advlab.experiments import Cache, get_experiment, run_experiment, validate_config
from advlab.experiments.builtin import _shared
from advlab.models import build_model
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


def test_pool_chunks_are_cache_entries_filled_in_parallel(tmp_path, attack_calls):
    """One cache entry per chunk of 256 images: three workers filling one pool at once (two of
    them the same chunk) leave exactly its chunks, equal to one process attacking everything;
    reading them back attacks nothing; a request for two images attacks only their chunks."""
    ds = load_dataset("digits", "train").subset(slice(0, 600))  # chunks of 256, 256 and 88
    torch.manual_seed(0)
    model = build_model("mlp", 10, ds.images.shape[1:]).eval()
    spec = _shared.AttackSpec(max_iter=2)

    def pool(root: str) -> _shared.AdversarialPool:
        return _shared.AdversarialPool(Cache(tmp_path / root), model, "mlp", ds, spec)

    whole = pool("alone").get(0.3)
    assert attack_calls == [256, 256, 88] and pool("alone").n_chunks == 3
    workers = [threading.Thread(target=pool("shared").fill, args=(0.3, chunks))
               for chunks in (range(0, 2), range(2, 3), range(2, 3))]  # fmt: skip
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(list((tmp_path / "shared").rglob("*.safetensors"))) == 3
    attack_calls.clear()
    assert np.array_equal(pool("shared").get(0.3), whole) and attack_calls == []
    assert np.array_equal(pool("few").get(0.3, np.array([300, 5])), whole[[300, 5]])
    assert attack_calls == [256, 256]


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
    for model in ("plain", "fig2a", "fig2e", "eta1/2", "eta1"):  # controls at every eta
        for metric in ("adv", "adv_clean_mapping", "adv_random_target", "whitebox", "certified"):
            assert 0.0 <= ids[f"controls.mnist.{model}.{metric}"]["ours"] <= 100.0
    # robustness profiles (repetition 0): plain k-means and every trained model
    robustness = results["robustness"]["mnist"]
    assert set(robustness) == {"plain", "fig2ab", "fig2ef", "fig3-eta1/2", "fig3-eta1"}
    for prof in robustness.values():
        assert prof["n"] == 200 and prof["eps"][0] == 0.0 and len(prof["eps"]) == 9
        curve = prof["curve"]
        assert curve["certified"][0] == curve["exact"][0] == curve["pgd"][0]  # clean accuracy
        # the certificate is a lower bound of robust accuracy, every attack an upper bound
        assert all(c <= e + 1e-9 and c <= p + 1e-9
                   for c, e, p in zip(curve["certified"], curve["exact"], curve["pgd"], strict=True))  # fmt: skip
        assert all(a >= b - 1e-9 for a, b in zip(curve["exact"], curve["exact"][1:], strict=False))
        for norm in ("linf", "l2"):
            assert 0 < prof[norm]["certified_median"] <= prof[norm]["exact_median"]
    assert (
        ids["robustness.mnist.plain.linf.exact_median"]["ours"]
        == robustness["plain"]["linf"]["exact_median"]
    )
    assert "robustness.mnist.fig2ab.linf.pgd.eps0.000" in ids
    for name in ("fig2.png", "fig2.svg", "fig3.png", "fig3.svg", "robustness.png"):
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


DIGITS_TINY = {
    "datasets": ["digits"], "surrogate": "mlp", "surrogate_data": "digits", "surrogate_epochs": 5,
    "n_clusters": 15, "repetitions": 1, "beta": 3, "max_iter": 2, "whitebox_iter": 2,
    "figures": ["fig2ab"],
}  # fmt: skip


@pytest.mark.parametrize("killed_after", [0, 1, 2])
def test_a_unit_killed_after_any_step_resumes_to_the_same_results(
    tmp_path, monkeypatch, killed_after
):
    """Runs without MNIST. Regression: a kill right after step 0's checkpoint used to make the
    resumed history hold step 0 twice, and every rerun failed."""
    from advlab.experiments.runner import RunContext

    cache = Cache(tmp_path / "cache")
    exp = get_experiment("omari2024")
    config = validate_config(exp.config_cls, DIGITS_TINY)
    reference = run_experiment(exp, config, tmp_path / "ref", cache, quiet=True)
    real_save = RunContext.save_checkpoint
    saved_steps = []

    def save_then_die(self, key, arrays, meta):
        real_save(self, key, arrays, meta)
        step = meta["history"][-1]["step"]
        saved_steps.append(step)
        if step == killed_after and saved_steps.count(step) == 1:
            raise KeyboardInterrupt  # the process dies right after this checkpoint

    monkeypatch.setattr(RunContext, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, config, tmp_path / "run", cache, quiet=True)
    resumed = run_experiment(exp, config, tmp_path / "run", cache, quiet=True)
    assert saved_steps == list(range(killed_after + 1)) + list(range(killed_after + 1, 4))
    assert resumed["comparisons"] == reference["comparisons"]
    # byte-identical results
    assert (tmp_path / "run" / "results.json").read_bytes() == (
        tmp_path / "ref" / "results.json"
    ).read_bytes()


@pytest.fixture
def step_0_fits(monkeypatch):
    """The random_state of every step-0 fit (``initial_kmeans``) made while the test runs."""
    from advlab.defenses import KMeansAdversarialTraining

    fits = []
    real_fit = KMeansAdversarialTraining.initial_kmeans

    def counting_fit(self, X):
        fits.append(self.random_state)
        return real_fit(self, X)

    monkeypatch.setattr(KMeansAdversarialTraining, "initial_kmeans", counting_fit)
    return fits


def test_step_0_is_fitted_once_per_repetition_and_changes_no_result(
    tmp_path, monkeypatch, step_0_fits
):
    """Runs without MNIST. Every variant of a repetition starts from the same plain k-means:
    the first unit fits it, the others read it from the cache; results.json is byte-identical
    to a run in which every unit fits its own step 0."""
    fits = step_0_fits
    real_load = Cache.load
    exp = get_experiment("omari2024")
    config = validate_config(exp.config_cls, {**DIGITS_TINY, "repetitions": 2,
                             "figures": ["fig2ab", "fig2cd", "fig3"], "fig3_etas": [0.5, 1.0]})  # fmt: skip
    run_experiment(exp, config, tmp_path / "shared", Cache(tmp_path / "cache"), quiet=True)
    assert sorted(fits) == [0, 1]  # random_state = seed * 1000 + repetition, one fit each
    fits.clear()

    def no_shared_step_0(self, kind, parts, version):
        return None if kind == "omari-plain-step" else real_load(self, kind, parts, version)

    monkeypatch.setattr(Cache, "load", no_shared_step_0)
    run_experiment(exp, config, tmp_path / "alone", Cache(tmp_path / "cache"), quiet=True)
    assert sorted(fits) == [0] * 4 + [1] * 4  # 4 units (fig2ab, fig2cd, 2 x fig3) a repetition
    assert (tmp_path / "shared" / "results.json").read_bytes() == (
        tmp_path / "alone" / "results.json"
    ).read_bytes()


def test_step_0_is_fitted_again_for_other_surrogate_weights(tmp_path, monkeypatch, step_0_fits):
    """Step 0's cached metrics include the adversarial test accuracy, which the surrogate's
    pools decide: a surrogate with other weights under the same config (retrained at another
    thread count, say) must not read the first one's step 0 from a shared cache."""
    from advlab.experiments.builtin import omari2024

    fits = step_0_fits
    real_surrogate = omari2024._surrogate
    exp = get_experiment("omari2024")
    config = validate_config(exp.config_cls, {**DIGITS_TINY, "figures": ["fig2ab"]})
    cache = Cache(tmp_path / "cache")
    run_experiment(exp, config, tmp_path / "first", cache, quiet=True)
    run_experiment(exp, config, tmp_path / "same", cache, quiet=True)
    assert fits == [0]  # the same surrogate: step 0 read from the cache

    def other_weights(config, ctx):
        model, key, acc = real_surrogate(config, ctx)
        return model, key + "-other", acc

    monkeypatch.setattr(omari2024, "_surrogate", other_weights)
    monkeypatch.setattr(omari2024, "_POOLS", {})  # this process's pools and data: rebuilt
    monkeypatch.setattr(omari2024, "_DATA", {})
    run_experiment(exp, config, tmp_path / "other", cache, quiet=True)
    assert fits == [0, 0]


def test_label_free_and_imitation_variants_train_without_class_labels(tmp_path, monkeypatch):
    """Section V's two label-free readings of Algorithm 1 run end to end (digits, no MNIST):
    (x, g(x)) attacks the k-means itself out of its own clusters; (x, f(x)) attacks a substitute
    trained on the cluster ids. Neither training attack may read the class labels."""
    from advlab.defenses import training_attacks

    seen_labels = []
    real_init = training_attacks.KMeansWhiteBoxAttack.__init__

    def spy(self, labels=None, *args, **kwargs):
        seen_labels.append(labels)
        real_init(self, labels, *args, **kwargs)

    monkeypatch.setattr(training_attacks.KMeansWhiteBoxAttack, "__init__", spy)
    cache = Cache(tmp_path / "cache")
    exp = get_experiment("omari2024")
    config = validate_config(exp.config_cls, {**DIGITS_TINY, "repetitions": 2,
                             "figures": ["label_free", "imitation"], "imitation_model": "mlp",
                             "imitation_epochs": 20})  # fmt: skip
    results = run_experiment(exp, config, tmp_path / "run", cache, quiet=True)
    ids = {c["id"]: c for c in results["comparisons"]}
    assert seen_labels == [None, None]  # one label-free attack per repetition, no labels
    for model in ("label_free_training", "imitation_training"):
        for metric in ("clean", "adv", "whitebox", "certified"):
            assert 0.0 <= ids[f"controls.digits.{model}.{metric}"]["ours"] <= 100.0
    # f imitates the clustering: it agrees with g on most training images, far above the
    # 1 / 15 of a guess
    assert ids["imitation.digits.train_agreement"]["ours"] > 60.0
    assert 0.0 <= ids["imitation.digits.test_agreement"]["ours"] <= 100.0
    assert set(results["robustness"]["digits"]) == {"label_free", "imitation"}


def test_imitation_substitute_learns_the_clustering_algorithm_1_starts_from(tmp_path, monkeypatch):
    """(x, f(x)): f is trained on the cluster ids of the very k-means that Algorithm 1 starts
    from (step 0 of its repetition), not on another k-means fitted with another seed."""
    from advlab.defenses import KMeansAdversarialTraining
    from advlab.experiments.builtin import omari2024

    step0_ids, imitated = [], []
    real_initial, real_train = KMeansAdversarialTraining.initial_kmeans, omari2024.train_classifier

    def initial(self, X):
        km = real_initial(self, X)
        step0_ids.append(km.predict(np.asarray(X).reshape(len(X), -1)))
        return km

    def train(model, data, *args, **kwargs):
        imitated.append(np.asarray(data.labels))
        return real_train(model, data, *args, **kwargs)

    monkeypatch.setattr(KMeansAdversarialTraining, "initial_kmeans", initial)
    monkeypatch.setattr(omari2024, "train_classifier", train)
    exp = get_experiment("omari2024")
    config = validate_config(exp.config_cls, {**DIGITS_TINY, "repetitions": 2,
                             "figures": ["imitation"], "imitation_model": "mlp",
                             "imitation_epochs": 5})  # fmt: skip
    run_experiment(exp, config, tmp_path / "run", Cache(tmp_path / "cache"), quiet=True)
    imitated = imitated[-2:]  # the first call trains the surrogate on the class labels
    assert len(step0_ids) == 2 and len(imitated) == 2
    for rep in range(2):
        assert np.array_equal(imitated[rep], step0_ids[rep])
    assert not np.array_equal(imitated[0], imitated[1])  # each repetition its own step 0


def test_a_cuda_runs_deterministic_mode_alerts_nothing_and_changes_nothing_on_cpu(
    tmp_path, monkeypatch
):
    """The settings the units of a CUDA run get (``use_deterministic_algorithms``, cuDNN's
    autotuner off), applied to a tiny run on CPU with every figure and control: no operation
    of the pipeline raises a determinism alert (it would be an error without ``warn_only``),
    and the results are those of the default kernels. The CUDA kernels themselves are checked
    only on a GPU (``test_kmeans_on_cuda_is_bit_reproducible_with_deterministic_kernels``)."""
    import warnings

    from advlab.experiments import runner

    exp = get_experiment("omari2024")
    config = validate_config(exp.config_cls, {**DIGITS_TINY, "figures": ["fig2ab", "fig2ef",
                             "fig3", "whitebox", "imitation"], "imitation_model": "mlp", "fig3_etas": [1.0]})  # fmt: skip
    cache = Cache(tmp_path / "cache")
    default = run_experiment(exp, config, tmp_path / "default", cache, quiet=True)
    monkeypatch.setattr(runner, "computes_on_cuda", lambda config: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pinned = run_experiment(
            exp, config, tmp_path / "pinned", Cache(tmp_path / "c2"), quiet=True
        )
    alerts = [str(w.message) for w in caught if "determinis" in str(w.message)]
    assert alerts == []
    manifest = json.loads((tmp_path / "pinned" / "manifest.json").read_text())
    assert manifest["cuda_deterministic_kernels"] is True
    assert pinned["comparisons"] == default["comparisons"]
