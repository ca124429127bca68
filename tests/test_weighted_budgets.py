"""Budgets in per-feature units (``units`` of FGSM, BIM, PGD and KMeansPGD): the weighted ball
||(x' - x) / s|| <= eps, a box in L-inf and an ellipsoid in L2 (``advlab.attacks.evasion.pgd``,
eq. W). The L2 attack is checked against plain L2 PGD on rescaled inputs, where the ellipsoid
is a ball; standardized L2 units with one std per channel against the standardized network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from advlab.attacks.evasion import FGSM, IFGSM, PGD, KMeansPGD
from advlab.attacks.evasion.base import perturbation_size
from advlab.cluster import majority_vote_mapping
from advlab.models import Model
from tests.test_milp_verification import _net

UNITS = torch.tensor([0.5, 2.0, 1.0, 0.25, 4.0], dtype=torch.float64)


class _Times(nn.Module):
    """x -> s * x: the network on rescaled inputs x' = x / s."""

    def __init__(self, s: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("s", s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


def _rows() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A float64 5 -> 16 -> 3 ReLU network on (x - 0.5) / 0.2, 64 inputs of [0, 1]^5 and its
    own labels."""
    net = nn.Sequential(_Times(torch.full((5,), 5.0, dtype=torch.float64)), _net([5, 16, 3], 3))
    net[1][1].bias.data -= net[1][1].weight.data.sum(1) * 2.5  # (the -0.5 * 5 of each input)
    net = net.double()
    x = torch.rand(64, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return net, x, net(x).argmax(1)


@pytest.mark.parametrize("random_start", [False, True])
def test_l2_pgd_in_units_is_plain_l2_pgd_on_rescaled_inputs(random_start):
    """PGD in the ellipsoid ||delta / s||_2 <= eps on f equals plain L2 PGD on g(x') = f(s x')
    with x' = x / s and bounds [0, 1 / s] (eq. W): the same points, successes and distances."""
    net, x, y = _rows()
    kwargs = dict(eps=0.4, max_iter=10, norm="l2", random_start=random_start, random_state=5)
    weighted = PGD(Model(net), units=UNITS, **kwargs)(x, y)
    rescaled = Model(nn.Sequential(_Times(UNITS), net), bounds=(0.0, 1 / UNITS))
    plain = PGD(rescaled, **kwargs)(x / UNITS, y)
    torch.testing.assert_close(weighted.x_adv, plain.x_adv * UNITS, rtol=0, atol=1e-12)
    assert torch.equal(weighted.success, plain.success)
    torch.testing.assert_close(weighted.distances, plain.distances, rtol=0, atol=1e-12)
    assert 0 < int(weighted.success.sum()) < len(x)  # the comparison discriminates


def test_the_ellipsoid_holds_each_feature_to_its_units_and_a_frozen_one_still():
    """Every example lies in the ellipsoid and the bounds, the feature of unit 0 never moves, the
    distances are the weighted L2 norms, and a feature of larger units moves further."""
    net, x, y = _rows()
    units = torch.tensor([1.0, 0.0, 0.1, 1.0, 3.0])
    result = PGD(Model(net), eps=0.3, max_iter=20, norm="l2", units=units, random_state=0)(x, y)
    delta = result.x_adv - x
    sizes = perturbation_size(delta, "l2", units)
    assert float(sizes.max()) <= 0.3 * (1 + 1e-9) and float(sizes.max()) > 0.29
    torch.testing.assert_close(result.distances, sizes)
    assert float(delta[:, 1].abs().max()) == 0.0
    assert bool((result.x_adv >= 0).all()) and bool((result.x_adv <= 1).all())
    moved = delta.abs().mean(0)
    assert float(moved[4]) > float(moved[0]) > float(moved[2]) > 0


def test_equal_units_are_the_ball_of_eps_times_the_unit():
    """Units c everywhere: the L2 ball of radius c * eps, to rounding; distances in units of c."""
    net, x, y = _rows()
    kwargs = dict(max_iter=8, norm="l2", random_state=2)
    weighted = PGD(Model(net), eps=0.5, units=[0.4] * 5, **kwargs)(x, y)
    plain = PGD(Model(net), eps=0.2, **kwargs)(x, y)
    torch.testing.assert_close(weighted.x_adv, plain.x_adv, rtol=0, atol=1e-12)
    torch.testing.assert_close(weighted.distances * 0.4, plain.distances, rtol=0, atol=1e-12)


def test_standardized_l2_units_with_a_std_per_channel_are_the_ball_of_the_standardized_network():
    """eps_units='standardized' in L2 on a model with one std per channel (once refused) is the
    L2 ball of (x - mean) / std: plain L2 PGD on the network alone, its bounds mapped."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 4)).double()
    mean = torch.tensor([0.4, 0.5, 0.6], dtype=torch.float64).reshape(3, 1, 1)
    std = torch.tensor([0.2, 0.3, 0.25], dtype=torch.float64).reshape(3, 1, 1)
    model = Model(net, preprocessing={"mean": mean.flatten(), "std": std.flatten()})
    x = torch.rand(16, 3, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mean, std = model.mean.double(), model.std.double()  # (the float32 values the model holds)
    y = model(x).argmax(1)
    kwargs = dict(eps=0.8, max_iter=6, norm="l2", random_state=3)
    standardized = PGD(model, eps_units="standardized", **kwargs)(x, y)
    inner = Model(net, bounds=(-mean / std, (1 - mean) / std))
    plain = PGD(inner, **kwargs)((x - mean) / std, y)
    torch.testing.assert_close(standardized.x_adv, plain.x_adv * std + mean, rtol=0, atol=1e-12)
    assert torch.equal(standardized.success, plain.success)
    assert 0 < int(plain.success.sum()) < len(x)


@pytest.mark.parametrize(("attack", "step"), [(FGSM, None), (IFGSM, None), (IFGSM, 0.01),
                                              (PGD, None), (PGD, 0.01)])  # fmt: skip
def test_linf_units_are_the_box_eps_times_units_and_measure_in_them(attack, step):
    """In L-inf, units give the attack of the array budget eps * s (and step eps_step * s) bit
    for bit; its distances are max_d |delta_d| / s_d, at most eps."""
    net, x, y = _rows()

    def run(eps, eps_step, **units):
        if attack is FGSM:
            return FGSM(Model(net), eps=eps, **units)(x, y)
        seed = {"random_state": 0} if attack is PGD else {}
        return attack(Model(net), eps=eps, eps_step=eps_step, max_iter=6, **seed, **units)(x, y)

    boxed = run(0.1 * UNITS, None if step is None else step * UNITS)
    weighted = run(0.1, step, units=UNITS)
    assert torch.equal(weighted.x_adv, boxed.x_adv)
    torch.testing.assert_close(
        weighted.distances, perturbation_size(boxed.x_adv - x, "linf", UNITS)
    )
    assert float(weighted.distances.max()) <= 0.1 * (1 + 1e-12)


def test_kmeans_pgd_in_units_of_each_features_std_is_plain_pgd_on_standardized_rows():
    """KMeansPGD on raw wine rows through a StandardScaler with units = each feature's std, in
    L2, equals KMeansPGD on the standardized rows and the k-means alone (the scaler maps the
    ellipsoid to the ball)."""
    X, labels = load_wine(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), KMeans(6, n_init=3, random_state=0)).fit(X)
    mapping = majority_vote_mapping(pipe.predict(X), labels, 6)
    scaler, km = pipe[0], pipe[-1]
    x, y = torch.from_numpy(X[:60]), torch.from_numpy(labels[:60])
    kwargs = dict(eps=1.0, max_iter=20, norm="l2")
    raw = KMeansPGD(pipe, mapping, bounds=None, units=scaler.scale_, **kwargs)(x, y)
    z = torch.from_numpy(scaler.transform(X[:60]))
    plain = KMeansPGD(km, mapping, bounds=None, **kwargs)(z, y)
    back = torch.from_numpy(scaler.inverse_transform(plain.x_adv.double().numpy()))
    torch.testing.assert_close(raw.x_adv.double(), back, rtol=0, atol=1e-4 * float(np.max(X)))
    assert torch.equal(raw.success, plain.success) and 0 < int(raw.success.sum()) < 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"units": UNITS, "eps_units": "standardized"}, "use eps_units='pixel' with them"),
        ({"units": UNITS, "eps": [0.1] * 5}, "eps is one number when units are given"),
        ({"units": [0.0] * 5}, "units is 0 for every feature"),
        ({"units": [1.0, -1.0, 1.0, 1.0, 1.0]}, "units must be >= 0"),
        ({"units": [1.0, float("nan"), 1.0, 1.0, 1.0]}, "units must be finite"),
        ({"units": [1.0, 2.0]}, "units has shape \\(2,\\), which does not broadcast"),
        ({"eps": [0.1] * 5}, "an L2 budget is one number: to give each feature its own units"),
    ],
)
def test_bad_units_are_named_before_any_work(kwargs, message):
    net, x, y = _rows()
    model = Model(net, preprocessing={"mean": 0.5, "std": 0.2})
    with pytest.raises(ValueError, match=message):
        PGD(model, **{"eps": 0.1, "max_iter": 3, "norm": "l2", **kwargs})(x, y)
