"""CW-SSIM, image and attack-outcome metrics, K-A3 and the M-SVDD-D defense (Mygdalis et al.)."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import top_k_accuracy_score

from advlab.attacks.evasion import LBFGS
from advlab.attacks.evasion.ka3 import KA3
from advlab.data import load_dataset
from advlab.defenses.msvdd import MSVDDDefense, SVDDLayer
from advlab.metrics import (
    defense_outcomes,
    k_anonymity_holds,
    mse,
    pmf_from_ranks,
    rank_position_pmf,
    ssim,
    true_label_ranks,
)
from advlab.metrics.cw_ssim import cw_ssim


@pytest.fixture(scope="module")
def digit_images():
    return torch.from_numpy(load_dataset("digits", "test").images[:40]).float()


def _smooth_images(n: int = 6) -> torch.Tensor:
    """Blurred random blobs on 28 x 28 (structure at the pyramid's scales)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2)
    return (x - x.amin((2, 3), keepdim=True)) / (
        x.amax((2, 3), keepdim=True) - x.amin((2, 3), keepdim=True)
    )


def test_cw_ssim_identity_shift_and_noise():
    x = _smooth_images()
    assert torch.allclose(cw_ssim(x, x), torch.ones(len(x)), atol=1e-4)
    shifted = torch.roll(x, 1, dims=-1)
    assert float(cw_ssim(x, shifted).mean()) > float(ssim(x, shifted).mean()) + 0.05
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    values = [
        float(cw_ssim(x, (x + s * noise).clamp(0, 1)).mean()) for s in (0.02, 0.05, 0.1, 0.2, 0.4)
    ]
    assert all(a > b for a, b in itertools.pairwise(values))
    y = x.clone().requires_grad_(True)
    (1 - cw_ssim(x, (y + 0.1 * noise).clamp(0, 1))).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


@pytest.mark.parametrize(("height", "width", "window"), [(28, 28, 7), (8, 12, 3), (9, 7, 7)])
def test_window_mean_is_avg_pool(height, width, window):
    from torch.nn import functional as F

    from advlab.metrics.cw_ssim import window_mean

    t = torch.randn(3, 4, height, width, generator=torch.Generator().manual_seed(0))
    expected = F.avg_pool2d(t, window, stride=1)
    assert window_mean(t, window).shape == expected.shape
    assert torch.allclose(window_mean(t, window), expected, atol=1e-6)


def test_cw_ssim_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        cw_ssim(torch.rand(2, 28, 28), torch.rand(3, 28, 28))
    with pytest.raises(ValueError, match="window"):
        cw_ssim(torch.rand(2, 5, 5), torch.rand(2, 5, 5))


def test_image_metrics(digit_images):
    x = digit_images
    with pytest.raises(ValueError, match="divide 8-bit images by 255"):
        ssim(x * 255, x * 255)
    assert torch.allclose(ssim(x, x), torch.ones(len(x)), atol=1e-5)
    assert torch.allclose(mse(x, x), torch.zeros(len(x)))
    y = (x + 0.1).clamp(0, 1)
    assert torch.allclose(mse(x, y), ((x - y) ** 2).flatten(1).mean(1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ssim(x, x * 2)


def test_rank_pmf_matches_top_k_accuracy_and_outcomes():
    rng = np.random.default_rng(0)
    scores, y = rng.normal(size=(500, 10)), rng.integers(0, 10, 500)
    pmf = rank_position_pmf(scores, y)
    assert pmf.sum() == pytest.approx(1.0)
    for k in (1, 2, 5, 9):
        assert pmf[:k].sum() == pytest.approx(
            top_k_accuracy_score(y, scores, k=k, labels=range(10))
        )
    assert true_label_ranks(np.array([[0.1, 0.9, 0.5]]), np.array([2]))[0] == 2
    np.testing.assert_allclose(pmf_from_ranks(np.array([2, 2, 3, 1]), 4), [0.25, 0.5, 0.25, 0])
    with pytest.raises(ValueError, match="ranks"):
        pmf_from_ranks(np.array([0, 2]), 4)
    assert k_anonymity_holds(np.array([0, 0.2, 0.2, 0.2, 0.2, 0.2]), 5)
    assert not k_anonymity_holds(np.array([0, 0.5, 0.5]), 5)
    out = defense_outcomes(np.array([1, 1, 10, 3]), np.array([1, 2, 0, 0]), adversarial_label=10)
    assert (out.asr, out.failed, out.detected) == (0.5, 0.25, 0.25)


def test_ka3_k1_without_ssim_is_lbfgs(digits_model):
    model, x, y = digits_model
    keep = model(x[:40]).argmax(1) == y[:40]
    x, y = x[:40][keep][:16], y[:40][keep][:16]
    settings = {"doublings": 3, "bisections": 2, "max_iter": 40}
    lbfgs = LBFGS(model, **settings)(x, y)
    ka3 = KA3(model, K=1, ssim_weight=0.0, **settings)(x, y)
    assert lbfgs.success_rate == 1.0
    second = model(x).topk(2, 1).indices[:, 1]
    assert torch.equal(lbfgs.pred, second)
    same = torch.isclose(ka3.x_adv, lbfgs.x_adv, atol=1e-5).flatten(1).all(1)
    assert same.float().mean() >= 0.9


def test_ka3_ssim_term_makes_examples_more_similar_when_weighted(digits_model):
    """At lambda = 0 K-A3 (K = 1) is L-BFGS; a weighted CW-SSIM term, inside the distortion
    or as its own term, buys structural similarity with a larger L2 perturbation."""
    model, x, y = digits_model
    keep = model(x[:60]).argmax(1) == y[:60]
    x, y = x[:60][keep][:16], y[:60][keep][:16]
    settings = {"doublings": 3, "bisections": 2, "max_iter": 40}
    plain = KA3(model, K=1, ssim_weight=0.0, **settings)(x, y)
    inside = KA3(model, K=1, ssim_weight=10.0, select_by="objective", **settings)(x, y)
    separate = KA3(model, K=1, ssim_weight=100.0, ssim_placement="separate",
                   select_by="objective", **settings)(x, y)  # fmt: skip
    similarity = [float(cw_ssim(x, r.x_adv).mean()) for r in (plain, inside, separate)]
    assert all(r.success_rate == 1.0 for r in (plain, inside, separate))
    assert similarity[1] > similarity[0] + 0.01 and similarity[2] > similarity[1]
    l2 = [float((r.x_adv - x).flatten(1).norm(dim=1).mean()) for r in (plain, separate)]
    assert l2[1] > l2[0]  # the price: a larger perturbation
    with pytest.raises(ValueError, match="ssim_placement"):
        KA3(model, ssim_placement="outside")
    with pytest.raises(ValueError, match="select_by"):
        KA3(model, select_by="ssim")


def test_ka3_rank_constraint_per_group(digits_model):
    model, x, y = digits_model
    keep = model(x[:80]).argmax(1) == y[:80]
    x, y = x[:80][keep][:30], y[:80][keep][:30]
    result = KA3(model, K=3, ssim_weight=0.0, doublings=3, bisections=2, max_iter=40)(x, y)
    assert result.success.float().mean() >= 0.9
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    ranks = true_label_ranks(model(result.x_adv), y)
    ok = result.success.numpy()
    assert torch.equal(result.group, KA3.split_groups(len(x), 3))
    assert (ranks[ok] >= result.group.numpy()[ok] + 1).all()  # y pushed below the g targets
    pmf = rank_position_pmf(model(result.x_adv), y)
    assert pmf[0] <= 0.1 and k_anonymity_holds(pmf, 3, tol=0.15)


def test_ka3_bad_input(digits_model):
    model, x, y = digits_model
    with pytest.raises(ValueError, match="K must be"):
        KA3(model, K=0)
    with pytest.raises(ValueError, match="classes"):
        KA3(model, K=10)(x[:4], y[:4])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        KA3(model, K=2, ssim_weight=0)(x[:4] + 2, y[:4])


def test_svdd_unit_matches_eq_10_by_hand():
    torch.manual_seed(0)
    layer = SVDDLayer(n_classes=2, n_features=3, n_projections=4, gamma=0.5)
    z = torch.randn(5, 3)
    beta = torch.tensor([0.9, 1.1])
    out = layer(z, beta).detach()
    for c in range(2):
        o, u, r = (t.detach().double() for t in (layer.projections[c], layer.u[c], layer.radius[c]))
        z = z.double()
        for i in range(5):
            k = torch.tensor(
                [np.exp(-0.5 * float(((z[i] - o[m]) ** 2).sum())) for m in range(4)],
                dtype=torch.float64,
            )
            gram = torch.tensor(
                [
                    [np.exp(-0.5 * float(((o[a] - o[b]) ** 2).sum())) for b in range(4)]
                    for a in range(4)
                ],
                dtype=torch.float64,
            )
            by_hand = beta[c] * r**2 - 1.0 + 2 * k @ u - u @ gram @ u
            assert float(out[i, c]) == pytest.approx(float(by_hand), abs=1e-5)


def test_msvdd_defense_classifies_and_flags_far_inputs():
    from advlab.models import build_model

    torch.manual_seed(0)
    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    x, y = torch.from_numpy(tr.images).float(), torch.from_numpy(tr.labels).long()
    xt, yt = torch.from_numpy(te.images).float(), torch.from_numpy(te.labels).long()
    model = build_model("mlp", 10, (1, 8, 8))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    before = [p.clone() for p in model.parameters()]
    d = MSVDDDefense(model, n_projections=64, epochs_positive=5, epochs_both=5, finetune_epochs=3,
                     finetune_lr=1e-3, batch_size=128, random_state=0).fit(x, y)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert float((d.linear_model()(xt).argmax(1) == yt).float().mean()) > 0.9
    pred = torch.as_tensor(d.predict(xt, "classification"))
    assert float((pred == yt).float().mean()) > 0.75
    assert d.adversarial_label == 10 and int(pred.max()) <= 10
    # inputs far from every class: uniform noise is flagged as the adversarial class
    noise = torch.rand(100, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    assert float((d.predict(noise, 1.0) == 10).mean()) > 0.9
    # a stricter beta verifies fewer inputs
    assert (d.predict(xt, 0.5) == 10).sum() >= (d.predict(xt, 1.0) == 10).sum()
    # the fit survives a safetensors round trip onto a fresh copy of the architecture
    from safetensors.torch import load, save

    restored = MSVDDDefense(build_model("mlp", 10, (1, 8, 8))).load_state_tensors(
        load(save(d.state_tensors()))
    )
    assert np.array_equal(restored.predict(xt, "defense"), d.predict(xt, "defense"))
    assert torch.allclose(restored.linear_model()(xt), d.linear_model()(xt))
    with pytest.raises(ValueError, match="lacks"):
        MSVDDDefense(model).load_state_tensors({"svdd.u": torch.zeros(1)})
    with pytest.raises(ValueError, match="v_a"):
        MSVDDDefense(model, v_a=0.1, v_p=0.01).fit(x, y)
    with pytest.raises(ValueError, match="scores per input"):
        MSVDDDefense(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))).fit(x, y)


def test_training_called_under_no_grad_trains_as_usual(tmp_path):
    """M-SVDD-D's fit, certified training and the zoo's cached training, called inside
    ``torch.no_grad()`` (as evaluation code often is): the same fit as outside it (each failed
    with 'element 0 of tensors does not require grad')."""
    from advlab.data import Dataset
    from advlab.defenses import train_ibp
    from advlab.models import train_classifier
    from advlab.utils import Cache

    tr = load_dataset("digits", "train")
    x, y = torch.from_numpy(tr.images[:200]), torch.from_numpy(tr.labels[:200]).long()

    def fits() -> tuple:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(),
                                  torch.nn.Linear(16, 10))  # fmt: skip
        ibp = train_ibp(net, x, y, 0.01, epochs=1, ramp_epochs=0).loss
        d = MSVDDDefense(copy.deepcopy(net), n_projections=8, epochs_positive=1, epochs_both=1,
                         finetune_epochs=1, random_state=0).fit(x, y)  # fmt: skip
        data = Dataset.from_arrays(tr.images[:200], tr.labels[:200])
        trained = train_classifier("mlp", data, epochs=1, cache=Cache(tmp_path / str(len(runs))))
        return ibp, d.predict(x, "defense"), trained.weights_sha256

    runs: list = []
    runs.append(fits())
    with torch.no_grad():
        runs.append(fits())
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]


def test_a_linear_backbone_is_defended_without_fine_tuning():
    """A linear model (its last linear layer reads the input, so the features are the input and
    depend on no parameter) is defended with a warning that there is nothing to fine-tune (the
    fine-tuning failed with 'element 0 of tensors does not require grad')."""
    tr = load_dataset("digits", "train")
    x, y = torch.from_numpy(tr.images[:200]), torch.from_numpy(tr.labels[:200]).long()
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    d = MSVDDDefense(linear, n_projections=8, epochs_positive=1, epochs_both=1, finetune_epochs=2,
                     random_state=0)  # fmt: skip
    with pytest.warns(UserWarning, match="nothing to fine-tune") as caught:
        d.fit(x, y)
    assert caught[0].filename == __file__ and d.history_["finetune_loss"] == []
    assert d.predict(x, "classification").shape == (200,)


def test_msvdd_defense_takes_a_double_network():
    """A user's ``.double()`` backbone is defended (its copy computes in float32, as the inputs
    do; the fit failed with 'mat1 and mat2 must have the same dtype'), the user's network is
    left in float64, and the fit survives a round trip onto a fresh double copy."""
    from safetensors.torch import load, save

    torch.manual_seed(0)
    tr = load_dataset("digits", "train")
    x, y = torch.from_numpy(tr.images[:300]).double(), torch.from_numpy(tr.labels[:300]).long()
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 10)).double()  # fmt: skip
    d = MSVDDDefense(net, n_projections=16, epochs_positive=2, epochs_both=2, finetune_epochs=1,
                     random_state=0).fit(x, y)  # fmt: skip
    assert next(net.parameters()).dtype == torch.float64
    pred = d.predict(x, "classification")
    assert pred.shape == (300,) and set(pred.tolist()) <= set(range(11))
    restored = MSVDDDefense(copy.deepcopy(net)).load_state_tensors(load(save(d.state_tensors())))
    assert np.array_equal(restored.predict(x, "defense"), d.predict(x, "defense"))
