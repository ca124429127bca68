"""Per-feature L-inf budgets: ``eps`` as one half-width per feature (the box
|x'_d - x_d| <= eps_d, 0 where a feature must not move) in the attacks, the certificates and
the exact verifiers, against their scalar form, grid searches and the exact LP attack."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import load_wine
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from advlab.attacks.evasion import (
    FGSM,
    IFGSM,
    PGD,
    KMeansMinimalAttack,
    KMeansPGD,
    kmeans_certified_radius,
)
from advlab.cluster import majority_vote_mapping
from advlab.defenses.interval_bounds import is_certified, margin_lower_bounds
from advlab.defenses.kmeans_ibp import kmeans_is_certified
from advlab.defenses.kmeans_milp import kmeans_is_certified_linear, verify_kmeans_linf
from advlab.defenses.milp_verification import ATTACKED, ROBUST, is_certified_linear, verify_linf
from advlab.models import Model
from tests.test_milp_verification import _in_2d, _net

BOX = torch.tensor([0.02, 0.08])  # a box twice as wide along the second feature as along the first


def _tabular() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 5 -> 16 -> 3 ReLU network on [0, 1]^5 with preprocessing, 64 inputs and its own
    labels."""
    net = Model(_net([5, 16, 3], seed=3), preprocessing={"mean": 0.5, "std": 0.2})
    x = torch.rand(64, 5, generator=torch.Generator().manual_seed(4))
    return net, x, net(x).argmax(1)


ATTACKS = [
    (FGSM, {}),
    (IFGSM, {"max_iter": 10}),
    (PGD, {"max_iter": 10, "random_state": 0}),
]


@pytest.mark.parametrize(("attack", "kwargs"), ATTACKS)
def test_attacks_keep_each_feature_in_its_own_budget(attack, kwargs):
    """Every feature moves at most its own eps_d, a feature with eps_d = 0 not at all, some
    feature reaches its edge; a budget of equal entries gives the scalar attack bit for bit,
    and the budget comes back in the input's dtype."""
    net, x, y = _tabular()
    eps = torch.tensor([0.1, 0.0, 0.3, 0.05, 0.2])
    result = attack(net, eps=eps, **kwargs)(x, y)
    moved = (result.x_adv - x).abs()
    assert result.x_adv.dtype == x.dtype
    assert bool((moved <= eps + 1e-7).all()) and float(moved[:, 1].max()) == 0.0
    assert bool((moved >= eps - 1e-6).any(0)[eps > 0].all())  # each budget is used somewhere
    scalar = attack(net, eps=0.2, **kwargs)(x, y).x_adv
    assert torch.equal(attack(net, eps=np.full(5, 0.2), **kwargs)(x, y).x_adv, scalar)


def test_a_per_feature_budget_breaks_more_than_its_smallest_entry_and_less_than_its_largest():
    """PGD's success with the budget (0.05, 0.05, 0.4, 0.05, 0.4) lies between the cubes of its
    smallest and largest entries, strictly above the first: the wide features are used."""
    net, x, y = _tabular()
    eps = torch.tensor([0.05, 0.05, 0.4, 0.05, 0.4])

    def broken(budget):
        return int(PGD(net, eps=budget, max_iter=30, random_state=0)(x, y).success.sum())

    low, mixed, high = broken(0.05), broken(eps), broken(0.4)
    assert low < mixed <= high


def test_standardized_units_multiply_each_features_budget_by_its_channels_std():
    """On a 3-channel model with per-channel std, an image-shaped budget in standardized units
    is the pixel budget eps_d * std_c, attack for attack."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 4))
    std = [0.2, 0.3, 0.25]
    model = Model(net, preprocessing={"mean": [0.5] * 3, "std": std})
    x = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    eps = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(2)) * 0.2
    pixels = eps * model.input_std.double().reshape(3, 1, 1)  # (the std the model holds)
    standardized = PGD(model, eps=eps, max_iter=5, eps_units="standardized", random_state=1)
    assert torch.equal(standardized(x, y).x_adv, PGD(model, eps=pixels, max_iter=5,
                                                     random_state=1)(x, y).x_adv)  # fmt: skip
    per_channel = PGD(model, eps=[[[0.1]], [[0.2]], [[0.0]]], max_iter=5, random_state=1)
    moved = (per_channel(x, y).x_adv - x).abs().amax((0, 2, 3))
    assert float(moved[2]) == 0.0 and float(moved[1]) > float(moved[0]) > 0


@pytest.mark.parametrize(
    ("eps", "message"),
    [
        ([0.1, 0.2], r"shape \(2,\), which does not broadcast to one input of shape \(5,\)"),
        ([0.1, -0.2, 0, 0, 0], "must be >= 0"),
        ([0.1, np.nan, 0, 0, 0], "must be finite"),
        ([True, False, True, True, True], "must hold numbers"),
        ([], "is empty"),
        ("0.1", "must be a number or an array"),
    ],
)
def test_bad_per_feature_budgets_are_named_before_any_work(eps, message):
    net, x, y = _tabular()
    with pytest.raises(ValueError, match=message):
        PGD(net, eps=eps, max_iter=3)(x, y)
    with pytest.raises(ValueError, match=message):
        is_certified(net, x, y, eps)
    with pytest.raises(ValueError, match=message):
        verify_linf(net, x, y, eps)


def test_an_l2_budget_stays_one_number():
    net, _, _ = _tabular()
    with pytest.raises(ValueError, match="an L2 budget is one number"):
        PGD(net, eps=[0.1] * 5, max_iter=3, norm="l2")
    with pytest.raises(ValueError, match="an L2 budget is one number"):
        PGD(net, eps=0.1, eps_step=[0.1] * 5, max_iter=3, norm="l2")


def _grid_box(eps: torch.Tensor, points: int) -> torch.Tensor:
    """The offsets of a points x points grid of the box [-eps_1, eps_1] x [-eps_2, eps_2]."""
    step = torch.linspace(-1, 1, points)
    return torch.stack(torch.meshgrid(step, step, indexing="ij"), -1).reshape(-1, 2) * eps


def test_verification_of_a_box_agrees_with_a_grid_and_measures_in_the_budgets_units():
    """The 2-D network of the MILP tests in the box (0.02, 0.08): an input is attacked exactly
    where a 161 x 161 grid of its box holds another class; its counterexample stays in the box;
    the minimal distance, in units of the budget (max_d |d_d| / eps_d), is the grid's nearest
    attacking point to one grid step; a budget of equal entries gives the scalar answers."""
    net, x, y, _ = _in_2d()
    plain = verify_linf(net, x, y, BOX)
    least = verify_linf(net, x, y, BOX, minimal=True)
    np.testing.assert_array_equal(plain.status, least.status)
    offsets = _grid_box(BOX, 161)
    for i in range(len(x)):
        box = (x[i] + offsets).clamp(0, 1)
        hits = (net(box).argmax(1) != y[i]).numpy()
        assert (plain.status[i] == ATTACKED) == bool(hits.any())
        if hits.any():
            nearest = float(((box[hits] - x[i]).abs() / BOX).max(1).values.min())
            assert least.distances[i] - 1e-6 <= nearest <= least.distances[i] + 2 / 160
            for found in (plain, least):
                z = found.x_adv[i : i + 1]
                assert bool(((z - x[i]).abs() <= BOX + 1e-6).all())
                assert int(net(z).argmax()) != int(y[i])
    attacked = plain.status == ATTACKED
    assert 5 < attacked.sum() < len(x) - 5
    assert np.all((least.distances[attacked] > 0) & (least.distances[attacked] <= 1 + 1e-6))
    equal = verify_linf(net, x, y, torch.tensor([0.05, 0.05]), minimal=True)
    scalar = verify_linf(net, x, y, 0.05, minimal=True)
    np.testing.assert_array_equal(equal.status, scalar.status)
    finite = np.isfinite(scalar.distances)
    np.testing.assert_allclose(20 * scalar.distances[finite], equal.distances[finite], atol=1e-5)


def test_certificates_of_a_box_lie_below_the_exact_answer_and_above_a_cube_that_contains_it():
    """Interval and linear certificates of the box (0.02, 0.08) are sound (every certified
    input is proved robust by the programs), ordered (interval within linear), and certify at
    least what they certify for the cube of its larger half-width, which contains the box;
    margin bounds of a box grow when a feature's budget falls to 0."""
    net, x, y, _ = _in_2d()
    exact = torch.from_numpy(verify_linf(net, x, y, BOX).status == ROBUST)
    interval, linear = is_certified(net, x, y, BOX), is_certified_linear(net, x, y, BOX)
    assert bool((interval <= linear).all()) and bool((linear <= exact).all())
    assert bool((is_certified(net, x, y, 0.08) <= interval).all())
    assert bool((is_certified_linear(net, x, y, 0.08) <= linear).all())
    assert int(linear.sum()) > int(is_certified_linear(net, x, y, 0.08).sum())
    fixed = margin_lower_bounds(net, x, y, torch.tensor([0.0, 0.08]))
    assert bool((fixed >= margin_lower_bounds(net, x, y, BOX) - 1e-6).all())


def _wine() -> tuple[Pipeline, torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """Scaler + k-means (k = 6) on the raw wine features, the first 60 rows, the cluster ->
    class mapping, their classes and a budget of a tenth of each feature's std (13 features
    whose scales differ by 10^4: one number cannot be the budget of all)."""
    X, classes = load_wine(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), KMeans(6, n_init=3, random_state=0)).fit(X)
    mapping = majority_vote_mapping(pipe[-1].labels_, classes, 6)
    x = torch.tensor(X[:60])
    return pipe, x, mapping, torch.tensor(mapping[pipe.predict(X[:60])]), 0.1 * X.std(0)


def test_kmeans_verification_of_a_box_equals_the_exact_lp_attack_on_rescaled_inputs():
    """Minimal distances in units of the budget equal the exact LP attack on z = x / eps
    through a scaler that multiplies back (there the box is the unit cube); the certificates
    hold for no input the programs attack, and KMeansPGD keeps the budget and breaks no
    certified input."""
    pipe, x, mapping, y, eps = _wine()
    unbounded = (-np.inf, np.inf)
    found = verify_kmeans_linf(pipe, x, eps, mapping, bounds=unbounded, minimal=True)
    rescale = StandardScaler().fit(x.numpy())
    rescale.mean_, rescale.scale_ = np.zeros(13), 1 / eps  # transform(z) = z * eps
    through = Pipeline([("rescale", rescale), *pipe.steps])
    lp = KMeansMinimalAttack(through, mapping, "linf", "other-class", exact=True, bounds=None)
    sizes = lp(x / torch.tensor(eps), y).distances.numpy()
    attacked = found.status == ATTACKED
    assert 3 <= attacked.sum() <= len(x) - 3 and not (found.status == -1).any()
    np.testing.assert_array_equal(attacked, sizes <= 1)
    np.testing.assert_allclose(found.distances[attacked], sizes[attacked], atol=1e-5)
    for certified in (
        kmeans_is_certified(pipe, x, eps, mapping, bounds=unbounded),
        kmeans_is_certified_linear(pipe, x, eps, mapping, bounds=unbounded),
    ):
        assert not bool(certified[torch.from_numpy(attacked)].any())
        assert int(certified.sum()) > len(x) // 2
    pgd = KMeansPGD(pipe, mapping, eps=eps, max_iter=50, bounds=None)(x, y)
    relative = ((pgd.x_adv.double() - x).abs() - torch.tensor(eps)) / x.abs().clamp(min=1)
    assert float(relative.max()) < 1e-6  # (float32 rounding of the attack's computation)
    assert not bool(pgd.success[torch.from_numpy(found.status == ROBUST)].any())
    assert int(pgd.success.sum()) >= 1


def test_a_feature_the_attacker_cannot_change_stays_put_and_its_budget_of_zero_is_exact():
    """With the wine budget but alcohol (feature 0) frozen at 0: PGD and the exact programs
    never move it, and the programs' minimal distances are never below those with it free."""
    pipe, x, mapping, y, eps = _wine()
    frozen = eps.copy()
    frozen[0] = 0.0
    unbounded = (-np.inf, np.inf)
    free = verify_kmeans_linf(pipe, x, eps, mapping, bounds=unbounded, minimal=True)
    fixed = verify_kmeans_linf(pipe, x, frozen, mapping, bounds=unbounded, minimal=True)
    assert float((fixed.x_adv - x)[:, 0].abs().max()) == 0.0
    both = np.isfinite(fixed.distances) & np.isfinite(free.distances)
    assert np.all(fixed.distances[both] >= free.distances[both] - 1e-6)
    assert np.all(np.isinf(fixed.distances[np.isinf(free.distances)]))
    pgd = KMeansPGD(pipe, mapping, eps=frozen, max_iter=20, bounds=None)(x, y)
    assert float((pgd.x_adv.double() - x)[:, 0].abs().max()) < 1e-4  # float32 of 10-15


def _rescaled(pipe: Pipeline, units: np.ndarray) -> Pipeline:
    """``pipe`` behind a scaler whose transform multiplies by ``units``: on z = x / units it
    computes what ``pipe`` computes on x, so plain norms of z are weighted norms of x."""
    rescale = StandardScaler().fit(np.eye(len(units)))
    rescale.mean_, rescale.scale_ = np.zeros(len(units)), 1 / units
    return Pipeline([("rescale", rescale), *pipe.steps])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_weighted_norms_are_the_plain_norms_of_rescaled_inputs(norm):
    """With ``scale`` = each wine feature's std, the certified radius, the closed-form and the
    exact minimal attack measure ||delta / s||: they equal the same functions, without
    ``scale``, on z = x / s through a pipeline that multiplies back (to the overshoot margin,
    which is set in each space's own units); the attack succeeds everywhere."""
    pipe, x, mapping, y, _ = _wine()
    units = load_wine().data.std(0)
    through, z = _rescaled(pipe, units), x / torch.tensor(units)
    np.testing.assert_allclose(
        kmeans_certified_radius(pipe, x.numpy(), norm, mapping, scale=units),
        kmeans_certified_radius(through, z.numpy(), norm, mapping), rtol=1e-12,
    )  # fmt: skip
    for exact in (False, True):
        ours = KMeansMinimalAttack(pipe, mapping, norm, "other-class", bounds=None, exact=exact,
                                   scale=units)(x, y)  # fmt: skip
        theirs = KMeansMinimalAttack(through, mapping, norm, "other-class", bounds=None,
                                     exact=exact)(z, y)  # fmt: skip
        assert bool(ours.success.all())
        torch.testing.assert_close(ours.distances, theirs.distances, atol=1e-5, rtol=0)
        delta = (ours.x_adv - x) / torch.tensor(units)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        torch.testing.assert_close(ours.distances, size, atol=1e-9, rtol=0)


def test_frozen_features_never_move_and_the_lp_attack_agrees_with_the_programs():
    """Alcohol and proline frozen (scale 0), the other wine features in units of their std:
    the exact LP attack never moves the frozen ones, its sizes equal the mixed-integer
    programs' minimal distances under the per-feature budget 0.6 s (times 0.6), an input is
    attacked by the programs exactly where its size is at most 0.6, and the certified radius
    lies below every size and above the radius with every feature free."""
    pipe, x, mapping, y, _ = _wine()
    units = load_wine().data.std(0)
    frozen = units.copy()
    frozen[[0, 12]] = 0.0
    attack = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", bounds=None, exact=True,
                                 scale=frozen)(x, y)  # fmt: skip
    assert float((attack.x_adv - x)[:, [0, 12]].abs().max()) == 0.0
    sizes = attack.distances.numpy()
    found = verify_kmeans_linf(pipe, x, 0.6 * frozen, mapping, bounds=(-np.inf, np.inf),
                               minimal=True)  # fmt: skip
    np.testing.assert_array_equal(found.status == ATTACKED, sizes <= 0.6)
    reached = found.status == ATTACKED
    assert 5 < reached.sum() < len(x) - 5
    np.testing.assert_allclose(0.6 * found.distances[reached], sizes[reached], atol=1e-5)
    radius = kmeans_certified_radius(pipe, x.numpy(), "linf", mapping, scale=frozen)
    assert np.all(radius <= sizes + 1e-9)
    free = kmeans_certified_radius(pipe, x.numpy(), "linf", mapping, scale=units)
    assert np.all(radius >= free - 1e-12) and np.any(radius > free + 1e-3)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_in_a_box_the_weighted_exact_attack_finds_a_grids_nearest_point(norm):
    """2-D k-means (k = 8, 4 classes) in the box [0, 1]^2 with units (1, 4) (the second
    feature moves 4 times as far for the same size): over a 401 x 401 grid of the box, the
    nearest point of another class in ||delta / s|| lies within a grid step of the exact
    attack's size and never below it; the boxed certified radius is at most that size and the
    closed form at least."""
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 1, (400, 2))
    km = KMeans(8, n_init=3, random_state=0).fit(data)
    mapping = np.arange(8) % 4
    x = torch.from_numpy(rng.uniform(0.05, 0.95, (30, 2)))
    units = np.array([1.0, 4.0])
    kwargs = {"target": "other-class", "bounds": (0.0, 1.0), "scale": units}
    exact = KMeansMinimalAttack(km, mapping, norm, exact=True, **kwargs)(x)
    closed = KMeansMinimalAttack(km, mapping, norm, **kwargs)(x)
    radius = kmeans_certified_radius(km, x.numpy(), norm, mapping, bounds=(0, 1), scale=units)
    step = np.linspace(0, 1, 401)
    grid = np.stack(np.meshgrid(step, step, indexing="ij"), -1).reshape(-1, 2)
    grid_class = mapping[km.predict(grid)]
    sizes = exact.distances.numpy()
    for i, point in enumerate(x.numpy()):
        other = grid[grid_class != mapping[km.predict(point[None])[0]]] - point
        weighted = other / units
        nearest = (
            np.abs(weighted).max(1) if norm == "linf" else np.linalg.norm(weighted, axis=1)
        ).min()
        assert sizes[i] - 1e-6 <= nearest <= sizes[i] + np.linalg.norm(1 / 400 / units)
        assert radius[i] <= sizes[i] + 1e-9 <= closed.distances[i].item() + 2e-9
    assert bool(exact.success.all())


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        (np.ones(5), "scale has 5 entries, the k-means takes 13"),
        (np.zeros(13), "scale is 0 for every feature"),
        (-np.ones(13), "scale must be >= 0"),
        ([np.nan] * 13, "scale must be finite"),
    ],
)
def test_bad_units_are_named(scale, message):
    pipe, x, mapping, _, _ = _wine()
    with pytest.raises(ValueError, match=message):
        kmeans_certified_radius(pipe, x.numpy(), "linf", mapping, scale=scale)
    with pytest.raises(ValueError, match=message):
        KMeansMinimalAttack(pipe, mapping, "linf", "other-class", bounds=None, scale=scale)


def test_algorithm_1s_attacks_take_per_feature_units():
    """Algorithm 1 on the raw wine rows behind a StandardScaler with ``units`` = each feature's
    std (alcohol frozen): every step's D' moves each feature of A by at most eps * std_d and
    alcohol not at all, the surrogate's A' is I-FGSM called directly with that box, and the
    label-free white-box attack moves A too; units beside standardized eps units, or of the
    wrong shape, are refused before any fit."""
    from advlab.defenses import KMeansAdversarialTraining, KMeansWhiteBoxAttack, SurrogateAttack

    X, labels = load_wine(return_X_y=True)
    X = X.astype(np.float32)
    units = X.astype(np.float64).std(0)
    units[0] = 0.0
    torch.manual_seed(0)
    net = Model(_net([13, 16, 3], seed=5), bounds=(-np.inf, np.inf),
                preprocessing={"mean": X.mean(0).tolist(), "std": X.std(0).tolist(), "axis": -1})  # fmt: skip
    for attack in (SurrogateAttack(net, labels, "pixel", max_iter=5, units=units),
                   KMeansWhiteBoxAttack(max_iter=5, units=units)):  # fmt: skip
        est = KMeansAdversarialTraining(6, eta=0.5, beta=2, attack=attack, eps_max=0.4,
                                        random_state=0, preprocess=StandardScaler())  # fmt: skip
        steps = list(est.iter_steps(X))
        a = est.adv_indices_
        for step in steps[1:]:
            moved = np.abs(step.data[a].astype(np.float64) - X[a])
            assert (
                np.all(moved <= step.eps * units + 1e-6 * np.abs(X[a])) and moved[:, 0].max() == 0
            )
            assert moved.max(0)[1:].min() > 0  # every free feature moves somewhere
            if isinstance(attack, SurrogateAttack):
                box = torch.from_numpy(step.eps * units)
                direct = IFGSM(net, eps=box, max_iter=5, eps_step=box / 4)(
                    torch.from_numpy(X[a]), torch.from_numpy(labels[a])).x_adv.numpy()  # fmt: skip
                np.testing.assert_array_equal(step.data[a], direct)
    with pytest.raises(ValueError, match="use eps_units='pixel' with them"):
        SurrogateAttack(net, labels, "standardized", units=units)
    wrong = KMeansAdversarialTraining(6, beta=1, attack=KMeansWhiteBoxAttack(units=units[:5]),
                                      random_state=0)  # fmt: skip
    with pytest.raises(ValueError, match=r"units has shape \(5,\)"):
        wrong.fit(X)
