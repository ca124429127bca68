"""L2 interval bounds (``norm="l2"`` of ``is_certified``, ``margin_lower_bounds``,
``certified_radius(method="interval")``, ``kmeans_is_certified`` and ``train_ibp``; eq. E of
``advlab.defenses.interval_bounds``): exact on a linear classifier and a k-means, sound on
networks of every kind interval bounds take (sampled points of the ball, L2 PGD), never looser
than the L-inf bounds of the same eps, the ellipsoid kept through a normalisation written in a
forward and not through a broadcast that repeats a coordinate, units as the rescaled network,
and certified training in L2 that certifies what plain training cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from advlab.attacks.evasion import kmeans_certified_radius
from advlab.cluster import KMeans
from advlab.defenses import (
    certified_accuracy,
    certified_radius,
    is_certified,
    kmeans_certified_radius_through,
    margin_lower_bounds,
    train_ibp,
)
from advlab.defenses.interval_bounds import _input_set, _layers, _repeats, _through
from advlab.models import Model, build_model
from tests.test_interval_bounds import ClampingNet, _residual, _users_net
from tests.test_l2_certificates import _digits, _linear_classifier
from tests.test_milp_verification import _net

TOL = 1e-3


def _in_ball(x: torch.Tensor, eps: float, g: torch.Generator, scale: object = 1.0) -> torch.Tensor:
    """Points x + scale * d with ||d||_2 = eps (half of them) or a random fraction of it."""
    d = torch.randn(x.shape, generator=g, dtype=x.dtype)
    d = d / d.flatten(1).norm(dim=1).reshape(-1, *[1] * (x.ndim - 1))
    length = torch.where(
        torch.rand(len(x), generator=g) < 0.5, 1.0, torch.rand(len(x), generator=g)
    )
    return x + eps * torch.as_tensor(scale, dtype=x.dtype) * d * length.reshape(
        -1, *[1] * (x.ndim - 1)
    )


def _margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        z = model(x)
    return z.gather(1, y[:, None]) - z


def _descended_margins(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, box: tuple, steps: int = 40
) -> torch.Tensor:
    """Per class j, the margin z_y - z_j at the end of ``steps`` normalised gradient steps
    that lower it inside the L2 ball of eps (projected, then clipped to the box, which keeps
    the point in the ball): points near the worst, where sampling rarely goes."""
    found = []
    for j in range(_margins(model, x[:1], y[:1]).shape[1]):
        delta = torch.zeros_like(x)
        for _ in range(steps):
            delta.requires_grad_(True)
            z = model(x + delta)
            (grad,) = torch.autograd.grad((z.gather(1, y[:, None])[:, 0] - z[:, j]).sum(), delta)
            with torch.no_grad():
                norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, *[1] * (x.ndim - 1))
                delta = delta - eps / 4 * grad / norm
                length = delta.flatten(1).norm(dim=1).reshape(-1, *[1] * (x.ndim - 1))
                delta = delta * (eps / length.clamp_min(eps))
                delta = (x + delta).clamp(*box) - x
        found.append(_margins(model, x + delta, y)[:, j])
    return torch.stack(found, 1)


def test_on_a_linear_classifier_the_l2_interval_certificate_is_exact():
    """A linear classifier on unbounded rows: eq. E is the margin's exact minimum over the
    ball, so the certificate holds 1 % below each row's distance to another class and fails
    1 % above, and the bisection's radius is that distance to the tolerance."""
    model, x, y, exact = _linear_classifier()
    for i in range(len(x)):
        row, label = x[i : i + 1], y[i : i + 1]
        assert bool(is_certified(model, row, label, 0.99 * exact[i], norm="l2")[0])
        assert not bool(is_certified(model, row, label, 1.01 * exact[i], norm="l2")[0])
    eps_max = float(exact.max()) * 1.1
    radius = certified_radius(model, x, y, eps_max, "interval", norm="l2", tol=TOL)
    np.testing.assert_allclose(radius, exact, atol=TOL * eps_max)
    assert np.all(radius <= exact)


def test_the_ellipsoid_goes_through_preprocessing_and_flatten_exactly():
    """Images through a per-channel preprocessing, Flatten and a Linear head, the bounds far
    away: the worst point of the ball, x - eps S^2 v / ||S v|| for v = (W_y - W_j) / std and
    S the units, reaches the margin's lower bound (to float32 rounding), with and without
    units."""
    torch.manual_seed(1)
    std = torch.tensor([0.2, 0.3, 0.4]).reshape(3, 1, 1)
    head = nn.Linear(3 * 4 * 4, 5)
    model = Model(nn.Sequential(nn.Flatten(), head).eval(), bounds=(-50.0, 50.0),
                  preprocessing={"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.4]})  # fmt: skip
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    for units in (None, torch.tensor([1.0, 2.0, 0.5]).reshape(3, 1, 1)):
        scale = torch.ones(3, 1, 1) if units is None else units
        bound = margin_lower_bounds(model, x, y, 0.7, norm="l2", units=units).detach()
        for i in range(len(x)):
            for j in range(5):
                if j == int(y[i]):
                    continue
                v = (head.weight[y[i]] - head.weight[j]).detach().reshape(3, 4, 4) / std
                step = scale**2 * v / (scale * v).norm()
                worst = _margins(model, x[i : i + 1] - 0.7 * step, y[i : i + 1])[0, j]
                assert abs(float(worst - bound[i, j])) < 1e-4


@pytest.mark.parametrize("first", ["linear", "conv", "strided conv, units", "conv1d", "conv3d"])
def test_the_first_affine_layer_is_bounded_by_its_rows_dual_norm(first):
    """A network that is one affine layer, then Flatten (no Linear head to merge): every
    margin bound is lo_y - hi_j with the exact bounds of eq. E, c_i -+ eps ||r_i * s||_2, the
    rows r_i read off by autograd (independently of the convolution of s^2 with the squared
    kernel); the bounds far away."""
    torch.manual_seed(4)
    units = None
    if first == "linear":
        layer, x = nn.Linear(12, 5), torch.rand(3, 12)
    elif first == "conv1d":
        layer, x = nn.Conv1d(2, 3, 3, padding=1), torch.rand(3, 2, 6)
    elif first == "conv3d":
        layer, x = nn.Conv3d(2, 2, 2, padding=1), torch.rand(3, 2, 2, 3, 3)
    else:
        stride = 1 if first == "conv" else 2
        layer, x = nn.Conv2d(2, 2, 3, stride=stride, padding=1), torch.rand(3, 2, 4, 4)
        if first.endswith("units"):
            units = torch.tensor([0.5, 2.0]).reshape(2, 1, 1)
    model = Model(nn.Sequential(layer, nn.Flatten()).eval(), bounds=(-50.0, 50.0))
    scale = 1.0 if units is None else units
    centre = model(x).detach()
    rows = torch.autograd.functional.jacobian(lambda v: model(v)[0], x[:1])[:, 0]
    radius = 0.4 * (rows * scale).flatten(1).norm(dim=1)
    y = torch.zeros(3, dtype=torch.long)
    expected = (centre[:, :1] - radius[0]) - (centre + radius)
    bound = margin_lower_bounds(model, x, y, 0.4, norm="l2", units=units)
    assert torch.allclose(bound[:, 1:], expected[:, 1:], atol=1e-5)


@pytest.mark.parametrize(("mode", "padding", "stride"),
                         [("reflect", 1, 1), ("replicate", 2, 1), ("circular", 1, 2)])  # fmt: skip
def test_a_convolutions_repeated_borders_are_bounded_by_the_copies_they_make(mode, padding, stride):
    """A first convolution whose borders repeat pixels (reflected, replicated, circular): each
    output's L2 radius is at least its true row norm times eps (the rows read off by autograd,
    copies of a pixel summed), equals it where the window repeats no pixel (the interior; a
    circular border of 1 repeats none in a 3 x 3 window of 6 x 6 images; the corner of a
    reflected one repeats one 4 times, of a replicated one of 2 one 9 times), and the radii are
    well below those of the cube that holds the ball (the box the ellipsoid was read as
    before)."""
    torch.manual_seed(5)
    layer = nn.Conv2d(2, 3, 5 if padding == 2 else 3, stride=stride, padding=padding,
                      padding_mode=mode)  # fmt: skip
    model = Model(nn.Sequential(layer, nn.Flatten()).eval(), bounds=(-50.0, 50.0))
    x = torch.rand(1, 2, 6, 6)
    rows = torch.autograd.functional.jacobian(lambda v: model(v)[0], x)[:, 0].flatten(1)
    value = _through(_layers(model), _input_set(x, 0.3, None, (-50.0, 50.0), "l2"))
    radius = (value.hi - value.lo)[0].detach() / 2
    copies = torch.as_tensor(_repeats(layer, x)).flatten().repeat(3)  # (per output channel)
    true = 0.3 * rows.norm(dim=1)
    assert bool((radius >= true - 1e-5).all())
    assert float(copies.max()) == (1 if mode == "circular" else 4 if mode == "reflect" else 9)
    interior = copies == 1
    assert bool(interior.any()) and torch.allclose(radius[interior], true[interior], atol=1e-5)
    cube = 0.3 * rows.abs().sum(1)
    assert float(radius.mean()) < 0.7 * float(cube.mean())


class NormalisingNet(nn.Module):
    """A user's forward that standardises its inputs itself, then a functional convolution,
    ``2 * x`` on the left, a ReLU and a head: affine steps the ellipsoid goes through."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.3, 0.4]).reshape(1, 3, 1, 1))
        self.kernel = nn.Parameter(torch.randn(4, 3, 3, 3) * 0.3)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(2 * ((x - self.mean) / self.std), self.kernel, None, 1, 0)
        return self.fc(F.relu(h).flatten(1))


class CopyingNet(nn.Module):
    """A broadcast that repeats each pixel three times (one channel times three factors): not
    the ellipsoid of the input, which would bound the head's output too tightly."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 16, 2)
        with torch.no_grad():  # the same weights on every copy: the copies add up
            self.fc.weight.copy_(torch.randn(2, 1, 16).expand(2, 3, 16).reshape(2, 48))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x * torch.ones(1, 3, 1, 1)).flatten(1))


def _cases() -> dict[str, tuple[nn.Module, torch.Tensor, float]]:
    """Networks of every kind interval bounds take, inputs in their bounds, and an L2 eps."""
    g = torch.Generator().manual_seed(11)
    torch.manual_seed(0)
    reflect = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                            nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()  # fmt: skip
    torch.manual_seed(3)
    return {
        "zoo": (build_model("wong_small", 10, (1, 8, 8), mean=0.3, std=0.4).eval(),
                torch.rand(8, 1, 8, 8, generator=g), 0.3),
        "batch norm, [0, 255]": (_users_net(), 255 * torch.rand(6, 3, 8, 8, generator=g), 30.0),
        "residual": (_residual(), torch.rand(6, 3, 8, 8, generator=g), 0.3),
        "residual, scaled head": (_residual(True), torch.rand(6, 3, 8, 8, generator=g), 0.3),
        "clamping": (Model(ClampingNet().eval()), torch.rand(6, 3, 8, 8, generator=g), 0.3),
        "reflected borders": (reflect, torch.rand(6, 3, 8, 8, generator=g), 0.3),
        "normalising forward": (Model(NormalisingNet().eval()),
                                torch.rand(6, 3, 8, 8, generator=g), 0.3),
        "copying": (Model(CopyingNet().eval()), torch.rand(6, 1, 4, 4, generator=g), 0.5),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(_cases()))
def test_l2_margin_bounds_hold_every_sampled_point_and_beat_the_cube(name):
    """Every margin at 400 points of the L2 ball (half on its sphere, clipped to the bounds,
    which keeps them in the ball) and at the end of a gradient descent on it is above its
    bound; the bound is at least the L-inf bound of
    the same eps (the ball lies in the cube, and the cube's box is used too), and the bounds
    equal the margins at eps = 0."""
    model, x, eps = _cases()[name]
    lo, hi = model.bounds if isinstance(model, Model) else (0.0, 1.0)
    y = _margins(model, x, torch.zeros(len(x), dtype=torch.long)).argmin(1)  # (the top class)
    bound = margin_lower_bounds(model, x, y, eps, norm="l2")
    assert torch.allclose(margin_lower_bounds(model, x, y, 0.0, norm="l2"), _margins(model, x, y),
                          atol=1e-4)  # fmt: skip
    g = torch.Generator().manual_seed(12)
    for _ in range(400):
        sampled = _margins(model, _in_ball(x, eps, g).clamp(lo, hi), y)
        assert bool((sampled >= bound - 1e-4).all())
    assert bool((_descended_margins(model, x, y, eps, (lo, hi)) >= bound - 1e-4).all())
    cube = margin_lower_bounds(model, x, y, eps)
    assert bool((bound >= cube - 1e-4).all())


def test_the_worst_point_of_a_repeated_coordinate_is_bounded():
    """The copying network's margin is linear in x with the three copies' weights summed: its
    worst point of the ball (x - eps v / ||v||) stays above the bound, which the ellipsoid of
    the copies (three independent coordinates) would have broken."""
    model, x, eps = _cases()["copying"]
    fc = model.module.fc
    y = torch.zeros(len(x), dtype=torch.long)
    v = (fc.weight[0] - fc.weight[1]).detach().reshape(3, 16).sum(0).reshape(1, 4, 4)
    worst = _margins(model, x - eps * v / v.norm(), y)[:, 1]
    bound = margin_lower_bounds(Model(model.module, bounds=(-10.0, 10.0)), x, y, eps, norm="l2")
    assert bool((worst >= bound[:, 1] - 1e-5).all())


def test_a_normalisation_in_the_forward_keeps_the_ellipsoid():
    """The normalising forward bounds exactly as the same network with its standardisation as
    a Model's preprocessing, its factor 2 and convolution as a Conv2d layer: the ellipsoid
    went through the user's arithmetic to the convolution (its box would be looser)."""
    model, x, eps = _cases()["normalising forward"]
    net = model.module
    conv = nn.Conv2d(3, 4, 3, bias=False)
    conv.weight.data = 2 * net.kernel.detach()
    same = Model(nn.Sequential(conv, nn.ReLU(), nn.Flatten(), net.fc).eval(),
                 preprocessing={"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.4]})  # fmt: skip
    y = model(x).argmax(1)
    ours = margin_lower_bounds(model, x, y, eps, norm="l2")
    assert torch.allclose(ours, margin_lower_bounds(same, x, y, eps, norm="l2"), atol=1e-4)
    boxed = margin_lower_bounds(model, x, y, eps)
    assert bool((ours > boxed + 1e-3).sum() > ours.numel() // 2)


def test_l2_units_are_the_interval_certificate_of_the_rescaled_network():
    """With units s the ellipsoid ||delta / s||_2 <= eps on f is the L2 ball on
    g(x') = f(s x') at x' = x / s (s x' as a preprocessing of std 1 / s, which keeps the
    ellipsoid; the bounds far away): the same margin bounds; without the units they differ."""
    net = _net([3, 12, 4], seed=5)
    units = torch.tensor([0.5, 2.0, 1.0])
    x = torch.rand(20, 3, generator=torch.Generator().manual_seed(6))
    y = net(x).argmax(1)
    model = Model(net, bounds=(-50.0, 50.0))
    ours = margin_lower_bounds(model, x, y, 0.3, norm="l2", units=units)
    inner = Model(net, bounds=(-50.0, 50.0),
                  preprocessing={"mean": 0.0, "std": (1 / units).tolist(), "axis": -1})  # fmt: skip
    assert torch.allclose(ours, margin_lower_bounds(inner, x / units, y, 0.3, norm="l2"),
                          atol=1e-5)  # fmt: skip
    assert not torch.allclose(ours, margin_lower_bounds(model, x, y, 0.3, norm="l2"), atol=1e-3)


def test_a_kmeans_l2_interval_certificate_is_the_l2_voronoi_radius():
    """k-means (k = 12) on digit rows, alone and behind a scaler and PCA, on unbounded inputs:
    eq. V2 is exact, so the interval L2 radius is the L2 Voronoi radius to the bisection's
    tolerance and never above it; in the box [0, 1] it is never below it (the box can help)."""
    x, _ = _digits()
    flat = x.reshape(60, -1)
    for km in (KMeans(12, random_state=0),
               make_pipeline(StandardScaler(), PCA(10, random_state=0), KMeans(12, random_state=0))):  # fmt: skip
        km.fit(flat.numpy())
        voronoi = kmeans_certified_radius(km, flat.numpy(), "l2")
        eps_max = float(voronoi.max()) * 1.1
        ours = kmeans_certified_radius_through(km, flat, eps_max, bounds=(-np.inf, np.inf),
                                               method="interval", norm="l2", tol=TOL)  # fmt: skip
        np.testing.assert_allclose(ours, voronoi, atol=TOL * eps_max)
        assert np.all(ours <= voronoi + 1e-9)
        boxed = kmeans_certified_radius_through(km, flat, eps_max, bounds=(0.0, 1.0),
                                                method="interval", norm="l2", tol=TOL)  # fmt: skip
        assert np.all(boxed >= ours - TOL * eps_max)


def test_l2_certified_training_certifies_what_plain_training_cannot():
    """The same MLP on 600 8x8 digits (pixels in [0, 1]), trained 40 epochs plainly and against
    its L2 interval bounds at eps 0.5: on 400 held-out digits the certified accuracy at L2 0.5
    rises from 0 to over 20 % (29 % here), the clean accuracy staying above 80 %."""
    images, labels = load_digits(return_X_y=True)
    x, y = torch.from_numpy(images / 16).float(), torch.from_numpy(labels)
    plain, trained = _net([64, 64, 10], seed=1), _net([64, 64, 10], seed=1)
    common = {"epochs": 40, "lr": 3e-3, "batch_size": 50}
    train_ibp(plain, x[:600], y[:600], eps=0.0, ramp_epochs=0, kappa_end=1.0, **common)
    train_ibp(trained, x[:600], y[:600], eps=0.5, ramp_epochs=20, norm="l2", **common)
    held_out = x[600:1000], y[600:1000]
    assert certified_accuracy(trained, *held_out, 0.5, norm="l2") > 20
    assert certified_accuracy(plain, *held_out, 0.5, norm="l2") < 2
    assert certified_accuracy(trained, *held_out, 0.0) > 80


def test_certified_training_of_the_zoo_is_cached_per_recipe(tmp_path):
    """``train_certified_classifier``: the same recipe twice is one training (loaded the second
    time, the same weights, in another cache too), another norm or kappa_end another one; the
    model is in eval mode with its test accuracy; bad arguments are named."""
    from advlab.data import load_dataset
    from advlab.defenses import train_certified_classifier
    from advlab.utils.cache import Cache

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    cache = Cache(tmp_path / "a")

    def trained(**changes):
        recipe = {"eps": 0.3, "epochs": 2, "norm": "l2", "n_train": 200, "cache": cache} | changes
        return train_certified_classifier("mlp", train, test=test, **recipe)

    first, again = trained(), trained()
    assert not first.from_cache and again.from_cache
    assert (
        again.weights_sha256
        == first.weights_sha256
        == trained(cache=Cache(tmp_path / "b")).weights_sha256
    )
    assert not first.model.training and 0 < first.test_accuracy <= 100
    others = {trained(norm="linf").weights_sha256, trained(kappa_end=0.8).weights_sha256}
    assert first.weights_sha256 not in others and len(others) == 2
    for bad, message in (({"eps": 0.0}, "eps"), ({"norm": "l1"}, "norm='l1'"),
                         ({"kappa_end": 1.5}, "kappa_end"), ({"epochs": 0}, "epochs")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            trained(**bad)
