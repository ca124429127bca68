"""Interval bound propagation: sound bounds, tight at eps = 0, a certificate no attack breaks,
and certified training that certifies what plain training cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.evasion import PGD
from advlab.data import load_dataset
from advlab.defenses import (
    certified_accuracy,
    check_certifiable,
    check_verifiable,
    interval_bounds,
    is_certified,
    margin_lower_bounds,
    train_ibp,
)
from advlab.models import Model, build_model


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("wong_small", 10, (1, 8, 8), mean=0.3, std=0.4).eval()


def test_bounds_contain_every_output_in_the_box():
    net = _net()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 1, 8, 8, generator=g)
    eps = 0.05
    lo, hi = interval_bounds(net, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
    with torch.no_grad():
        for _ in range(50):
            z = net((x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1))
            assert bool((z >= lo - 1e-5).all() and (z <= hi + 1e-5).all())
        exact = net(x)
        lo0, hi0 = interval_bounds(net, x, x)
    assert torch.allclose(lo0, exact, atol=1e-5) and torch.allclose(hi0, exact, atol=1e-5)


def test_margin_bounds_are_sound_and_tight_at_zero():
    net = _net(2)
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(12, 1, 8, 8, generator=g), torch.randint(0, 10, (12,), generator=g)
    with torch.no_grad():
        z = net(x)
        margins = z.gather(1, y[:, None]) - z
        assert torch.allclose(margin_lower_bounds(net, x, y, 0.0), margins, atol=1e-5)
        bound = margin_lower_bounds(net, x, y, 0.03)
        for _ in range(50):
            zp = net((x + 0.03 * torch.sign(torch.randn(x.shape, generator=g))).clamp(0, 1))
            assert bool((zp.gather(1, y[:, None]) - zp >= bound - 1e-5).all())


def _users_net() -> Model:
    """A user's network beyond the zoo: 3 channels, batch norm with a negative scale, dropout,
    tanh, leaky ReLU, average pooling, its own preprocessing, inputs in [0, 255]."""
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.LeakyReLU(0.1), nn.AvgPool2d(2),
        nn.Conv2d(6, 4, 3), nn.Tanh(), nn.Flatten(), nn.Dropout(0.3), nn.Linear(16, 12),
        nn.BatchNorm1d(12), nn.Sigmoid(), nn.Linear(12, 5),
    )  # fmt: skip
    with torch.no_grad():  # running statistics and scales that are not the identity
        for bn in (net[1], net[9]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.2, 3.0)
            bn.weight.uniform_(-2.0, 2.0)
            bn.bias.uniform_(-0.5, 0.5)
    pre = {"mean": [120.0, 110.0, 100.0], "std": [60.0, 55.0, 70.0]}
    return Model(net.eval(), bounds=(0.0, 255.0), preprocessing=pre)


def test_bounds_of_a_users_network_with_batch_norm_and_preprocessing_are_sound():
    model = _users_net()
    g = torch.Generator().manual_seed(5)
    x, eps = 255 * torch.rand(10, 3, 8, 8, generator=g), 4.0
    check_certifiable(model, x)  # the layers in order are the model, preprocessing included
    lo, hi = interval_bounds(model, (x - eps).clamp(0, 255), (x + eps).clamp(0, 255))
    with torch.no_grad():
        for _ in range(50):
            z = model((x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 255))
            assert bool((z >= lo - 1e-4).all() and (z <= hi + 1e-4).all())
    assert bool((hi - lo > 0).all())  # not a degenerate box: eps reaches the logits


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_a_convolutions_own_padding_is_bounded_soundly(padding_mode):
    """Reflected, replicated and circular borders repeat input pixels: their radii are padded in
    the same way (padded with 0, the corners' outputs escaped the bounds by about 0.1)."""
    torch.manual_seed(8)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, padding_mode=padding_mode), nn.ReLU(),
        nn.Conv2d(3, 2, 3, padding=2, padding_mode=padding_mode), nn.Flatten(),
    ).eval()  # fmt: skip
    g = torch.Generator().manual_seed(9)
    x, eps = 0.2 + 0.6 * torch.rand(4, 2, 5, 5, generator=g), 0.1
    check_certifiable(net, x)
    lo, hi = interval_bounds(net, x - eps, x + eps)
    with torch.no_grad():
        for _ in range(200):  # vertices of the box, where an affine map's extremes lie
            z = net(x + eps * torch.sign(torch.randn(x.shape, generator=g)))
            assert bool((z >= lo - 1e-5).all() and (z <= hi + 1e-5).all())


class ResidualNet(nn.Module):
    """A user's network written as a module with its own forward: a residual block (conv, batch
    norm, skip connection), functional ReLU and pooling, ``view(x.size(0), -1)``, a head."""

    def __init__(self, scaled_head: bool = False) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 5)
        self.scaled_head = scaled_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)) + x)
        x = F.max_pool2d(x, 2)
        z = self.fc(x.view(x.size(0), -1))
        return 0.5 * z - 1.0 if self.scaled_head else z  # not a linear layer last: no elision


def _residual(scaled_head: bool = False) -> Model:
    torch.manual_seed(6)
    net = ResidualNet(scaled_head)
    with torch.no_grad():
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.weight.uniform_(-1.5, 1.5)
    return Model(net.eval(), preprocessing={"mean": 0.5, "std": 0.25})


@pytest.mark.parametrize("scaled_head", [False, True])
def test_a_users_module_with_a_skip_connection_is_traced_and_sound(scaled_head):
    """torch.fx traces the user's forward; the bounds hold every sampled output of the box,
    equal the logits at eps = 0, and the margin bounds hold every sampled margin (with the head
    merged when the network ends in its linear layer, from the logits' bounds when it does not)."""
    model = _residual(scaled_head)
    g = torch.Generator().manual_seed(7)
    x, eps = torch.rand(12, 3, 8, 8, generator=g), 0.02
    y = torch.randint(0, 5, (12,), generator=g)
    check_certifiable(model, x)
    lo, hi = interval_bounds(model, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
    bound = margin_lower_bounds(model, x, y, eps)
    with torch.no_grad():
        z = model(x)
        assert torch.allclose(margin_lower_bounds(model, x, y, 0.0), z.gather(1, y[:, None]) - z,
                              atol=1e-4)  # fmt: skip
        for _ in range(50):
            zp = model((x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1))
            assert bool((zp >= lo - 1e-4).all() and (zp <= hi + 1e-4).all())
            assert bool((zp.gather(1, y[:, None]) - zp >= bound - 1e-4).all())
    assert bool((hi - lo > 0).all())


class ClampingNet(nn.Module):
    """ReLU written as clamp, clip to a range, global average pooling as ``mean`` and a sum
    over channels: monotone operations in a user's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 6, 3, padding=1), nn.Linear(7, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).clamp(min=0)
        h = torch.clip(h, max=0.8)
        pooled = h.mean((2, 3))  # (N, 6)
        total = torch.sum(h.clamp_min(0.1), dim=(1, 2, 3), keepdim=False)[:, None]
        return self.fc(torch.cat([pooled, total / 100], 1))


def test_clamp_mean_and_sum_in_a_users_forward_are_sound():
    torch.manual_seed(3)
    model = Model(ClampingNet().eval())
    g = torch.Generator().manual_seed(4)
    x, eps = torch.rand(10, 3, 8, 8, generator=g), 0.05
    check_certifiable(model, x)
    lo, hi = interval_bounds(model, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
    with torch.no_grad():
        for _ in range(100):
            zp = model((x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1))
            assert bool((zp >= lo - 1e-5).all() and (zp <= hi + 1e-5).all())
    assert bool((hi - lo > 0).all())

    class ClampByInput(nn.Module):  # a limit that is itself bounded: not monotone in x alone
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.clamp(x, min=-x).flatten(1)

    with pytest.raises(ValueError, match="unsupported operation 'clamp'"):
        check_certifiable(ClampByInput(), torch.rand(3, 4))


def test_what_interval_bounds_cannot_follow_is_named():
    class Branching(nn.Module):  # control flow on the data: no graph to trace
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    class Squaring(nn.Module):  # a product of two bounded values
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x * x).flatten(1)

    with pytest.raises(ValueError, match=r"torch\.fx cannot trace it"):
        check_certifiable(Branching(), torch.rand(3, 4))
    with pytest.raises(ValueError, match="unsupported operation 'mul'"):
        check_certifiable(Squaring(), torch.rand(3, 4))
    swapped = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    swapped.forward = lambda x: -nn.Sequential.forward(swapped, x)  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="do not compute the model's output"):
        check_certifiable(swapped, torch.rand(3, 4))
    with pytest.raises(ValueError, match="training mode"):
        interval_bounds(
            _users_net().module.train(), torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8) + 1
        )
    by_batch = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False),
                             nn.ReLU(), nn.Linear(3, 2)).eval()  # fmt: skip
    for check in (check_certifiable, check_verifiable):  # batch statistics in eval mode too
        with pytest.raises(ValueError, match="without running statistics"):
            check(by_batch, torch.rand(3, 4))


def test_unsupported_layer_and_bad_input_are_named():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.Unflatten(1, (4, 1)),
                        nn.LPPool1d(2, 1), nn.Flatten(), nn.Linear(4, 2))  # fmt: skip
    with pytest.raises(ValueError, match="unsupported layer LPPool1d"):
        margin_lower_bounds(net, torch.rand(3, 4), torch.zeros(3, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="eps"):
        margin_lower_bounds(_net(), torch.rand(3, 1, 8, 8), torch.zeros(3, dtype=torch.long), -1)
    with pytest.raises(ValueError, match="lower <= upper"):
        interval_bounds(_net(), torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))


def test_certified_training_certifies_what_plain_training_cannot():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    x, y = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    xt, yt = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    eps = 0.05
    plain, robust = _net(4).train(), _net(4).train()
    train_ibp(plain, x, y, eps=0.0, epochs=10, ramp_epochs=0, kappa_end=1.0, batch_size=64)
    history = train_ibp(robust, x, y, eps=eps, epochs=10, ramp_epochs=4, batch_size=64)
    assert history.eps[-1] == pytest.approx(eps) and history.kappa[-1] == pytest.approx(0.5)
    cert_plain = certified_accuracy(plain, xt, yt, eps)
    cert_robust = certified_accuracy(robust, xt, yt, eps)
    assert cert_robust > cert_plain + 20
    # the certificate is a lower bound: PGD never breaks a certified sample
    attacked = PGD(robust, eps=eps, max_iter=20)(xt, yt)
    with torch.no_grad():
        robust_acc = 100.0 * float((robust(attacked.x_adv).argmax(1) == yt).float().mean())
        assert cert_robust <= robust_acc + 1e-6


def test_a_users_module_is_traced_once_for_every_batch_and_budget(monkeypatch):
    """Certifying 4 batches at 3 budgets traces the residual module once, not per call."""
    traced = []
    real = torch.fx.symbolic_trace
    monkeypatch.setattr(torch.fx, "symbolic_trace", lambda m: traced.append(m) or real(m))
    model = _residual()
    x, y = torch.rand(64, 3, 8, 8), torch.randint(0, 5, (64,))
    for eps in (0.001, 0.01, 0.02):
        is_certified(model, x, y, eps, batch_size=16)
    assert traced == [model.module]


def test_a_models_own_bounds_clip_the_ball_and_other_boxes_are_refused():
    """A ``Model`` read on [0, 255] is certified in its own box: before, the ball was clipped
    to the default (0, 1) and certified images PGD breaks in [0, 255]."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    model = Model(net, bounds=(0, 255), preprocessing=dict(mean=[90, 100, 110], std=50, axis=-3))
    x = torch.rand(200, 3, 2, 2, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 5.0
    certified = is_certified(model, x, y, eps)
    assert torch.equal(certified, is_certified(model, x, y, eps, bounds=(0, 255)))
    assert 0.2 < float(certified.float().mean()) < 0.9  # neither vacuous nor trivial
    broken = PGD(model, eps=eps, max_iter=40, random_state=0)(x, y).success
    assert not bool((certified & broken).any())
    with pytest.raises(
        ValueError, match=r"bounds=\[0, 1\] differ from the Model's bounds \[0, 255\]"
    ):
        is_certified(model, x, y, eps, bounds=(0, 1))
    with pytest.raises(
        ValueError, match=r"x must lie in \[0, 1\]; got range \[.*, 25.*inputs. box"
    ):
        certified_accuracy(net, x, y, eps)


def test_labels_as_arrays_and_inputs_that_require_grad_are_taken():
    """Labels as a numpy array or a list give the tensor's certificates (IBP failed with
    "'numpy.ndarray' object has no attribute 'split'"), bad labels are named, and inputs that
    carry autograd are certified and verified (linear bounds and the programs failed with
    "Can't call numpy() on Tensor that requires grad")."""
    from advlab.defenses import is_certified_linear, train_ibp, verify_linf

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.rand(20, 3, 2, 2)
    y = net(x).argmax(1)
    eps = 0.05
    reference = is_certified(net, x, y, eps)
    assert 0 < int(reference.sum()) < 20  # both outcomes occur
    for labels in (y.numpy(), y.tolist()):
        assert torch.equal(is_certified(net, x, labels, eps), reference)
    for bad, message in (([0] * 19, r"shape \(20,\)"), ([0.5] * 20, "integer class labels"),
                         ([-1] + [0] * 19, "non-negative"), ([3] + [0] * 19, r"\[0, 3\)")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            is_certified(net, x, bad, eps)
    carried = x.clone().requires_grad_(True) * 1.0
    assert torch.equal(is_certified(net, carried, y, eps), reference)
    linear = is_certified_linear(net, carried, y, eps)
    assert torch.equal(linear, is_certified_linear(net, x, y, eps)) and bool(
        (linear >= reference).all()
    )
    status = verify_linf(net, carried[:5], y[:5], eps).status
    assert np.array_equal(status, verify_linf(net, x[:5], y[:5], eps).status)
    assert np.isfinite(train_ibp(net, x, y.tolist(), eps, epochs=1).loss).all()
