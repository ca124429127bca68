from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from advlab.attacks.evasion import (
    FGSM,
    IFGSM,
    PGD,
    KMeansMinimalAttack,
    KMeansPGD,
    TargetedMisclassification,
    TorchattacksAdapter,
    eps_to_pixels,
    kmeans_certified_radius,
)
from advlab.cluster import KMeans, kmeans_cells, majority_vote_mapping
from advlab.cluster.differentiable import KMeansClassifier
from advlab.data import load_dataset
from advlab.models import build_model
from advlab.models.wrapper import Model


def test_fgsm_matches_closed_form(digits_model):
    model, x, y = digits_model
    x, y = x[:50], y[:50]
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(xr), y), xr)
    expected = torch.clamp(x + 0.1 * grad.sign(), 0, 1)
    result = FGSM(model, eps=0.1)(x, y)
    assert torch.allclose(result.x_adv, expected, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())  # no gradient kept on the model


@pytest.mark.parametrize("targeted", [False, True])
def test_bim_equals_torchattacks(digits_model, targeted):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = digits_model
    x, y = x[:64], y[:64]
    target = (y + 3) % 10
    ref_atk = torchattacks.BIM(model, eps=0.2, alpha=0.05, steps=7)
    if targeted:
        ref_atk.set_mode_targeted_by_label(quiet=True)
    ref = ref_atk(x, target if targeted else y)
    ours = IFGSM(
        model,
        eps=0.2,
        eps_step=0.05,
        max_iter=7,
        criterion=TargetedMisclassification() if targeted else None,
    )(x, y, target if targeted else None)
    assert torch.allclose(ours.x_adv, ref, atol=1e-6)
    adapted = TorchattacksAdapter(torchattacks.BIM(model, eps=0.2, alpha=0.05, steps=7))(x, y)
    if not targeted:
        assert torch.allclose(adapted.x_adv, ours.x_adv, atol=1e-6)
        assert torch.equal(adapted.success, ours.success)


def test_torchattacks_adapter_refuses_a_model_not_read_on_the_unit_box():
    """torchattacks clamps its examples to [0, 1]: on a model read on [0, 255] every example
    came back as the constant image 1 (L-inf distance about 253) until the adapter refused it."""
    torchattacks = pytest.importorskip("torchattacks")
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    with pytest.raises(
        ValueError, match=r"clamps inputs to \[0, 1\], but the model's bounds are \[0, 255\]"
    ):
        TorchattacksAdapter(torchattacks.PGD(Model(net, bounds=(0, 255)), eps=8, alpha=2, steps=5))
    TorchattacksAdapter(torchattacks.PGD(Model(net), eps=0.03))  # (0, 1): accepted


@pytest.mark.parametrize("attack", ["PGD", "PGDL2"])
def test_torchattacks_built_for_a_model_read_on_0_255_finds_the_unit_box_examples(attack):
    """``TorchattacksAdapter.build`` on the same network read on [0, 255] (its preprocessing
    divides by 255), eps and alpha in those units: 255 times the examples and distances that
    the attack finds on [0, 1], the same successes (L-inf PGD and L2 PGD, no random start)."""
    torchattacks = pytest.importorskip("torchattacks")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.rand(20, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = net(x).argmax(1)
    eps, alpha = (8 / 255, 2 / 255) if attack == "PGD" else (0.5, 0.1)
    cls = getattr(torchattacks, attack)
    unit = TorchattacksAdapter(cls(net, eps=eps, alpha=alpha, steps=10, random_start=False))(x, y)
    byte = Model(net, bounds=(0, 255), preprocessing={"mean": 0.0, "std": 255.0})
    built = TorchattacksAdapter.build(cls, byte, eps=255 * eps, alpha=255 * alpha, steps=10,
                                      random_start=False)(255 * x, y)  # fmt: skip
    assert torch.allclose(built.x_adv, 255 * unit.x_adv, atol=2e-3)
    assert torch.equal(built.success, unit.success) and 0 < int(unit.success.sum()) < len(x)
    assert torch.allclose(built.distances, 255 * unit.distances, atol=2e-3)
    with pytest.raises(ValueError, match="per-feature bounds"):
        TorchattacksAdapter.build(cls, Model(net, bounds=(torch.zeros(3, 4, 4), torch.ones(3, 4, 4))),
                                  eps=0.1)  # fmt: skip
    with pytest.raises(ValueError, match="finite box"):
        TorchattacksAdapter.build(cls, Model(net, bounds=(0, float("inf"))), eps=0.1)


class _CountingModel(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def test_generate_returns_the_images_of_call_without_the_prediction_pass(digits_model):
    model, x, y = digits_model
    counted = _CountingModel(model)
    atk = IFGSM(counted, eps=0.2, max_iter=5, batch_size=len(x))
    result = atk(x, y)
    calls_call, counted.calls = counted.calls, 0
    x_adv = atk.generate(x, y)
    assert torch.equal(x_adv, result.x_adv)
    assert (calls_call, counted.calls) == (1 + 5 + 1, 1 + 5)  # class count, steps, prediction
    with pytest.raises(ValueError, match="lie in"):
        atk.generate(x + 2.0, y)


def test_ifgsm_default_step_is_eps_over_4_and_succeeds(digits_model):
    model, x, y = digits_model
    atk = IFGSM(model, eps=0.3, max_iter=10)
    assert atk.eps_step == pytest.approx(0.075)
    result = atk(x, y)
    assert result.success_rate > 0.9
    clean_wrong = model(x).argmax(1) != y
    assert bool(result.success[clean_wrong].all())


def test_early_stop_stops_moving_successful_points(digits_model):
    model, x, y = digits_model
    full = IFGSM(model, eps=0.3, max_iter=20)(x, y)
    early = IFGSM(model, eps=0.3, max_iter=20, early_stop=True)(x, y)
    assert early.success_rate == pytest.approx(full.success_rate, abs=0.05)
    dist_full = (full.x_adv - x).flatten(1).norm(dim=1).mean()
    dist_early = (early.x_adv - x).flatten(1).norm(dim=1).mean()
    assert dist_early < dist_full


@pytest.mark.parametrize(
    ("attack", "norm"),
    [("fgsm", "linf"), ("ifgsm", "linf"), ("ifgsm", "l2"), ("pgd", "linf"), ("pgd", "l2")],
)
def test_attacks_stay_in_box_and_ball(digits_model, norm, attack):
    model, x, y = digits_model
    eps = 0.25 if norm == "linf" else 1.5
    atk = {
        "fgsm": lambda: FGSM(model, eps=eps),
        "ifgsm": lambda: (
            IFGSM(model, eps=eps, max_iter=5)
            if norm == "linf"
            else PGD(model, eps, 5, norm="l2", random_start=False)
        ),
        "pgd": lambda: PGD(model, eps=eps, max_iter=5, norm=norm, random_state=0),
    }[attack]()
    x_adv = atk(x, y).x_adv
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5


def test_pgd_is_seeded(digits_model):
    model, x, y = digits_model
    a = PGD(model, 0.2, 3, random_state=1)(x[:20], y[:20]).x_adv
    b = PGD(model, 0.2, 3, random_state=1)(x[:20], y[:20]).x_adv
    c = PGD(model, 0.2, 3, random_state=2)(x[:20], y[:20]).x_adv
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_model_mode_and_grad_flags_restored():
    model = build_model("small_cnn", 10, (1, 28, 28))
    model.train()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    IFGSM(model, eps=0.1, max_iter=2)(x, y)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("wrapped", [False, True])
def test_an_eval_mode_network_stays_in_eval_mode(wrapped):
    """A network with batch norm and dropout in eval mode, attacked bare or inside
    ``Model(net)`` (a wrapper built in training mode): every module keeps its mode, so batch
    norm does not switch to batch statistics after the attack."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Dropout(0.5),
                        nn.ReLU(), nn.Linear(8, 3)).eval()  # fmt: skip
    x, y = torch.rand(6, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        before = net(x)
    PGD(Model(net) if wrapped else net, eps=0.1, max_iter=2, random_state=0)(x, y)
    assert not any(m.training for m in net.modules())
    with torch.no_grad():
        assert torch.equal(net(x), before)


def test_eps_units():
    assert eps_to_pixels(1.0, "pixel") == 1.0
    assert eps_to_pixels(1.0, "standardized", 0.3081) == pytest.approx(0.3081)
    wrapped = Model(nn.Identity(), preprocessing=dict(mean=0.1307, std=0.3081))
    assert IFGSM(wrapped, eps=1.0, max_iter=1, eps_units="standardized").eps_step == pytest.approx(
        0.3081 / 4
    )
    with pytest.raises(ValueError, match="needs the input's std"):  # a bare module has none
        IFGSM(nn.Identity(), eps=1.0, max_iter=1, eps_units="standardized")
    with pytest.raises(ValueError, match="eps_units"):
        eps_to_pixels(1.0, "bytes")


@pytest.mark.parametrize(
    ("make", "x", "y", "message"),
    [
        (
            lambda m: FGSM(m, eps=-0.1),
            torch.rand(2, 1, 8, 8),
            torch.tensor([0, 1]),
            "eps must be >= 0",
        ),
        (lambda m: FGSM(m, eps=0.1), torch.rand(2, 1, 8, 8) * 3, torch.tensor([0, 1]), r"\[0, 1\]"),
        (
            lambda m: FGSM(m, eps=0.1),
            torch.ones(2, 1, 8, 8, dtype=torch.int64),
            torch.tensor([0, 1]),
            "floating",
        ),
        (lambda m: FGSM(m, eps=0.1), torch.rand(2, 1, 8, 8), torch.tensor([0, 12]), r"\[0, 10\)"),
        (lambda m: FGSM(m, eps=0.1), torch.rand(2, 1, 8, 8), torch.tensor([0.0, 1.0]), "integer"),
        (lambda m: FGSM(m, eps=0.1), torch.rand(2, 1, 8, 8), torch.tensor([0, 1, 2]), "shape"),
        (
            lambda m: FGSM(m, eps=0.1, criterion=TargetedMisclassification()),
            torch.rand(2, 1, 8, 8),
            torch.tensor([0, 1]),
            "target",
        ),
        (lambda m: IFGSM(m, eps=0.1, max_iter=0), None, None, "max_iter"),
    ],
)
def test_bad_input(digits_model, make, x, y, message):
    model = digits_model[0]
    with pytest.raises(ValueError, match=message):
        atk = make(model)
        atk(x, y)


# --------------------------------------------------------------------- k-means attacks


def _box_free_problem(d: int, k: int, seed: int):
    """Centres and points well inside [0, 1] so that the box never binds."""
    rng = np.random.default_rng(seed)
    centres = 0.5 + 0.02 * rng.normal(size=(k, d))
    x = 0.5 + 0.02 * rng.normal(size=(200, d))
    return centres, x


@pytest.mark.parametrize(("d", "norm"), [(2, "l2"), (50, "l2"), (2, "linf"), (50, "linf")])
def test_certified_radius_is_tight_and_sound(d, norm):
    centres, x = _box_free_problem(d, 7, seed=d)
    radius = kmeans_certified_radius(centres, x, norm)
    own = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), 1)
    rng = np.random.default_rng(0)
    # brute force: random perturbations of size just below the radius never change the cluster
    for _ in range(200):
        u = rng.normal(size=x.shape)
        u = u / np.linalg.norm(u, axis=1, keepdims=True) if norm == "l2" else np.sign(u)
        z = x + u * (radius * 0.999)[:, None]
        assert np.array_equal(np.argmin(((z[:, None] - centres[None]) ** 2).sum(-1), 1), own)
    # the minimal attack reaches the boundary at exactly the radius
    atk = KMeansMinimalAttack(centres, norm=norm)
    result = atk(torch.as_tensor(x, dtype=torch.float64))
    assert bool(result.success.all())
    np.testing.assert_allclose(result.distances.numpy(), radius, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_the_minimal_attack_without_a_box_moves_points_whose_centres_share_a_coordinate(norm):
    """A feature equal in every centre (a pixel that is always 0) gives c_j - c_i a zero
    coordinate; with no box (bounds None or infinite) its 0 * inf room made every size NaN and
    the attack failed on every point. Now it reaches the radius, as with a box that never
    binds."""
    centres, x = _box_free_problem(6, 5, seed=1)
    centres[:, 2], x[:, 2] = 0.0, 0.0
    radius = kmeans_certified_radius(centres, x, norm)
    for bounds in (None, (-np.inf, np.inf), (-np.inf, 1.0), (0.0, 1.0)):
        result = KMeansMinimalAttack(centres, norm=norm, bounds=bounds)(torch.as_tensor(x))
        assert bool(result.success.all()), bounds
        np.testing.assert_allclose(result.distances.numpy(), radius, rtol=1e-3, atol=1e-4)
    boxed = kmeans_certified_radius(centres, x, norm, bounds=(-np.inf, np.inf))
    np.testing.assert_allclose(boxed, radius, rtol=1e-9, atol=1e-12)


def test_minimal_attack_respects_box_and_beats_random_search():
    rng = np.random.default_rng(3)
    centres = rng.uniform(0, 1, size=(6, 5))
    x = np.clip(centres[rng.integers(0, 6, 100)] + 0.1 * rng.normal(size=(100, 5)), 0, 1)
    atk = KMeansMinimalAttack(centres, norm="l2")
    result = atk(torch.as_tensor(x))
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    radius = kmeans_certified_radius(centres, x, "l2")
    assert np.all(result.distances.numpy() >= radius - 1e-6)  # the box can only make it larger
    own = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), 1)
    best_random = np.full(len(x), np.inf)
    for _ in range(300):  # random search in the box for cluster-changing points
        z = np.clip(x + rng.normal(size=x.shape) * rng.uniform(0, 0.5, (len(x), 1)), 0, 1)
        moved = np.argmin(((z[:, None] - centres[None]) ** 2).sum(-1), 1) != own
        best_random = np.where(
            moved, np.minimum(best_random, np.linalg.norm(z - x, axis=1)), best_random
        )
    ok = np.isfinite(best_random)
    assert np.all(result.distances.numpy()[ok] <= best_random[ok] + 1e-6)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_the_box_aware_radius_is_sound_tighter_and_below_the_minimal_attack(norm):
    """With bounds, the radius is the distance to each half-space inside the box: never below
    eq. R, equal to it where the box does not bind, at most the box-constrained minimal
    attack's distance, and sound (no move in the box below it changes the class)."""
    rng = np.random.default_rng(5)
    centres = rng.uniform(0, 1, size=(8, 6))
    mapping = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    x = np.clip(centres[rng.integers(0, 8, 150)] + 0.15 * rng.normal(size=(150, 6)), 0, 1)
    free = kmeans_certified_radius(centres, x, norm, mapping=mapping)
    boxed = kmeans_certified_radius(centres, x, norm, mapping=mapping, bounds=(0.0, 1.0))
    assert np.all(boxed >= free - 1e-12) and np.mean(boxed > free + 1e-6) > 0.1  # it binds
    wide = kmeans_certified_radius(centres, x, norm, mapping=mapping, bounds=(-1e6, 1e6))
    np.testing.assert_allclose(wide, free, rtol=1e-9)
    attack = KMeansMinimalAttack(centres, mapping, norm=norm, target="other-class", bounds=(0, 1))
    found = attack(torch.as_tensor(x)).distances.numpy()
    assert np.all(boxed <= found + 1e-6)
    own_class = mapping[np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), 1)]
    for _ in range(300):  # random moves in the box just inside the radius keep the class
        u = rng.normal(size=x.shape)
        u = u / np.linalg.norm(u, axis=1, keepdims=True) if norm == "l2" else np.sign(u)
        z = np.clip(x + u * (np.minimum(boxed, 10) * 0.999)[:, None], 0, 1)
        moved = mapping[np.argmin(((z[:, None] - centres[None]) ** 2).sum(-1), 1)]
        assert np.array_equal(moved, own_class)


def _other_class_grid_distance(centres, mapping, x, norm, step=1 / 400):
    """Brute force in 2-D: the distance from each x to the nearest point of a fine grid of the
    unit box that k-means assigns to another class (exact up to the grid step)."""
    axis = np.arange(0, 1 + step / 2, step)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    grid_class = mapping[np.argmin(((grid[:, None] - centres[None]) ** 2).sum(-1), 1)]
    own = mapping[np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), 1)]
    gaps = [np.abs(grid[grid_class != c] - p) for p, c in zip(x, own, strict=True)]
    return np.array(
        [(g.max(1) if norm == "linf" else np.linalg.norm(g, axis=1)).min() for g in gaps]
    )


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_exact_minimal_attack_matches_brute_force_in_2d(norm):
    """exact=True is the distance to the nearest cell of another class inside the box: a grid
    search over the box finds the same distance (to the grid step), while the closed-form
    search is above it where the closest half-space point lands in a cell of the own class."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0.1, 0.9, size=(12, 2))
    mapping = np.arange(12) % 3
    x = rng.uniform(0, 1, size=(120, 2))
    kwargs = dict(mapping=mapping, norm=norm, target="other-class", bounds=(0.0, 1.0))
    exact = KMeansMinimalAttack(centres, exact=True, **kwargs)(torch.as_tensor(x))
    closed = KMeansMinimalAttack(centres, **kwargs)(torch.as_tensor(x)).distances.numpy()
    brute = _other_class_grid_distance(centres, mapping, x, norm)
    assert bool(exact.success.all())
    found = exact.distances.numpy()
    np.testing.assert_allclose(found, brute, atol=1 / 400 + 1e-5)
    assert np.all(found <= closed + 1e-12) and np.mean(found < closed - 1e-3) > 0.05
    landed = mapping[np.argmin(((exact.x_adv.numpy()[:, None] - centres[None]) ** 2).sum(-1), 1)]
    assert np.all(landed != mapping[np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), 1)])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_exact_minimal_attack_is_bracketed_and_capped(norm):
    """In 30 dimensions: the certified radius <= the exact distance <= the closed-form one; no
    white-box PGD succeeds below the exact distance; ``max_size`` leaves the sizes below it
    unchanged and only sizes at least as large above it."""
    rng = np.random.default_rng(0)  # 4 classes of 4 neighbouring clusters each, like digits
    centres = np.clip(np.repeat(rng.uniform(0.2, 0.8, size=(4, 30)), 4, 0)
                      + 0.1 * rng.normal(size=(16, 30)), 0, 1)  # fmt: skip
    mapping = np.repeat(np.arange(4), 4)
    x = np.clip(centres[rng.integers(0, 16, 60)] + 0.2 * rng.normal(size=(60, 30)), 0, 1)
    kwargs = dict(mapping=mapping, norm=norm, target="other-class", bounds=(0.0, 1.0))
    exact = KMeansMinimalAttack(centres, exact=True, **kwargs)(torch.as_tensor(x)).distances.numpy()
    closed = KMeansMinimalAttack(centres, **kwargs)(torch.as_tensor(x)).distances.numpy()
    certified = kmeans_certified_radius(centres, x, norm, mapping=mapping, bounds=(0.0, 1.0))
    assert np.all(certified <= exact + 1e-9) and np.all(exact <= closed + 1e-12)
    assert np.mean(exact < closed - 1e-4) > 0.1
    own = mapping[np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), 1)]
    for scale in (0.98, 0.9):  # PGD on the same k-means, just inside each point's distance
        for i in np.flatnonzero(exact < closed - 1e-4)[:8]:
            pgd = KMeansPGD(centres, mapping, eps=float(exact[i]) * scale, max_iter=100, norm=norm,
                            random_start=True, random_state=i)  # fmt: skip
            adv = pgd(torch.as_tensor(x[i : i + 1]), torch.as_tensor(own[i : i + 1])).x_adv.numpy()
            moved = mapping[np.argmin(((adv[:, None] - centres[None]) ** 2).sum(-1), 1)]
            assert moved[0] == own[i]
    cap = float(np.median(exact))
    capped = KMeansMinimalAttack(centres, exact=True, max_size=cap, **kwargs)(torch.as_tensor(x))
    capped_d = capped.distances.numpy()
    np.testing.assert_array_equal(capped_d[exact <= cap], exact[exact <= cap])
    assert np.all(capped_d[exact > cap] >= cap)


def test_the_lazily_generated_program_equals_the_whole_one(monkeypatch):
    """With k = 80 the program starts from 16 of the 79 cell constraints and adds the violated
    ones: its optimum equals that of the program with all of them, and some cells need more
    than one round (so the generation itself is exercised)."""
    from scipy.optimize import linprog

    import advlab.attacks.evasion.kmeans_minimal as module

    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1, size=(80, 12))
    rounds = []
    monkeypatch.setattr(module, "linprog", lambda *a, **k: rounds.append(1) or linprog(*a, **k))

    def whole(x, j):
        d, sq, w = len(x), (centres**2).sum(1), centres - centres[j]
        rhs = (sq - sq[j]) / 2 - 1e-6 * np.abs(w).sum(1) - w @ x
        keep = np.arange(len(centres)) != j
        a_ub = np.vstack([np.c_[np.eye(d), -np.ones(d)], np.c_[-np.eye(d), -np.ones(d)],
                          np.c_[w[keep], np.zeros(keep.sum())]])  # fmt: skip
        fit = linprog(np.r_[np.zeros(d), 1.0], A_ub=a_ub, b_ub=np.r_[np.zeros(2 * d), rhs[keep]],
                      bounds=np.column_stack([np.r_[-x, 0], np.r_[1 - x, np.inf]]))  # fmt: skip
        return fit.x[-1] if fit.status == 0 else np.inf

    for _ in range(40):
        x, j = rng.uniform(0, 1, 12), int(rng.integers(80))
        size, z = module._cell_distance_linf(x, kmeans_cells(centres), j, (0.0, 1.0), 1e-6)
        assert size == pytest.approx(whole(x, j), abs=1e-9)
        assert np.abs(z - x).max() == pytest.approx(size, abs=1e-9)
    assert len(rounds) > 40


def test_the_l2_projection_equals_a_general_solver():
    """In L2 the cell's distance comes from the projection's dual (eq. D, lazily generated
    rows, k = 80 in 12-D): it equals SLSQP's projection onto the whole shrunk cell, and the
    point lies in the cell (within 1e-7 of the margin, inside the cell itself)."""
    from scipy.optimize import minimize

    import advlab.attacks.evasion.kmeans_minimal as module

    rng = np.random.default_rng(2)
    centres = rng.uniform(0, 1, size=(80, 12))
    sq = (centres**2).sum(1)

    def projection(x, w, rhs):
        cell = [{"type": "ineq", "fun": lambda v: rhs - w @ v, "jac": lambda v: -w}]
        fit = minimize(lambda v: (0.5 * ((v - x) ** 2).sum(), v - x), x, jac=True, method="SLSQP",
                       bounds=[(0, 1)] * 12, constraints=cell, options={"ftol": 1e-14})  # fmt: skip
        assert fit.success
        return np.linalg.norm(fit.x - x)

    for _ in range(12):
        x, j = rng.uniform(0, 1, 12), int(rng.integers(80))
        size, z = module._cell_distance_l2(x, kmeans_cells(centres), j, (0.0, 1.0), 1e-6)
        w = centres - centres[j]
        margin = 1e-6 * np.abs(w).sum(1)
        assert size == pytest.approx(projection(x, w, (sq - sq[j]) / 2 - margin), abs=1e-6)
        assert np.all(w @ z <= (sq - sq[j]) / 2 - margin + 1e-7) and np.all((z >= 0) & (z <= 1))
        assert np.argmin(((z - centres) ** 2).sum(1)) == j


def test_an_empty_cell_inside_the_box_is_skipped():
    """A cluster whose cell misses the box (its centre outside it) is never the answer."""
    import advlab.attacks.evasion.kmeans_minimal as module

    centres = np.array([[0.5, 0.5], [3.0, 3.0]])
    for distance in (module._cell_distance_linf, module._cell_distance_l2):
        cells = kmeans_cells(centres)
        assert distance(np.array([0.5, 0.5]), cells, 1, (0.0, 1.0), 1e-6) == (np.inf, None)
    with pytest.raises(ValueError, match="max_size"):
        KMeansMinimalAttack(np.eye(3), np.arange(3), "linf", "other-class", exact=True, max_size=-1)


def test_other_class_attack_changes_the_predicted_class():
    data = load_dataset("blobs", n_samples=300, centers=3, n_features=4, random_state=0)
    x = (data.data - data.data.min()) / (data.data.max() - data.data.min())
    km = KMeans(9, random_state=0).fit(x)
    mapping = majority_vote_mapping(km.labels_, data.labels, 9)
    atk = KMeansMinimalAttack(km, mapping, norm="l2", target="other-class")
    result = atk(torch.as_tensor(x[:50]))
    before = mapping[km.predict(x[:50])]
    after = mapping[km.predict(result.x_adv.numpy())]
    assert np.array_equal(result.success.numpy(), after != before) and result.success.all()
    lower = kmeans_certified_radius(km, x[:50], "l2", mapping=mapping)
    assert np.all(result.distances.numpy() >= lower - 1e-6)


def test_kmeans_classifier_and_pgd():
    data = load_dataset("digits", "train")
    km = KMeans(30, random_state=0).fit(data.data)
    mapping = majority_vote_mapping(km.labels_, data.labels, 30)
    clf = KMeansClassifier(km.cluster_centers_, mapping)
    x = torch.from_numpy(data.images[:200])
    assert np.array_equal(clf(x).argmax(1).numpy(), mapping[km.predict(data.data[:200])])
    y = torch.from_numpy(data.labels[:200])
    result = KMeansPGD(km, mapping, eps=0.3, max_iter=20)(x, y)
    attacked_acc = (mapping[km.predict(result.x_adv.flatten(1).numpy())] == y.numpy()).mean()
    assert attacked_acc < 0.2
    certified = kmeans_certified_radius(km, data.data[:200], "linf", mapping=mapping)
    correct = mapping[km.predict(data.data[:200])] == data.labels[:200]
    assert attacked_acc >= (correct & (certified > 0.3)).mean()  # the certificate is a lower bound


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_minimal_attack_projection_is_exact_when_the_box_binds(norm):
    """The closed-form step onto box ∩ H_ij equals the optimum of the convex program
    min ||z - x|| s.t. w.z >= b, 0 <= z <= 1 (an LP for L-inf, solved by scipy)."""
    from scipy.optimize import linprog, minimize

    rng = np.random.default_rng(7)
    centres = rng.uniform(0, 1, size=(4, 6))
    x = np.clip(centres[0] + 0.4 * rng.normal(size=(20, 6)), 0, 1)  # many coordinates at 0 or 1
    x[:, :2] = rng.choice([0.0, 1.0], size=(20, 2))
    atk = KMeansMinimalAttack(centres, norm=norm, overshoot=0.0)
    X = torch.as_tensor(x)
    own = torch.cdist(X, torch.as_tensor(centres)).argmin(1)
    cand = torch.stack([torch.tensor([j for j in range(4) if j != int(o)]) for o in own])
    z, size = atk._project(X, own, cand, atk.bounds)
    checked = 0
    for i in range(len(x)):
        for m in range(3):
            ci, cj = centres[int(own[i])], centres[int(cand[i, m])]
            w, b = cj - ci, 0.5 * (cj @ cj - ci @ ci)
            if norm == "linf":  # variables (z, t): min t, -w.z <= -b, |z - x| <= t
                d = len(w)
                a_ub = np.vstack([np.r_[-w, 0.0], np.c_[np.eye(d), -np.ones(d)],
                                  np.c_[-np.eye(d), -np.ones(d)]])  # fmt: skip
                b_ub = np.r_[-b, x[i], -x[i]]
                lp = linprog(np.r_[np.zeros(d), 1.0], a_ub, b_ub, bounds=[(0, 1)] * d + [(0, None)])
                best = lp.fun if lp.status == 0 else np.inf
            else:
                qp = minimize(lambda v, xi=x[i]: ((v - xi) ** 2).sum(), x[i], method="SLSQP",
                              bounds=[(0, 1)] * len(w),
                              constraints=[{"type": "ineq", "fun": lambda v, w=w, b=b: v @ w - b}],
                              options={"ftol": 1e-12, "maxiter": 500})  # fmt: skip
                best = np.sqrt(qp.fun) if qp.success and qp.x @ w >= b - 1e-8 else np.inf
            got = float(size[i, m])
            if np.maximum(w, 0).sum() < b:  # even the best corner of the box misses H_ij
                assert np.isinf(got)
            elif np.isfinite(best):
                assert got == pytest.approx(best, abs=1e-5), (i, m)
                assert float(z[i, m] @ torch.as_tensor(w)) >= b - 1e-9
                checked += 1
    assert checked >= 40


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_pgd_random_starts_do_not_depend_on_the_batch_size(digits_model, norm, eps):
    """The same seed gives the same examples in one batch or in batches of 7 (the L2 start drew
    its normals per batch: torch draws normals in blocks, so the starts moved with the batch's
    size); the starts are uniform in the ball."""
    model, x, y = digits_model
    x, y = x[:40], y[:40]
    whole = PGD(model, eps=eps, max_iter=5, norm=norm, random_state=0)(x, y)
    parts = PGD(model, eps=eps, max_iter=5, norm=norm, random_state=0, batch_size=7)(x, y)
    torch.testing.assert_close(parts.x_adv, whole.x_adv, atol=1e-5, rtol=0)
    assert torch.equal(parts.success, whole.success)
    start = PGD(model, eps=eps, max_iter=5, norm=norm, random_state=0)._random_delta
    radius = (start(torch.zeros(20000, 2)).norm(dim=1) if norm == "l2"
              else start(torch.zeros(20000, 2)).abs().amax(1))  # fmt: skip
    expected = 2 / 3 * eps  # E[eps U^(1/2)] in 2-d (L2); E[max(|u1|, |u2|)] = 2/3 eps (L-inf)
    assert float(radius.mean()) == pytest.approx(expected, rel=0.02)
    assert float(radius.max()) <= eps + 1e-6


def test_kmeans_pgd_takes_labels_of_classes_no_cluster_maps():
    """Five clusters of the 10 digits map to classes 0, 2, 3, 4 and 7: inputs labelled 8 or 9
    were refused ("y must lie in [0, 8)"). Their class has no cluster, as class 1's has none:
    they are attacked exactly as under label 1 (misclassified as they stand), and the other
    inputs get what PGD gives them alone."""
    data = load_dataset("digits", "train")
    km = KMeans(5, random_state=0).fit(data.data)
    mapping = majority_vote_mapping(km.labels_, data.labels, 5)
    assert mapping.max() == 7 and 1 not in mapping
    x, y = torch.from_numpy(data.images[:80]), torch.from_numpy(data.labels[:80])
    beyond = y > mapping.max()
    assert beyond.any() and not beyond.all()
    result = KMeansPGD(km, mapping, eps=0.1, max_iter=5)(x, y)
    as_one = KMeansPGD(km, mapping, eps=0.1, max_iter=5)(x[beyond], torch.ones_like(y[beyond]))
    assert torch.equal(result.x_adv[beyond], as_one.x_adv) and bool(result.success[beyond].all())
    alone = KMeansPGD(km, mapping, eps=0.1, max_iter=5)(x[~beyond], y[~beyond])
    assert torch.equal(alone.x_adv, result.x_adv[~beyond])
    assert torch.equal(alone.success, result.success[~beyond])
    flat = result.x_adv.reshape(len(x), -1).numpy()
    np.testing.assert_array_equal(result.pred.numpy(), mapping[km.predict(flat)])
