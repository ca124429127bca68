"""Randomized smoothing (Cohen et al. 2019): on a linear classifier, whose smoothed classifier
and exact radius are known in closed form, the certified radii never exceed the distance to the
hyperplane and come close to it; the confidence bound is Clopper-Pearson's; predictions abstain
on the boundary; the noise does not depend on the batch size; a 2-D network's smoothed class
does not change inside a certified radius; k-means is smoothed through its classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm
from sklearn.datasets import load_digits
from torch import nn

from advlab.attacks.evasion.kmeans_pgd import kmeans_model
from advlab.cluster import KMeans, majority_vote_mapping
from advlab.defenses import RandomizedSmoothing, lower_confidence_bound
from advlab.models import Model
from tests.test_milp_verification import _in_2d

SIGMA, N, ALPHA = 0.5, 2000, 0.001


class _Halfspace(nn.Module):
    """Logits (0, w.x + b): class 1 on the side w.x + b > 0."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w.to(x.dtype) + self.b
        return torch.stack([torch.zeros_like(z), z], 1)


def _halfspace() -> tuple[Model, torch.Tensor, np.ndarray]:
    """A linear binary classifier on R^5 (unbounded), 40 rows, each row's distance to its
    hyperplane."""
    w = torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5], dtype=torch.float64)
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    distance = ((x @ w + 0.3).abs() / w.norm()).numpy()
    return Model(_Halfspace(w, 0.3), bounds=(-np.inf, np.inf)), x, distance


def test_on_a_linear_classifier_the_radius_is_below_the_distance_to_the_hyperplane():
    """The smoothed classifier of a half-space is the half-space itself, with p_A =
    Phi(d / sigma) at distance d, so the exact radius (eq. S) is d. Every certified radius is at
    most d, every certified label is the half-space's, and the radius is within the Monte Carlo
    bound's reach of min(d, cap), cap = sigma Phi^-1(alpha^(1/n)) (all n copies on one side)."""
    model, x, distance = _halfspace()
    result = RandomizedSmoothing(model, SIGMA, n0=100, n=N, alpha=ALPHA).certify(x)
    with torch.no_grad():
        truth = model(x).argmax(1).numpy()
    certified = result.labels >= 0
    assert np.all(result.radii <= distance + 1e-12)
    assert np.all(result.labels[certified] == truth[certified])
    cap = SIGMA * norm.ppf(ALPHA ** (1 / N))
    reach = np.minimum(distance, cap)
    far = distance > 0.3 * SIGMA  # (p_A > 0.62: the bound clears 1/2 at this n)
    assert far.sum() > 20 and np.all(certified[far])
    assert (
        np.all(result.radii[far] >= 0.6 * reach[far])
        and np.median(result.radii[far] / reach[far]) > 0.85
    )
    assert result.certified_accuracy(truth, 0.0) == pytest.approx(certified.mean())


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (57, 100), (1990, 2000), (2000, 2000)])
def test_the_lower_bound_is_clopper_pearsons(k, n):
    """The one-sided bound at 1 - alpha is the lower end of the two-sided exact interval at
    1 - 2 alpha (scipy's binomtest)."""
    exact = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * ALPHA, method="exact").low
    assert lower_confidence_bound(k, n, ALPHA) == pytest.approx(exact, abs=1e-12)


def test_predict_abstains_on_the_boundary_and_the_noise_is_the_inputs_own():
    """Points on the hyperplane (p_A = 1/2) are abstained from; points a third of sigma away
    get the half-space's class; the results do not depend on the batch size, and input i draws
    the same noise whatever the other inputs are."""
    model, x, distance = _halfspace()
    w = model.module.w
    on_plane = x - ((x @ w + 0.3) / (w @ w))[:, None] * w
    smoothing = RandomizedSmoothing(model, SIGMA, n=N, alpha=ALPHA)
    assert np.all(smoothing.predict(on_plane[:10]) == -1)
    with torch.no_grad():
        truth = model(x).argmax(1).numpy()
    far = distance > 0.3 * SIGMA
    labels = smoothing.predict(x)
    assert np.all(labels[far] == truth[far])
    small = RandomizedSmoothing(model, SIGMA, n=N, alpha=ALPHA, batch_size=7)
    np.testing.assert_array_equal(small.predict(x), labels)
    first = RandomizedSmoothing(model, SIGMA, n0=50, n=500).certify(x)
    again = RandomizedSmoothing(model, SIGMA, n0=50, n=500, batch_size=33).certify(
        torch.cat([x[:5], -x[5:]])
    )
    np.testing.assert_array_equal(first.p_lower[:5], again.p_lower[:5])


def test_indices_seed_the_noise_of_a_chunk_as_of_the_whole_set():
    """A chunk certified with its indices in the whole set gets the whole set's certificates."""
    model, x, _ = _halfspace()
    smoothing = RandomizedSmoothing(model, SIGMA, n0=50, n=500)
    whole, chunk = smoothing.certify(x), smoothing.certify(x[5:12], indices=np.arange(5, 12))
    np.testing.assert_array_equal(chunk.p_lower, whole.p_lower[5:12])
    np.testing.assert_array_equal(chunk.radii, whole.radii[5:12])
    with pytest.raises(ValueError, match="indices must hold one integer"):
        smoothing.certify(x[:3], indices=[0, 1])


class _Times(nn.Module):
    def __init__(self, s: torch.Tensor) -> None:
        super().__init__()
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s.to(x.dtype)


def test_units_are_the_smoothing_of_the_rescaled_classifier():
    """Noise s * N(0, sigma^2 I) on f is the smoothing of g(x') = f(s x') at x' = x / s: the
    same labels, bounds and radii (in the weighted norm ||delta / s||_2); a frozen feature gets
    no noise."""
    model, x, _ = _halfspace()
    s = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25], dtype=torch.float64)
    ours = RandomizedSmoothing(model, SIGMA, n0=100, n=N, units=s).certify(x)
    rescaled = Model(nn.Sequential(_Times(s), model.module), bounds=(-np.inf, np.inf))
    theirs = RandomizedSmoothing(rescaled, SIGMA, n0=100, n=N).certify(x / s)
    np.testing.assert_array_equal(ours.labels, theirs.labels)
    np.testing.assert_allclose(ours.radii, theirs.radii, rtol=1e-9, atol=1e-12)
    assert 0 < (ours.labels >= 0).mean() < 1
    w = model.module.w
    distance = ((x @ w + 0.3).abs() / (w * s).norm()).numpy()  # the weighted distance
    assert np.all(ours.radii <= distance + 1e-12)


def test_a_2d_networks_smoothed_class_holds_inside_its_certified_radius():
    """The 2-D ReLU network of the MILP tests (sigma 0.1): at 8 points 0.9 radii away from each
    certified input, the smoothed classifier predicts the certified class or abstains, never
    another class."""
    net, x, _, _ = _in_2d()
    result = RandomizedSmoothing(net, 0.1, n0=100, n=N, alpha=ALPHA).certify(x[:20])
    certified = np.flatnonzero(result.radii > 0)
    assert len(certified) >= 5
    angles = torch.arange(8) * (2 * np.pi / 8)
    circle = torch.stack([angles.cos(), angles.sin()], 1)
    probe = RandomizedSmoothing(net, 0.1, n=N, alpha=ALPHA, random_state=1)
    for i in certified:
        points = x[i] + 0.9 * float(result.radii[i]) * circle
        labels = probe.predict(points.clamp(0, 1))  # (the network's bounds; a clip moves inward)
        assert np.all((labels == result.labels[i]) | (labels == -1))


def test_kmeans_is_smoothed_through_its_classifier():
    """k-means on the digits as ``kmeans_model(km, mapping)``: the smoothed classifier certifies
    most test digits at sigma 0.1 (on pixels in [0, 1]), with the class k-means itself gives
    them for nearly all."""
    X, y = load_digits(return_X_y=True)
    km = KMeans(30, random_state=0).fit(X[:1000] / 16)
    mapping = majority_vote_mapping(km.labels_, y[:1000], 30)
    x = torch.from_numpy(X[1000:1040] / 16).float()
    result = RandomizedSmoothing(kmeans_model(km, mapping, (0.0, 1.0)), 0.1, n=1000).certify(x)
    own = mapping[km.predict(x.numpy())]
    certified = result.labels >= 0
    assert certified.mean() > 0.5 and np.mean(result.labels[certified] == own[certified]) > 0.9
    assert 0 < np.median(result.radii[certified]) < 0.1 * norm.ppf(0.001 ** (1 / 1000)) + 1e-12


def test_a_classifier_of_one_class_is_that_class_everywhere():
    """A k-means whose clusters all map to class 0 (one logit): PREDICT returns 0 (no
    runner-up) and CERTIFY the largest radius n copies can give."""
    X, _ = load_digits(return_X_y=True)
    km = KMeans(5, random_state=0).fit(X[:200] / 16)
    model = kmeans_model(km, np.zeros(5, dtype=int), (0.0, 1.0))
    x = torch.from_numpy(X[200:210] / 16).float()
    assert np.all(RandomizedSmoothing(model, 0.1, n=200).predict(x) == 0)
    result = RandomizedSmoothing(model, 0.1, n=200).certify(x)
    cap = 0.1 * norm.ppf(lower_confidence_bound(200, 200, 0.001))
    assert np.all(result.labels == 0) and np.allclose(result.radii, cap)


def test_a_model_in_training_mode_is_smoothed_as_deployed_and_left_in_its_mode():
    """Dropout is off while the noisy copies are labelled (the certificate is the eval-mode
    model's), and the model is back in training mode afterwards."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    x = torch.rand(10, 2, generator=torch.Generator().manual_seed(1))
    deployed = RandomizedSmoothing(net.eval(), 0.1, n0=20, n=200).certify(x)
    training = RandomizedSmoothing(net.train(), 0.1, n0=20, n=200).certify(x)
    np.testing.assert_array_equal(training.p_lower, deployed.p_lower)
    assert net.training


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"sigma": 0.0}, "sigma"), ({"sigma": -1.0}, "sigma"), ({"alpha": 1.0}, "alpha"),
     ({"alpha": 0.0}, "alpha"), ({"n": 0}, "n "), ({"n0": 2.5}, "n0"), ({"sigma": float("nan")}, "sigma")],
)  # fmt: skip
def test_bad_settings_are_named(kwargs, message):
    net, _, _, _ = _in_2d()
    with pytest.raises(ValueError, match=message):
        RandomizedSmoothing(net, **{"sigma": 0.1, **kwargs})


def test_inputs_outside_the_bounds_are_named():
    net, x, _, _ = _in_2d()
    with pytest.raises(ValueError, match="x"):
        RandomizedSmoothing(net, 0.1, n=10).certify(x + 2)
