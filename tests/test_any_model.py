"""Attacks on the user's own model: 3 channels, 32 x 32, their own normalisation (Foolbox-style
wrapper), criteria objects, results on the input's device, readable reprs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from advlab.attacks.evasion import (
    FGSM,
    IFGSM,
    KA3,
    LBFGS,
    PGD,
    CarliniWagnerL2,
    DeepFool,
    KMeansMinimalAttack,
    KMeansPGD,
    Misclassification,
    TargetedMisclassification,
    TrueLabelRank,
)
from advlab.metrics import cw_ssim
from advlab.models import Model, build_model

MEAN, STD = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]


def _synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of RGB 32 x 32 images: a bright square in channel c at a class-specific
    place, on noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.3 * torch.rand(n, 3, 32, 32, generator=g)
    for i, c in enumerate(y.tolist()):
        x[i, c, 4 + 8 * c : 14 + 8 * c, 6:26] += 0.35
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def rgb_models():
    """The same trained network twice: normalising inside itself, and as Model(raw, mean, std)."""
    x, y = _synthetic(240, 0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        inside = build_model("small_cnn", 3, (3, 32, 32), mean=MEAN, std=STD)
    opt = torch.optim.Adam(inside.parameters(), lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(inside(x), y).backward()
        opt.step()
    inside.eval()
    raw = build_model("small_cnn", 3, (3, 32, 32))
    raw.load_state_dict({k: v for k, v in inside.state_dict().items() if "normalize" not in k},
                        strict=False)  # fmt: skip
    wrapped = Model(raw.eval(), bounds=(0, 1), preprocessing=dict(mean=MEAN, std=STD, axis=-3))
    xt, yt = _synthetic(12, 1)
    assert float((inside(xt).argmax(1) == yt).float().mean()) == 1.0
    return inside, wrapped, xt, yt


ATTACKS = {
    "fgsm": lambda m: FGSM(m, eps=0.3),
    "ifgsm-standardized": lambda m: IFGSM(m, eps=1.5, max_iter=5, eps_units="standardized"),
    "pgd-linf": lambda m: PGD(m, eps=0.3, max_iter=5, random_state=0),
    "pgd-l2": lambda m: PGD(m, eps=12.0, max_iter=5, norm="l2", random_state=0),
    "pgd-targeted": lambda m: PGD(
        m, eps=0.4, max_iter=5, random_state=0, criterion=TargetedMisclassification()
    ),
    "deepfool": lambda m: DeepFool(m, max_iter=20),
    "cw": lambda m: CarliniWagnerL2(m, binary_search_steps=3, steps=40, lr=0.05, initial_const=1.0),
    "lbfgs": lambda m: LBFGS(m, doublings=1, bisections=0, max_iter=4, batch_size=4),
    "ka3": lambda m: KA3(m, K=2, doublings=1, bisections=0, max_iter=4, batch_size=4),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_on_wrapper_equals_attack_on_self_normalising_model(rgb_models, name):
    inside, wrapped, x, y = rgb_models
    slow = name in ("lbfgs", "ka3")  # scipy-driven searches: a few images, a few iterations
    if slow:
        x, y = x[:4], y[:4]
    target = (y + 1) % 3 if name == "pgd-targeted" else None
    ours = (
        ATTACKS[name](wrapped)(x, y, target) if target is not None else ATTACKS[name](wrapped)(x, y)
    )
    ref = ATTACKS[name](inside)(x, y, target) if target is not None else ATTACKS[name](inside)(x, y)
    assert ours.x_adv.shape == (len(x), 3, 32, 32)
    torch.testing.assert_close(ours.x_adv, ref.x_adv, atol=1e-6, rtol=0)
    assert torch.equal(ours.success, ref.success)
    assert float(ours.x_adv.min()) >= 0 and float(ours.x_adv.max()) <= 1
    if not slow:  # (their success is tested on the digits model, with real budgets)
        assert ours.success.float().mean() > 0.3  # the attacks do work on this model
    assert ours.distances is not None and ours.distances.shape == (len(x),)


def test_standardized_eps_is_per_channel(rgb_models):
    _, wrapped, x, y = rgb_models
    x_adv = IFGSM(wrapped, eps=0.3, max_iter=3, eps_units="standardized").generate(x, y)
    per_channel = (x_adv - x).abs().amax(dim=(0, 2, 3))
    assert torch.all(per_channel <= 0.3 * torch.tensor(STD) + 1e-6)
    assert per_channel[1] < per_channel[2]  # std 0.2 vs 0.3


def test_cw_ssim_on_colour_images_is_the_mean_over_channels(rgb_models):
    _, _, x, _ = rgb_models
    noisy = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(
        0, 1
    )
    score = cw_ssim(x, noisy)
    per_channel = torch.stack([cw_ssim(x[:, c], noisy[:, c]) for c in range(3)], 1).mean(1)
    torch.testing.assert_close(score, per_channel)
    assert torch.allclose(cw_ssim(x, x), torch.ones(12), atol=1e-4)


def test_criteria_objects():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0]])
    y = torch.tensor([0, 2])
    assert Misclassification()(logits, y, None).tolist() == [False, True]
    assert TargetedMisclassification()(logits, y, torch.tensor([1, 1])).tolist() == [False, True]
    assert TrueLabelRank(2)(logits, y, None).tolist() == [False, True]
    ranks = torch.tensor([[1, -1], [0, 1]])  # sample 0 asks rank >= 2, sample 1 rank >= 3
    assert TrueLabelRank()(logits, y, ranks).tolist() == [False, False]
    with pytest.raises(ValueError, match="min_rank"):
        TrueLabelRank(0)


def test_results_stay_on_the_input_device_and_reprs_read_well(rgb_models):
    _, wrapped, x, y = rgb_models
    result = FGSM(wrapped, eps=0.05)(x, y)
    for t in (result.x_adv, result.success, result.pred, result.distances):
        assert t.device == x.device
    assert repr(FGSM(wrapped, eps=0.05)) == "FGSM(model=Model, eps=0.05)"
    text = repr(PGD(wrapped, eps=0.1, max_iter=3, criterion=TargetedMisclassification()))
    assert text == "PGD(model=Model, eps=0.1, max_iter=3, criterion=TargetedMisclassification())"


class _ChannelsLast(nn.Module):
    """A user's network on (N, H, W, C) images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x.permute(0, 3, 1, 2)).relu().mean((2, 3)))


@pytest.mark.parametrize("height", [3, 6])
def test_standardized_budgets_follow_a_channels_last_preprocessing_axis(height):
    """``preprocessing=dict(std=..., axis=-1)`` for (N, H, W, C) images: a standardized budget
    is eps * std_c along the last axis. It was shaped (C, 1, 1) whatever the axis, so with H
    != C the attack failed with a broadcasting error, and with H == C it silently spent eps *
    std_h per image row (0.2 in every channel here, where channel 0 allows 0.05)."""
    torch.manual_seed(0)
    std = torch.tensor([0.1, 0.2, 0.4])
    model = Model(_ChannelsLast().eval(), preprocessing=dict(mean=[0.5] * 3, std=std.tolist(),
                                                             axis=-1))  # fmt: skip
    x = torch.rand(6, height, height, 3)
    y = model(x).argmax(1)
    for attack in (FGSM(model, eps=0.5, eps_units="standardized"),
                   IFGSM(model, eps=0.5, max_iter=5, eps_units="standardized"),
                   PGD(model, eps=0.5, max_iter=5, eps_units="standardized", random_state=0)):  # fmt: skip
        moved = (attack(x, y).x_adv - x).abs().amax(dim=(0, 1, 2))
        assert bool((moved <= 0.5 * std + 1e-6).all()), (attack, moved)
        assert bool((moved >= 0.5 * std * 0.9).all()), (attack, moved)  # (the budget is used)


def test_preprocessing_stats_shaped_to_broadcast_are_taken_with_their_axis(rgb_models):
    """Mean and std held as tensors shaped to broadcast, as normalisation code often keeps
    them ((C, 1, 1), (1, C, 1, 1); (1, 1, 1, C) for channels last), give the model of the
    per-channel lists, their axis implied (they were refused: 'must be a number or one value
    per channel'); a shape that is not one axis of channels, or an axis they contradict, is
    named."""
    _, wrapped, x, _ = rgb_models
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    for m, s in ((mean.view(3, 1, 1), std.view(3, 1, 1)), (mean.view(1, 3, 1, 1), std)):
        shaped = Model(wrapped.module, preprocessing=dict(mean=m, std=s))
        assert shaped.axis == -3
        torch.testing.assert_close(shaped(x), wrapped(x), atol=0, rtol=0)
    last = _ChannelsLast().eval()
    nhwc = Model(last, preprocessing=dict(mean=mean.view(1, 1, 1, 3), std=std.view(1, 1, 1, 3)))
    listed = Model(last, preprocessing=dict(mean=MEAN, std=STD, axis=-1))
    assert nhwc.axis == -1
    images = x.permute(0, 2, 3, 1)
    torch.testing.assert_close(nhwc(images), listed(images), atol=0, rtol=0)
    for pre, message in (
        (dict(mean=torch.zeros(3, 2), std=1.0), r"broadcast along one axis.*\(3, 2\)"),
        (dict(mean=mean.view(3, 1, 1), std=1.0, axis=-1), "axis=-1, but .* axis -3"),
        (dict(mean=mean.view(3, 1, 1), std=std.view(1, 1, 3)), "different axes"),
    ):
        with pytest.raises(ValueError, match=message):
            Model(last, preprocessing=pre)


def test_ka3_compares_the_channels_of_channels_last_images():
    """K-A3's CW-SSIM term on (N, H, W, C) images with ``axis=-1``: the same examples as on the
    NCHW copy of the images through the same network (it compared the images' rows as
    channels: 'needs (N, C, H, W) images of at least 7 x 7, got (4, 8, 8, 3)')."""
    torch.manual_seed(0)
    last = _ChannelsLast().eval()

    class ChannelsFirst(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return last(x.permute(0, 2, 3, 1))

    pre = dict(mean=[0.5] * 3, std=[0.1, 0.2, 0.4])
    nhwc = Model(last, preprocessing=dict(pre, axis=-1))
    nchw = Model(ChannelsFirst(), preprocessing=dict(pre, axis=-3))
    x = torch.rand(4, 8, 8, 3)
    y = nhwc(x).argmax(1)
    kwargs = dict(K=2, doublings=1, bisections=1, max_iter=4, batch_size=4)
    ours = KA3(nhwc, **kwargs)(x, y)
    ref = KA3(nchw, **kwargs)(x.permute(0, 3, 1, 2), y)
    # (the same search up to rounding: the flattened pixels are summed in another order)
    torch.testing.assert_close(ours.x_adv.permute(0, 3, 1, 2), ref.x_adv, atol=1e-4, rtol=0)
    assert torch.equal(ours.success, ref.success) and bool(ours.success.any())


def test_a_model_that_returns_probabilities_is_warned_about(rgb_models):
    """A network ending in a softmax gets a warning naming the fix (log-probabilities and
    logits do not)."""
    _, wrapped, x, y = rgb_models
    for head, warned in ((nn.Softmax(1), True), (nn.LogSoftmax(1), False), (nn.Identity(), False)):
        model = Model(nn.Sequential(wrapped.module, head), preprocessing=dict(mean=MEAN, std=STD))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            FGSM(model, eps=0.01)(x[:2], y[:2])
        ours = [w for w in caught if "drop the final softmax" in str(w.message)]
        assert len(ours) == int(warned), (head, [str(w.message) for w in caught])
        assert all(w.filename == __file__ for w in ours)  # (it points at the user's call)


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_attacks_called_under_no_grad_or_inference_mode_compute_their_gradients(
    rgb_models, name, context
):
    """Evaluation code often runs inside ``torch.no_grad()`` or ``torch.inference_mode()``
    (inputs made there included): the attacks turn autograd on for themselves and give their
    usual result (each failed with 'element 0 of tensors does not require grad')."""
    _, wrapped, x, y = rgb_models
    x, y = x[:4], y[:4]
    target = (y + 1) % 3 if name == "pgd-targeted" else None
    extra = () if target is None else (target,)
    ref = ATTACKS[name](wrapped)(x, y, *extra)
    with getattr(torch, context)():
        inputs = x.clone()  # (an inference tensor under inference_mode)
        ours = ATTACKS[name](wrapped)(inputs, y, *extra)
    torch.testing.assert_close(ours.x_adv, ref.x_adv, atol=0, rtol=0)
    assert torch.equal(ours.success, ref.success)


def test_bad_inputs_are_named_before_any_work(rgb_models):
    _, wrapped, x, y = rgb_models
    with pytest.raises(ValueError, match="cannot take inputs of shape \\(1, 32, 32\\)"):
        FGSM(wrapped, eps=0.1)(x[:, :1], y)
    with pytest.raises(ValueError, match="bounds"):
        FGSM(wrapped, eps=0.1)(x * 2, y)
    with pytest.raises(ValueError, match=r"x holds 3 samples .* and y 1 label: a single image"):
        FGSM(wrapped, eps=0.1)(x[0], y[:1])  # (was: 'cannot take inputs of shape (32, 32)')
    with pytest.raises(ValueError, match=r"y must have shape \(12,\), got \(5,\)"):
        FGSM(wrapped, eps=0.1)(x, y[:5])
    one_logit = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1))
    with pytest.raises(ValueError, match="1 logit per sample"):
        PGD(one_logit, eps=0.1, max_iter=2)(x, torch.zeros(len(x), dtype=torch.long))
    for make, name in [
        (lambda: DeepFool(wrapped, overshoot=float("nan")), "overshoot"),
        (lambda: PGD(wrapped, eps=float("inf"), max_iter=2, norm="l2"), "eps"),
        (lambda: CarliniWagnerL2(wrapped, confidence=float("nan")), "confidence"),
        (lambda: CarliniWagnerL2(wrapped, initial_const=float("inf")), "initial_const"),
        (lambda: LBFGS(wrapped, initial_const=float("inf")), "initial_const"),
        (lambda: KA3(wrapped, ssim_weight=float("nan")), "ssim_weight"),
        (lambda: IFGSM(wrapped, eps=0.1, max_iter=2, eps_step=-0.01), "eps_step"),
    ]:
        with pytest.raises(ValueError, match=name):
            make()


def test_kmeans_attacks_take_scikit_learn_kmeans_and_unbounded_data():
    from sklearn.cluster import KMeans as SKKMeans
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(200, centers=4, n_features=3, random_state=0)
    km = SKKMeans(4, n_init=1, random_state=0).fit(X)
    x = torch.from_numpy(X[:30])
    minimal = KMeansMinimalAttack(km, norm="l2", bounds=None)(x)
    assert bool(minimal.success.all())
    radius = np.asarray(minimal.distances)
    from advlab.attacks.evasion import kmeans_certified_radius

    np.testing.assert_allclose(radius, kmeans_certified_radius(km, X[:30], "l2"), rtol=1e-3)
    y = torch.from_numpy(km.predict(X[:30]))
    pgd = KMeansPGD(km, None, eps=float(2 * radius.max()), max_iter=30, norm="l2", bounds=None)(
        x.float(), y
    )
    assert pgd.success.float().mean() > 0.9


def test_kmeans_attacks_name_an_unfitted_kmeans_and_unbounded_data_in_the_default_box():
    from sklearn.cluster import KMeans as SKKMeans
    from sklearn.exceptions import NotFittedError

    from advlab.attacks.evasion import kmeans_certified_radius

    for make in (
        lambda: KMeansMinimalAttack(SKKMeans(3)),
        lambda: KMeansPGD(SKKMeans(3), None, eps=0.1, max_iter=2),
        lambda: kmeans_certified_radius(SKKMeans(3), np.zeros((2, 2))),
    ):
        with pytest.raises(NotFittedError):
            make()
    with pytest.raises(ValueError, match="a fitted k-means or a \\(k, D\\) array"):
        KMeansMinimalAttack(["not", "centres"])
    # a fitted pipeline with a step that is not affine and a fitted clusterer without centres
    # are named as such (scikit-learn's check called both unfitted)
    from sklearn.cluster import DBSCAN
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    points = np.random.default_rng(1).normal(size=(30, 2))
    pipe = make_pipeline(Normalizer(), SKKMeans(2, n_init=1, random_state=0)).fit(points)
    for victim, message in (
        (pipe, r"step 'normalizer' \(Normalizer\) is not affine"),
        (DBSCAN().fit(points), "DBSCAN has no"),
    ):
        for make in (
            lambda v=victim: KMeansMinimalAttack(v),
            lambda v=victim: KMeansPGD(v, None, eps=0.1, max_iter=2),
            lambda v=victim: kmeans_certified_radius(v, points),
        ):
            with pytest.raises(ValueError, match=message):
                make()
    X = np.random.default_rng(0).normal(size=(20, 2))
    km = SKKMeans(2, n_init=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match="bounds=\\(lo, hi\\) to your data's range"):
        KMeansMinimalAttack(km)(torch.from_numpy(X))
    for wrong in (torch.zeros(3, 5), torch.zeros(3)):  # features other than the centres'
        with pytest.raises(ValueError, match="with 2 features per row"):
            KMeansMinimalAttack(km, bounds=None)(wrong)


RANGE_ATTACKS = {  # budgets in input units, so scaled by the range
    "pgd-linf": lambda m, s: PGD(m, eps=0.3 * s, max_iter=5, random_state=0),
    "pgd-l2": lambda m, s: PGD(m, eps=12.0 * s, max_iter=5, norm="l2", random_state=0),
    "deepfool": lambda m, s: DeepFool(m, max_iter=20),
    "cw": lambda m, s: CarliniWagnerL2(m, binary_search_steps=3, steps=40, lr=0.05),
    "lbfgs": lambda m, s: LBFGS(m, doublings=2, bisections=1, max_iter=40, batch_size=4),
    "ka3": lambda m, s: KA3(m, K=2, doublings=2, bisections=1, max_iter=40, batch_size=4),
}


@pytest.mark.parametrize("name", sorted(RANGE_ATTACKS))
def test_attacks_give_the_same_examples_on_a_0_255_model(rgb_models, name):
    """The same network read on [0, 255] (bounds and preprocessing scaled by 255) is attacked
    into the same examples, scaled: no attack's constants assume inputs in [0, 1] (L-BFGS and
    K-A3 measured ||n||_2 in raw units, so their c search started 255 times too strong)."""
    _, wrapped, x, y = rgb_models
    x, y = x[:4], y[:4]
    raw = wrapped.module
    on_255 = Model(
        raw, bounds=(0, 255), preprocessing=dict(mean=[255 * m for m in MEAN],
                                                  std=[255 * s for s in STD], axis=-3),
    )  # fmt: skip
    ours = RANGE_ATTACKS[name](on_255, 255.0)(x * 255, y)
    ref = RANGE_ATTACKS[name](wrapped, 1.0)(x, y)
    assert torch.equal(ours.success, ref.success)
    assert bool(ref.success.any())
    if name in ("lbfgs", "ka3"):
        # L-BFGS-B's path turns on rounding: rescaling the images by 255 and back (a change
        # of 6e-8) moves these examples as much (up to 0.12 per pixel at equal norm), so
        # only the distances are compared; they agree to 0.5 %.
        torch.testing.assert_close(ours.distances / 255, ref.distances, atol=0, rtol=0.02)
    else:
        torch.testing.assert_close(ours.x_adv / 255, ref.x_adv, atol=2e-3, rtol=0)
        torch.testing.assert_close(ours.distances / 255, ref.distances, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("attack", ["lbfgs", "ka3", "deepfool"])
def test_minimisation_attacks_on_unbounded_inputs_find_the_linear_boundary(attack):
    """Tabular features with infinite bounds, a linear 3-class model. Leaving the label's
    region takes exactly min_k |(w_y - w_k) x + b_y - b_k| / ||w_y - w_k|| in L2, and making
    the runner-up t win takes at least that term for k = t. DeepFool reaches the first within
    10 % (its 2 % overshoot); L-BFGS and K-A3 (solved on the input itself: no unit box without
    finite bounds) succeed on every sample within 1.5 times the second (their cross-entropy
    objective stops past the boundary). They failed on every sample when they mapped unbounded
    inputs onto the unit box (inf / inf)."""
    torch.manual_seed(0)
    net = nn.Linear(5, 3).eval()
    model = Model(net, bounds=(-np.inf, np.inf))
    x = 3 * torch.randn(16, 5)
    with torch.no_grad():
        logits = net(x)
    y, t = logits.topk(2, dim=1).indices.unbind(1)  # the model's label and the runner-up
    w = net.weight.detach()
    gaps = logits.gather(1, y[:, None]) - logits  # f_y - f_k >= 0
    to_class = (gaps / (w[y][:, None] - w[None]).norm(dim=2)).masked_fill(
        torch.eye(3, dtype=torch.bool)[y], float("inf")
    )  # the L2 distance to each other class's half-space
    if attack == "deepfool":  # untargeted: the nearest other class
        result, minimal = DeepFool(model, overshoot=0.02)(x, y), to_class.min(1).values
    else:  # targeted at the runner-up
        cls = LBFGS if attack == "lbfgs" else KA3
        result = cls(model, **({"K": 1, "ssim_weight": 0.0} if attack == "ka3" else {}))(x, y)
        minimal = to_class.gather(1, t[:, None])[:, 0]
    assert bool(result.success.all())
    ratio = result.distances / minimal
    assert float(ratio.min()) >= 0.999 and float(ratio.max()) < (
        1.1 if attack == "deepfool" else 1.5
    )


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_compute_in_a_double_networks_dtype(rgb_models, name):
    """A user's ``.double()`` network is attacked from float32 images: the attacks compute in
    float64 (``model_dtype``) and find what they find on the float32 network (every attack
    failed on it with 'mat1 and mat2 must have the same dtype', reported as a shape problem)."""
    import copy

    _, wrapped, x, y = rgb_models
    x, y = x[:4], y[:4]
    double = Model(copy.deepcopy(wrapped.module).double(), bounds=(0, 1),
                   preprocessing=dict(mean=MEAN, std=STD, axis=-3))  # fmt: skip
    target = (y + 1) % 3 if name == "pgd-targeted" else None
    args = (x, y) if target is None else (x, y, target)
    ours, ref = ATTACKS[name](double)(*args), ATTACKS[name](wrapped)(*args)
    assert ours.x_adv.dtype == torch.float64
    assert ours.x_adv.min() >= 0 and ours.x_adv.max() <= 1
    assert bool(ref.success.any())
    assert int(ours.success.sum()) >= int(ref.success.sum()) - 1
    with torch.no_grad():  # the success reported is the double network's own verdict
        pred = double(ours.x_adv).argmax(1)
    assert torch.equal(pred, ours.pred)
    if name in ("deepfool", "cw"):  # (sign steps flip where a gradient entry is about 0, and
        both = ours.success & ref.success  # L-BFGS-B's path turns on rounding, see above)
        torch.testing.assert_close(
            ours.distances[both].float(), ref.distances[both], rtol=0.02, atol=0
        )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_on_a_low_precision_network_keep_their_budget(rgb_models, name, dtype):
    """A ``.half()`` or bfloat16 network is attacked in float32: the images, the steps and the
    projection stay in float32 and only the network's forward runs in its dtype, so an L-inf
    budget holds to float32 rounding (in bfloat16, ``x_adv`` came back 0.3027 from ``x`` at
    eps = 0.3: its 8-bit mantissa rounds every pixel) and ``x_adv`` has the images' dtype."""
    import copy

    _, wrapped, x, y = rgb_models
    x, y = x[:4], y[:4]
    low = Model(copy.deepcopy(wrapped.module).to(dtype), bounds=(0, 1),
                preprocessing=dict(mean=MEAN, std=STD, axis=-3))  # fmt: skip
    target = (y + 1) % 3 if name == "pgd-targeted" else None
    args = (x, y) if target is None else (x, y, target)
    attack = ATTACKS[name](low)
    ours = attack(*args)
    assert attack.dtype == torch.float32 and ours.x_adv.dtype == torch.float32
    assert ours.x_adv.min() >= 0 and ours.x_adv.max() <= 1
    eps = getattr(attack, "eps", None)  # (per channel for standardized units)
    if eps is not None and attack.norm == "linf":
        per_channel = (ours.x_adv - x).abs().amax(dim=(0, 2, 3))
        assert bool((per_channel <= torch.as_tensor(eps).flatten() + 1e-6).all())
    elif eps is not None:
        assert float((ours.x_adv - x).flatten(1).norm(dim=1).max()) <= eps * (1 + 1e-6)
    with torch.no_grad():  # the success reported is the low-precision network's own verdict
        pred = low(ours.x_adv).argmax(1)
    assert torch.equal(pred, ours.pred)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_inputs_that_require_grad_are_attacked_as_plain_inputs(rgb_models, name):
    """Images that carry autograd (the output of the user's own differentiable pipeline) give
    the attack's plain-input result, with no graph in it and no gradient left on them (C&W,
    L-BFGS and K-A3 failed on them: 'can't optimize a non-leaf Tensor', 'Can't call numpy()
    on Tensor that requires grad')."""
    _, wrapped, x, y = rgb_models
    x, y = x[:4], y[:4]
    leaf = x.clone().requires_grad_(True)
    target = (y + 1) % 3 if name == "pgd-targeted" else None
    extra = () if target is None else (target,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no 'Converting a tensor with requires_grad=True')
        ours = ATTACKS[name](wrapped)(leaf * 1.0, y, *extra)
    ref = ATTACKS[name](wrapped)(x, y, *extra)
    assert not ours.x_adv.requires_grad and not ours.distances.requires_grad
    assert leaf.grad is None
    torch.testing.assert_close(ours.x_adv, ref.x_adv, atol=0, rtol=0)
