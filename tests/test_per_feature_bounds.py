"""Per-feature input bounds: ``Model(net, bounds=(lo, hi))`` and the k-means attacks'
``bounds`` with one box [lo_d, hi_d] per feature (a range of valid values per tabular
column, an open side where a feature has none), in the attacks, the certificates and the
exact verifiers, against their two-number form and grid searches of ball ∩ box."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from torch import nn

from advlab.attacks.evasion import (
    BIM,
    FGSM,
    KA3,
    LBFGS,
    PGD,
    CarliniWagnerL2,
    DeepFool,
    KMeansMinimalAttack,
    KMeansPGD,
    kmeans_certified_radius,
)
from advlab.defenses.interval_bounds import certified_accuracy, is_certified
from advlab.defenses.kmeans_ibp import kmeans_is_certified
from advlab.defenses.kmeans_milp import kmeans_is_certified_linear, verify_kmeans_linf
from advlab.defenses.milp_verification import ATTACKED, ROBUST, is_certified_linear, verify_linf
from advlab.models import Model
from tests.test_milp_verification import _net

LOWER = torch.tensor([0.0, -1.0, 0.0, 0.2, -np.inf], dtype=torch.float64)
UPPER = torch.tensor([1.0, 1.0, 0.5, 0.8, np.inf], dtype=torch.float64)


def _tabular() -> tuple[Model, Model, torch.Tensor, torch.Tensor]:
    """A 5 -> 16 -> 3 ReLU network as one Model on per-feature bounds (feature 4 unbounded)
    and one on (-inf, inf), 64 inputs inside the box and their predicted labels."""
    net = _net([5, 16, 3], seed=3)
    pre = {"mean": 0.3, "std": 0.4}
    boxed = Model(net, bounds=(LOWER, UPPER), preprocessing=pre)
    free = Model(net, bounds=(-np.inf, np.inf), preprocessing=pre)
    g = torch.Generator().manual_seed(4)
    finite = torch.tensor([1.0, 2.0, 0.5, 0.6, 1.0]), torch.tensor([0.0, -1.0, 0.0, 0.2, 0.0])
    x = (torch.rand(64, 5, generator=g) * finite[0] + finite[1]).float()
    x[:, 4] = torch.randn(64, generator=g)
    return boxed, free, x, boxed(x).argmax(1)


ATTACKS = [
    (FGSM, {"eps": 0.3}),
    (BIM, {"eps": 0.3, "max_iter": 10}),
    (PGD, {"eps": 0.3, "max_iter": 10, "random_state": 0}),
    (PGD, {"eps": 0.6, "norm": "l2", "max_iter": 10, "random_state": 0}),
    (DeepFool, {"max_iter": 20}),
    (LBFGS, {"max_iter": 20}),
    (KA3, {"K": 2, "ssim_weight": 0.0, "max_iter": 10}),
]


def _inside(x_adv: torch.Tensor) -> bool:
    return bool(((x_adv.double() >= LOWER) & (x_adv.double() <= UPPER)).all())


@pytest.mark.parametrize(("attack", "kwargs"), ATTACKS)
def test_attacks_keep_every_feature_in_its_own_bounds(attack, kwargs):
    """Every example lies in its feature's [lo_d, hi_d], and the box binds: without it, the
    same attack leaves it; bounds of equal entries give the two-number attack bit for bit."""
    boxed, free, x, y = _tabular()
    result = attack(boxed, **kwargs)(x, y)
    assert _inside(result.x_adv) and result.x_adv.dtype == x.dtype
    assert not _inside(attack(free, **kwargs)(x, y).x_adv)
    pre = {"mean": 0.3, "std": 0.4}
    four = Model(_net([4, 16, 3], seed=5), bounds=(-1.0, 1.0), preprocessing=pre)
    same = Model(four.module, bounds=(-torch.ones(4), torch.ones(4)), preprocessing=pre)
    z = x[:, :4].clamp(-1, 1)
    labels = four(z).argmax(1)
    ours, theirs = attack(same, **kwargs)(z, labels), attack(four, **kwargs)(z, labels)
    assert torch.equal(ours.x_adv, theirs.x_adv)


def test_carlini_wagner_measures_each_feature_in_its_range():
    """C&W maps each feature onto its own [lo_d, hi_d] (tanh): its examples stay inside; with
    bounds of equal entries it is the two-number attack."""
    boxed, _, x, y = _tabular()
    finite_upper = UPPER.clone()
    finite_upper[4], lower = 4.0, LOWER.clone()
    lower[4] = -4.0
    model = Model(
        boxed.module, bounds=(lower, finite_upper), preprocessing={"mean": 0.3, "std": 0.4}
    )
    result = CarliniWagnerL2(model, steps=30, binary_search_steps=3)(x, y)
    assert bool(((result.x_adv.double() >= lower) & (result.x_adv.double() <= finite_upper)).all())
    assert int(result.success.sum()) > 10
    four = Model(_net([4, 16, 3], seed=5), bounds=(0.0, 1.0))
    same = Model(four.module, bounds=(torch.zeros(4), torch.ones(4)))
    z = x[:, :4].clamp(0, 1)
    labels = four(z).argmax(1)
    kwargs = {"steps": 20, "binary_search_steps": 2}
    assert torch.equal(CarliniWagnerL2(same, **kwargs)(z, labels).x_adv,
                       CarliniWagnerL2(four, **kwargs)(z, labels).x_adv)  # fmt: skip


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ((1.0, 0.0), r"lower < upper, got \(1.0, 0.0\)"),
        (([0, 2, 0], [1, 1, 1]), r"at index \(1,\) the lower bound is 2 and the upper bound 1"),
        (([0, np.nan], 1.0), "lower side contains NaN"),
        (([True, False], 1.0), "lower side must hold numbers, got booleans"),
        ((0.0, "1"), "upper side must be a number or an array"),
        (([], 1.0), r"lower side is empty \(shape \(0,\)\)"),
        (([0, 0, 0], [1, 1]), r"shape \(3,\) and its upper side \(2,\), which do not broadcast"),
        ((0.0,), r"must be \(lower, upper\)"),
        (([0, 0], [0, 0]), r"fix every feature \(lower == upper\)"),
        (([np.inf, 0], [np.inf, 1]), r"finite where equal.*index \(0,\) the lower bound is inf"),
    ],
)
def test_bad_bounds_are_named_before_any_work(bounds, message):
    with pytest.raises(ValueError, match=message):
        Model(_net([3, 4, 2], seed=0), bounds=bounds)


def test_inputs_and_shapes_against_per_feature_bounds_are_named_at_the_call():
    """An input outside its feature's bounds is named by input, feature and box; bounds that do
    not broadcast to one input are named with both shapes (before any attack step)."""
    boxed, _, x, y = _tabular()
    bad = x.clone()
    bad[3, 2] = 0.7
    with pytest.raises(ValueError, match=r"input 3, feature 2 is 0.7, outside \[0, 0.5\] \(1 "):
        PGD(boxed, eps=0.1, max_iter=2)(bad, y)
    with pytest.raises(ValueError, match=r"input 3, feature 2 is 0.7"):
        is_certified(boxed, bad, y, 0.1)
    wrong = Model(boxed.module, bounds=(torch.zeros(3), 1.0))
    with pytest.raises(ValueError, match=r"bounds have shape \(3,\), which does not broadcast to "
                                         r"one input of shape \(5,\)"):  # fmt: skip
        FGSM(wrong, eps=0.1)(x.clamp(0, 1), y)
    with pytest.raises(ValueError, match="differ from the Model's bounds per-feature bounds"):
        is_certified(boxed, x, y, 0.1, bounds=(0.0, 1.0))
    same = (LOWER.numpy(), UPPER.numpy())
    assert torch.equal(is_certified(boxed, x, y, 0.1, bounds=same), is_certified(boxed, x, y, 0.1))
    centres = np.random.default_rng(0).uniform(0, 1, (4, 5))
    with pytest.raises(
        ValueError, match=r"x must lie in its per-feature bounds; input 3, feature 2"
    ):
        kmeans_certified_radius(centres, bad.numpy(), "linf", bounds=(LOWER, UPPER))


def _in_box_2d() -> tuple[Model, Model, torch.Tensor, torch.Tensor, tuple]:
    """The 2 -> 12 -> 12 -> 3 network of the MILP tests on the box [0.3, 0.7] x [0, 1] and on
    [0, 1]^2, 60 inputs inside the box and their predicted labels."""
    net = _net([2, 12, 12, 3], seed=0)
    pre = {"mean": 0.5, "std": 0.1}
    box = (torch.tensor([0.3, 0.0]), torch.tensor([0.7, 1.0]))
    boxed, square = Model(net, bounds=box, preprocessing=pre), Model(net, preprocessing=pre)
    x = torch.rand(60, 2, generator=torch.Generator().manual_seed(1)) * torch.tensor([0.4, 1.0])
    x[:, 0] += 0.3
    return boxed, square, x, boxed(x).argmax(1), box


def test_verification_in_a_per_feature_box_agrees_with_a_grid_of_ball_and_box():
    """At eps = 0.08: an input is attacked exactly where a 321 x 321 grid of its ball clipped
    to [0.3, 0.7] x [0, 1] holds another class, its counterexample inside the box, the minimal
    distance the grid's nearest attacking point to two grid steps (a thin region of another
    class can slip between grid points); the box certifies at least
    what [0, 1]^2 certifies, and more inputs; the certificates are sound and ordered."""
    boxed, square, x, y, (lo, hi) = _in_box_2d()
    eps = 0.08
    plain = verify_linf(boxed, x, y, eps)
    least = verify_linf(boxed, x, y, eps, minimal=True)
    np.testing.assert_array_equal(plain.status, least.status)
    step = torch.linspace(-eps, eps, 321)
    offsets = torch.stack(torch.meshgrid(step, step, indexing="ij"), -1).reshape(-1, 2)
    for i in range(len(x)):
        ball = torch.maximum(torch.minimum(x[i] + offsets, hi), lo)
        hits = (boxed(ball).argmax(1) != y[i]).numpy()
        assert (plain.status[i] == ATTACKED) == bool(hits.any())
        if hits.any():
            nearest = float((ball[hits] - x[i]).abs().max(1).values.min())
            assert least.distances[i] - 1e-6 <= nearest <= least.distances[i] + 4 * eps / 320
            for found in (plain, least):
                z = found.x_adv[i]
                assert bool(((z >= lo) & (z <= hi)).all()) and int(boxed(z[None]).argmax()) != y[i]
    exact = torch.from_numpy(plain.status == ROBUST)
    in_square = torch.from_numpy(verify_linf(square, x, y, eps).status == ROBUST)
    assert bool((in_square <= exact).all()) and int(exact.sum()) > int(in_square.sum())
    assert 5 < int((~exact).sum()) < len(x) - 5
    interval, linear = is_certified(boxed, x, y, eps), is_certified_linear(boxed, x, y, eps)
    assert bool((interval <= linear).all()) and bool((linear <= exact).all())
    linear_square = is_certified_linear(square, x, y, eps)
    assert bool((linear_square <= linear).all()) and int(linear.sum()) > int(linear_square.sum())
    interval, interval_square = is_certified(boxed, x, y, 0.04), is_certified(square, x, y, 0.04)
    assert bool((interval_square <= interval).all())  # (at 0.08 intervals certify nothing)
    assert int(interval.sum()) > int(interval_square.sum())
    assert certified_accuracy(boxed, x, y, 0.04) == pytest.approx(
        100 * float(interval.float().mean())
    )
    pgd = PGD(boxed, eps=eps, max_iter=40, random_state=0)(x, y)
    assert not bool(pgd.success[exact].any()) and int(pgd.success.sum()) >= 1


def test_verification_with_bounds_of_equal_entries_is_the_two_number_verification():
    """Bounds of equal entries (0, 1) per feature: the same statuses, distances and
    certificates as the two numbers."""
    _, square, x, y, _ = _in_box_2d()
    pre = {"mean": 0.5, "std": 0.1}
    same = Model(square.module, bounds=(torch.zeros(2), torch.ones(2)), preprocessing=pre)
    for method in (verify_linf, lambda *a: verify_linf(*a, minimal=True)):
        ours, theirs = method(same, x, y, 0.08), method(square, x, y, 0.08)
        np.testing.assert_array_equal(ours.status, theirs.status)
        np.testing.assert_array_equal(ours.distances, theirs.distances)
    assert torch.equal(is_certified(same, x, y, 0.08), is_certified(square, x, y, 0.08))
    assert torch.equal(
        is_certified_linear(same, x, y, 0.08), is_certified_linear(square, x, y, 0.08)
    )


def _kmeans_2d() -> tuple[KMeans, np.ndarray, torch.Tensor, tuple]:
    """2-D k-means (k = 8, 4 classes) fitted on [0, 1]^2, 30 points inside the box
    [0.2, 0.6] x [0.1, 1]."""
    rng = np.random.default_rng(0)
    km = KMeans(8, n_init=3, random_state=0).fit(rng.uniform(0, 1, (400, 2)))
    lo, hi = np.array([0.2, 0.1]), np.array([0.6, 1.0])
    x = torch.from_numpy(rng.uniform(lo, hi, (30, 2)))
    return km, np.arange(8) % 4, x, (lo, hi)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_exact_kmeans_attack_in_a_per_feature_box_finds_a_grids_nearest_point(norm):
    """Over a 401 x 401 grid of the box [0.2, 0.6] x [0.1, 1], the nearest point of another
    class lies within a grid step of the exact attack's size and never below it, the example
    inside the box (inf where the box holds no other class); the certified radius with the box
    is at most that size, at least the radius without it, and the closed form at least."""
    km, mapping, x, (lo, hi) = _kmeans_2d()
    kwargs = {"target": "other-class", "bounds": (lo, hi)}
    exact = KMeansMinimalAttack(km, mapping, norm, exact=True, **kwargs)(x)
    closed = KMeansMinimalAttack(km, mapping, norm, **kwargs)(x)
    radius = kmeans_certified_radius(km, x.numpy(), norm, mapping, bounds=(lo, hi))
    free = kmeans_certified_radius(km, x.numpy(), norm, mapping)
    grid = np.stack(np.meshgrid(np.linspace(lo[0], hi[0], 401), np.linspace(lo[1], hi[1], 401),
                                indexing="ij"), -1).reshape(-1, 2)  # fmt: skip
    grid_class = mapping[km.predict(grid)]
    sizes = exact.distances.numpy()
    assert np.all((exact.x_adv.numpy() >= lo - 1e-12) & (exact.x_adv.numpy() <= hi + 1e-12))
    for i, point in enumerate(x.numpy()):
        other = grid[grid_class != mapping[km.predict(point[None])[0]]] - point
        nearest = (np.abs(other).max(1) if norm == "linf" else np.linalg.norm(other, axis=1)).min()
        assert sizes[i] - 1e-6 <= nearest <= sizes[i] + np.linalg.norm((hi - lo) / 400)
        assert free[i] - 1e-12 <= radius[i] <= sizes[i] + 1e-9 <= closed.distances[i].item() + 2e-9
    assert np.any(radius > free + 1e-3)  # the box tightens the bound somewhere


def test_kmeans_verification_in_a_per_feature_box_equals_the_exact_lp_attack():
    """``verify_kmeans_linf`` with the box: attacked exactly where the LP attack in the box
    needs at most eps, at the same minimal distance; the interval and linear certificates hold
    for no attacked input; KMeansPGD stays in the box and breaks no robust input."""
    km, mapping, x, (lo, hi) = _kmeans_2d()
    y = torch.from_numpy(mapping[km.predict(x.numpy())])
    eps = 0.1
    found = verify_kmeans_linf(km, x, eps, mapping, bounds=(lo, hi), minimal=True)
    lp = KMeansMinimalAttack(km, mapping, "linf", "other-class", exact=True, bounds=(lo, hi))
    sizes = lp(x, y).distances.numpy()
    attacked = found.status == ATTACKED
    assert 3 <= attacked.sum() <= len(x) - 3
    np.testing.assert_array_equal(attacked, sizes <= eps)
    np.testing.assert_allclose(found.distances[attacked], sizes[attacked], atol=1e-5)
    assert np.all((found.x_adv.numpy() >= lo - 1e-9) & (found.x_adv.numpy() <= hi + 1e-9))
    for certified in (
        kmeans_is_certified(km, x, eps, mapping, bounds=(lo, hi)),
        kmeans_is_certified_linear(km, x, eps, mapping, bounds=(lo, hi)),
    ):
        assert not bool(certified[torch.from_numpy(attacked)].any())
        assert bool((kmeans_is_certified(km, x, eps, mapping, bounds=(0, 1)) <= certified).all())
    pgd = KMeansPGD(km, mapping, eps=eps, max_iter=40, bounds=(lo, hi))(x.float(), y)
    adv = pgd.x_adv.double().numpy()
    assert np.all((adv >= lo - 1e-7) & (adv <= hi + 1e-7))
    assert not bool(pgd.success[torch.from_numpy(found.status == ROBUST)].any())


def test_a_highs_solve_error_is_retried_without_presolve(monkeypatch):
    """HiGHS failed (status 4, "Solve error") on the minimal-distance program of input 0 of
    the grid test at eps = 0.08, with presolve, on this machine, and left it UNKNOWN: every
    solve error is now retried once without presolve. A solver that fails every first try
    still gives the answers of the unpatched run."""
    import advlab.defenses.milp_verification as mv

    boxed, _, x, y, _ = _in_box_2d()
    expected = verify_linf(boxed, x[:12], y[:12], 0.08, minimal=True)
    assert expected.status[0] == ATTACKED  # (UNKNOWN before the retry)
    real, calls = mv.milp, {"failed": 0, "retried": 0}

    def failing_first(*args, **kwargs):
        if kwargs["options"].get("presolve", True):
            calls["failed"] += 1
            return type("Fit", (), {"status": mv.SOLVE_ERROR, "x": None, "fun": None})()
        calls["retried"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(mv, "milp", failing_first)
    again = verify_linf(boxed, x[:12], y[:12], 0.08, minimal=True)
    np.testing.assert_array_equal(again.status, expected.status)
    np.testing.assert_allclose(again.distances, expected.distances, atol=1e-5)  # (HiGHS' gap)
    assert calls["failed"] == calls["retried"] > 0


ALL_ATTACKS = [*ATTACKS, (CarliniWagnerL2, {"steps": 30, "binary_search_steps": 3})]


@pytest.mark.parametrize(("attack", "kwargs"), ALL_ATTACKS)
def test_a_feature_with_equal_bounds_is_fixed_in_every_attack(attack, kwargs):
    """Feature 1 with lower = upper = 0.25 (a value the attacker cannot change, as a
    constant pixel's range over the data is): no attack moves it, none returns NaN, and the
    others still move."""
    net = _net([3, 16, 3], seed=7)
    box = (torch.tensor([0.0, 0.25, -1.0]), torch.tensor([1.0, 0.25, 1.0]))
    model = Model(net, bounds=box)
    x = torch.rand(40, 3, generator=torch.Generator().manual_seed(8))
    x[:, 1], x[:, 2] = 0.25, 2 * x[:, 2] - 1
    result = attack(model, **kwargs)(x, model(x).argmax(1))
    assert bool(torch.isfinite(result.x_adv).all())
    assert bool((result.x_adv[:, 1] == 0.25).all())
    assert float((result.x_adv - x).abs().max()) > 0.01 and int(result.success.sum()) >= 1
    found = verify_linf(model, x[:10], model(x[:10]).argmax(1), 0.2)
    assert bool((found.x_adv[:, 1] == 0.25).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_closed_form_step_in_a_box_with_open_sides_equals_a_bisection(norm):
    """``_smallest_step`` (the smallest t with w . clip(x + t u) >= b) against a bisection of
    that non-decreasing function, in boxes that mix finite and open sides per feature and
    for directions with zero entries. With exactly one moving feature of infinite room it
    read inf * 0 as NaN and called reachable steps unreachable (the step of w = (0, 1) from
    (0.5, 0.5) to b = 2 came out inf, not 1.5)."""
    from advlab.attacks.evasion.kmeans_minimal import _smallest_step

    rng = np.random.default_rng(11)
    n, d = 300, 4
    x = torch.from_numpy(rng.uniform(0.2, 0.8, (n, d)))
    w = torch.from_numpy(rng.normal(size=(n, d)) * (rng.uniform(size=(n, d)) > 0.4))
    b = (x * w).sum(1) + torch.from_numpy(rng.uniform(-0.2, 2.0, n))
    lo = torch.tensor([0.0, -np.inf, 0.1, -np.inf], dtype=torch.float64)
    hi = torch.tensor([1.0, np.inf, 0.9, 1.0], dtype=torch.float64)
    t = _smallest_step(x, w, b, (lo, hi), norm)
    u = w.sign() if norm == "linf" else w

    def f(steps: torch.Tensor) -> torch.Tensor:
        return (torch.maximum(torch.minimum(x + steps[:, None] * u, hi), lo) * w).sum(1)

    far = torch.full((n,), 1e6, dtype=torch.float64)
    reachable = f(far) >= b
    np.testing.assert_array_equal(torch.isfinite(t).numpy(), reachable.numpy())
    low, high = torch.zeros(n, dtype=torch.float64), far.clone()
    for _ in range(200):
        mid = (low + high) / 2
        ok = f(mid) >= b
        low, high = torch.where(ok, low, mid), torch.where(ok, mid, high)
    np.testing.assert_allclose(t[reachable].numpy(), high[reachable].numpy(), rtol=1e-9, atol=1e-9)
    assert int(reachable.sum()) > n // 2 and int((~reachable).sum()) > 5
    one_open = (torch.tensor([0.0, -np.inf]), torch.tensor([1.0, np.inf]))
    step = _smallest_step(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.0, 1.0]]),
                          torch.tensor([2.0]), one_open, norm)  # fmt: skip
    assert float(step) == pytest.approx(1.5)


def test_float32_inputs_whose_rounding_crosses_float64_bounds_from_the_same_data_are_inside():
    """Bounds taken in float64 from the data itself (each feature's min and max) and the same
    rows attacked in float32: a value that float32 rounds past its float64 bound is inside
    (the bounds are compared rounded outwards to the inputs' dtype; before, 7 of 169 breast
    cancer rows were refused), the attacks' outputs stay in the float64 box (they clip with
    the bounds rounded inwards), and the interval certificate's box holds x itself."""
    rng = np.random.default_rng(5)
    rows = rng.uniform(0, 1, (80, 6)) * np.array([0.1, 1.0, 10.0, 0.05279, 3.3, 0.7])
    box = (rows.min(0), rows.max(0))
    x = torch.from_numpy(rows).float()
    above = (x.double() > torch.from_numpy(box[1])) | (x.double() < torch.from_numpy(box[0]))
    assert bool(above.any())  # (the case: float32 rounds some of them outside)
    model = Model(_net([6, 16, 3], seed=2), bounds=box)
    y = model(x).argmax(1)
    adv = PGD(model, eps=0.05, max_iter=5, random_state=0)(x, y).x_adv.double()
    assert bool(((adv >= torch.from_numpy(box[0])) & (adv <= torch.from_numpy(box[1]))).all())
    certified = is_certified(model, x, y, 0.0)
    assert bool(certified.all())  # eps 0: the box is x itself, classified y
    with pytest.raises(ValueError, match="per-feature bounds; input 0, feature 1"):
        PGD(model, eps=0.05, max_iter=5)(x + torch.tensor([0, 2.0, 0, 0, 0, 0]), y)


def test_carlini_wagner_on_open_features_finds_a_linear_models_exact_minimum():
    """Unbounded rows (no range for tanh) are optimised in their own units and clipped: on a
    2-class linear model, whose minimal L2 perturbation is |z_0 - z_1| / ||w_0 - w_1||, C&W
    succeeds on every row within 1 % of that minimum and never below it (it was refused:
    "needs finite model bounds"). With [0, inf) features (non-negative rows) and a mixed box
    (two finite ranges, one half-open, one open) its examples stay in the box."""
    torch.manual_seed(0)
    linear = nn.Linear(4, 2).double()
    x = torch.randn(20, 4, dtype=torch.float64)
    model = Model(linear, bounds=(-np.inf, np.inf))
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    minimum = (z[:, 0] - z[:, 1]).abs() / (linear.weight[0] - linear.weight[1]).norm()
    result = CarliniWagnerL2(model, steps=1000, binary_search_steps=9)(x, y)
    ratio = ((result.x_adv - x).norm(dim=1) / minimum).detach()
    assert bool(result.success.all())
    assert float(ratio.min()) >= 1 - 1e-6 and float(ratio.max()) <= 1.01
    rows = x.abs()
    for box in ((0.0, np.inf), (torch.tensor([0.0, -1.0, 0.0, -np.inf]), torch.tensor([3.0, 3.0, np.inf, np.inf]))):  # fmt: skip
        inside = Model(linear, bounds=box)
        kept = rows.clone()
        kept[:, 1] = kept[:, 1].clamp(max=3.0)
        kept[:, 0] = kept[:, 0].clamp(max=3.0)
        labels = inside(kept).argmax(1)
        found = CarliniWagnerL2(inside, steps=200, binary_search_steps=5)(kept, labels)
        low, high = (torch.as_tensor(b, dtype=torch.float64) for b in box)
        assert bool(((found.x_adv >= low) & (found.x_adv <= high)).all())
        assert bool(torch.isfinite(found.x_adv).all()) and int(found.success.sum()) >= 10


def test_algorithm_1s_attacks_keep_the_training_rows_in_per_feature_bounds():
    """Algorithm 1 on raw wine rows behind a StandardScaler, with each feature's observed
    range as the box (the surrogate's ``Model`` bounds, and the label-free white-box attack's
    ``bounds``) and budgets of eps training stds: every step's D' lies in the box, and the box
    binds (the same steps without it leave it)."""
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    from advlab.defenses import KMeansAdversarialTraining, KMeansWhiteBoxAttack, SurrogateAttack

    X, labels = load_wine(return_X_y=True)
    X = X.astype(np.float32)
    std = X.astype(np.float64).std(0)
    box = (X.min(0), X.max(0))
    pre = {"mean": X.mean(0).tolist(), "std": X.std(0).tolist(), "axis": -1}

    def steps(attack: object) -> list[np.ndarray]:
        est = KMeansAdversarialTraining(6, eta=0.5, beta=2, attack=attack, eps_max=1.5,
                                        random_state=0, preprocess=StandardScaler())  # fmt: skip
        return [step.data for step in list(est.iter_steps(X))[1:]]

    net = _net([13, 16, 3], seed=5)
    for boxed, open_ in (
        (SurrogateAttack(Model(net, bounds=box, preprocessing=pre), labels, "pixel", max_iter=5, units=std),
         SurrogateAttack(Model(net, bounds=(-np.inf, np.inf), preprocessing=pre), labels, "pixel", max_iter=5, units=std)),
        (KMeansWhiteBoxAttack(max_iter=5, units=std, bounds=box),
         KMeansWhiteBoxAttack(max_iter=5, units=std, bounds=None)),
    ):  # fmt: skip
        for data in steps(boxed):
            assert np.all((data >= box[0]) & (data <= box[1]))
        assert any(np.any((data < box[0]) | (data > box[1])) for data in steps(open_))
