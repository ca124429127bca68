from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from advlab.cluster import KMeans, majority_vote_mapping
from advlab.data import load_dataset
from advlab.defenses import KMeansAdversarialTraining, KMeansWhiteBoxAttack, SurrogateAttack
from advlab.defenses import kmeans_adversarial_training as module


class SpyAttack:
    """Adds a deterministic eps-sized shift and records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, indices, eps, kmeans):
        self.calls.append((indices.copy(), eps, kmeans.cluster_centers_.copy()))
        return np.clip(x + eps * 0.1, 0, 1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


def test_eta_beta_and_eps_schedule(digits):
    spy = SpyAttack()
    model = KMeansAdversarialTraining(
        20, eta=1 / 3, beta=4, attack=spy, eps_max=0.8, random_state=0
    )
    step_centres = [s.kmeans.cluster_centers_.copy() for s in model.iter_steps(digits.images)]
    assert [c[1] for c in spy.calls] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    n_adv = round(len(digits) / 3)
    assert all(len(c[0]) == n_adv and np.array_equal(c[0], model.adv_indices_) for c in spy.calls)
    # each attack sees the model of the previous step
    for (_, _, centres), previous in zip(spy.calls, step_centres[:-1], strict=True):
        assert np.array_equal(centres, previous)
    fitted = KMeansAdversarialTraining(20, eta=1 / 3, beta=4, attack=SpyAttack(), eps_max=0.8,
                                       random_state=0).fit(digits.images)  # fmt: skip
    assert [h["step"] for h in fitted.history_] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(fitted.cluster_centers_, step_centres[-1])
    assert fitted.cluster_centers_.shape == (20, 64)


def test_continuous_starts_from_previous_centres_fresh_does_not(digits):
    X = digits.images
    for continuous in (True, False):
        est = KMeansAdversarialTraining(
            15, eta=0.5, beta=3, attack=SpyAttack(), continuous=continuous, random_state=1
        )
        snapshots = [(s.kmeans.cluster_centers_.copy(), s.data.copy()) for s in est.iter_steps(X)]
        base_seed = int(np.random.RandomState(1).randint(2**31 - 1))
        for step in (1, 2, 3):
            prev_centres, _ = snapshots[step - 1]
            centres, data = snapshots[step]
            init = prev_centres if continuous else "k-means++"
            expected = (
                KMeans(15, init=init, random_state=base_seed + step).fit(data).cluster_centers_
            )
            np.testing.assert_allclose(centres, expected, atol=1e-6)
        if continuous:
            continuous_final = snapshots[-1][0]
        else:
            assert not np.allclose(continuous_final, snapshots[-1][0])


def test_labels_never_reach_kmeans(digits, monkeypatch):
    seen = []
    real_fit = module.KMeans.fit

    def spy_fit(self, X, y=None, sample_weight=None):
        seen.append(y)
        return real_fit(self, X, y)

    monkeypatch.setattr(module.KMeans, "fit", spy_fit)
    est = KMeansAdversarialTraining(10, beta=2, attack=SpyAttack(), random_state=0)
    est.fit(digits.images, digits.labels)  # y is ignored, as scikit-learn's clusterers do
    assert seen == [None, None, None]


@pytest.mark.parametrize("after", [0, 1, 2, 3])
def test_resume_after_any_step_gives_the_same_model(digits, after):
    """Regression: resuming after step 0 used to redo step 0 (history held it twice)."""
    full = KMeansAdversarialTraining(12, beta=4, attack=SpyAttack(), random_state=3)
    steps = list(full.iter_steps(digits.images))
    resumed = KMeansAdversarialTraining(12, beta=4, attack=SpyAttack(), random_state=3)
    rest = list(
        resumed.iter_steps(digits.images, resume=(after, steps[after].kmeans.cluster_centers_))
    )
    assert [s.step for s in rest] == list(range(after + 1, 5))
    for a, b in zip(rest, steps[after + 1 :], strict=True):
        np.testing.assert_array_equal(a.kmeans.cluster_centers_, b.kmeans.cluster_centers_)
    with pytest.raises(ValueError, match="integer random_state"):
        list(
            KMeansAdversarialTraining(12, beta=4).iter_steps(
                digits.images, resume=(0, steps[0].kmeans.cluster_centers_)
            )
        )
    with pytest.raises(ValueError, match="resume step"):
        list(resumed.iter_steps(digits.images, resume=(5, steps[0].kmeans.cluster_centers_)))


def test_initial_kmeans_is_step_0(digits):
    """Step 0 fitted alone is the k-means iter_steps starts with, so trainings sharing a
    random_state can share it (and then resume after step 0)."""
    est = KMeansAdversarialTraining(12, eta=1.0, beta=2, attack=SpyAttack(), random_state=3)
    first = next(iter(est.iter_steps(digits.images)))
    other = KMeansAdversarialTraining(12, eta=0.25, beta=7, attack=SpyAttack(), random_state=3)
    np.testing.assert_array_equal(
        other.initial_kmeans(digits.images).cluster_centers_, first.kmeans.cluster_centers_
    )
    shifted = KMeansAdversarialTraining(12, random_state=4).initial_kmeans(digits.images)
    assert not np.array_equal(shifted.cluster_centers_, first.kmeans.cluster_centers_)
    with pytest.raises(ValueError, match="integer random_state"):
        KMeansAdversarialTraining(12).initial_kmeans(digits.images)


def test_algorithm_1_behind_a_preprocessing_attacks_the_inputs(digits):
    """With ``preprocess`` k-means clusters the scaled and reduced digits while the label-free
    white-box attack, given the pipeline, perturbs the pixels within each step's eps; the
    fitted model predicts through the preprocessing, its cells are read through it, and a run
    resumed after step 1 (preprocessing refitted) continues as the uninterrupted one."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from advlab.cluster import kmeans_cells

    def make() -> KMeansAdversarialTraining:
        pre = make_pipeline(StandardScaler(), PCA(10, random_state=0))
        return KMeansAdversarialTraining(10, eta=0.5, beta=3, eps_max=0.15, random_state=0,
                                         attack=KMeansWhiteBoxAttack(bounds=(0, 1)),
                                         preprocess=pre)  # fmt: skip

    est = make()
    steps = list(est.iter_steps(digits.images))
    flat = digits.data
    for step in steps[1:]:
        moved = np.abs(step.data - flat).max(1)
        assert moved.max() <= step.eps * (1 + 1e-6) and np.mean(moved > 0.5 * step.eps) > 0.4
        assert step.kmeans.cluster_centers_.shape == (10, 10)  # in the PCA's space
    rest = list(make().iter_steps(digits.images, resume=(1, steps[1].kmeans.cluster_centers_)))
    for a, b in zip(rest, steps[2:], strict=True):
        np.testing.assert_array_equal(a.kmeans.cluster_centers_, b.kmeans.cluster_centers_)
    est.fit(digits.images)
    np.testing.assert_array_equal(
        est.predict(digits.images), est.kmeans_.predict(est.preprocess_.transform(flat))
    )
    np.testing.assert_array_equal(kmeans_cells(est).predict(flat), est.predict(flat))
    est.set_params(preprocess=None, beta=1).fit(digits.images)  # refitted without: no trace
    assert not hasattr(est, "preprocess_") and est.cluster_centers_.shape == (10, 64)
    np.testing.assert_array_equal(est.predict(digits.images), est.kmeans_.predict(flat))
    with pytest.raises(ValueError, match="'preprocess' parameter"):
        KMeansAdversarialTraining(10, preprocess="scale").fit(digits.images)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eta": 0.0}, "'eta' parameter"),
        ({"eta": 1.5}, "'eta' parameter"),
        ({"beta": 0}, "'beta' parameter"),
        ({"eps_max": -1.0}, "'eps_max' parameter"),
        ({"eps_max": float("nan")}, "'eps_max' parameter"),
        ({"n_clusters": 10_000}, "exceeds"),
        ({"attack": "ifgsm"}, "'attack' parameter"),
    ],
)
def test_bad_parameters(digits, kwargs, message):
    params = {"n_clusters": 10, "beta": 2, "attack": SpyAttack(), **kwargs}
    with pytest.raises(ValueError, match=message):
        KMeansAdversarialTraining(**params).fit(digits.images)


def test_default_attack_is_label_free_whitebox_on_any_data():
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(300, centers=4, n_features=5, random_state=0)
    X = X * 10 + 100  # not in [0, 1]: the default attack is unbounded
    est = KMeansAdversarialTraining(4, beta=3, eps_max=2.0, random_state=0).fit(X)
    assert est.cluster_centers_.dtype == np.float64 and len(est.history_) == 4
    assert est.predict(X).shape == (300,)


def _linear_surrogate(digits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = torch.from_numpy(digits.images), torch.from_numpy(digits.labels)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_surrogate_and_whitebox_attacks_plug_in(digits):
    surrogate = _linear_surrogate(digits)
    transfer = SurrogateAttack(surrogate, digits.labels, eps_units="pixel", max_iter=3)
    est = KMeansAdversarialTraining(30, beta=2, attack=transfer, eps_max=0.2, random_state=0).fit(
        digits.images
    )
    assert len(est.history_) == 3
    x, km = digits.images[:200], est.kmeans_
    label_free = KMeansWhiteBoxAttack(eps_units="pixel", max_iter=3)(x, np.arange(200), 0.2, km)
    assert np.abs(label_free - x).max() <= 0.2 + 1e-6
    assert (km.predict(label_free) != km.predict(x)).mean() > 0.5  # pushed out of their clusters
    with_labels = KMeansWhiteBoxAttack(
        digits.labels, eps_units="pixel", max_iter=3, train_data=digits.images
    )
    x_adv = with_labels(x, np.arange(200), 0.2, km)
    mapping = majority_vote_mapping(km.predict(digits.images), digits.labels, 30)
    clean = (mapping[km.predict(x)] == digits.labels[:200]).mean()
    attacked = (mapping[km.predict(x_adv)] == digits.labels[:200]).mean()
    assert attacked < clean - 0.3  # pushed into clusters of other classes


def test_an_attack_that_cannot_take_the_training_set_is_refused_before_any_fit(digits, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("k-means was built before the training set was checked")

    monkeypatch.setattr(KMeansAdversarialTraining, "_kmeans", no_fit)
    surrogate = _linear_surrogate(digits)
    n = len(digits.images)
    cases = [
        (SurrogateAttack(surrogate, digits.labels[:10], eps_units="pixel"), "10 labels"),
        (SurrogateAttack(surrogate, digits.labels, eps_units="pixel"), "must lie in \\[0, 1\\]"),
        (KMeansWhiteBoxAttack(digits.labels[:-1], train_data=digits.images), f"{n - 1} rows"),
    ]
    for attack, message in cases:
        est = KMeansAdversarialTraining(30, beta=2, attack=attack, eps_max=0.2, random_state=0)
        images = digits.images * 2 if "lie in" in message else digits.images
        with pytest.raises(ValueError, match=message):
            est.fit(images)
    cropped = digits.images[:, :, :7]  # 7 x 8 images for a surrogate of 8 x 8 ones
    with pytest.raises(ValueError, match="cannot take inputs of shape \\(1, 7, 8\\)"):
        KMeansAdversarialTraining(30, beta=2, attack=cases[1][0], eps_max=0.2).fit(cropped)
