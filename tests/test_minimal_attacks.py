from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks.evasion import CarliniWagnerL2, DeepFool, TargetedMisclassification


def test_deepfool_is_exact_on_a_linear_model():
    torch.manual_seed(0)
    model = nn.Linear(20, 4)
    with torch.no_grad():
        model.weight.mul_(5.0)
    x = 0.4 + 0.2 * torch.rand(64, 20)  # far from the box faces
    with torch.no_grad():
        z = model(x)
    k0 = z.argmax(1)
    w = model.weight
    diff_w = w[None] - w[k0][:, None, :]
    diff_f = z - z.gather(1, k0[:, None])
    dist = diff_f.abs() / diff_w.norm(dim=2).clamp(min=1e-12)
    dist[torch.arange(64), k0] = float("inf")
    exact = dist.min(1).values  # distance to the nearest decision boundary
    result = DeepFool(model, overshoot=0.02)(x, k0)
    inside = ((result.x_adv > 0) & (result.x_adv < 1)).all(1)
    assert bool(result.success.all()) and inside.float().mean() > 0.9
    norm = (result.x_adv - x).norm(dim=1)
    torch.testing.assert_close(norm[inside], (1.02 * exact)[inside], rtol=1e-3, atol=1e-3)


def test_deepfool_linearises_only_its_candidate_classes(monkeypatch):
    """On a 200-class linear model DeepFool with 5 candidates takes 5 backward passes per
    step (not 200) and finds the nearest boundary among the 5 top classes; candidates=None
    linearises every class."""
    torch.manual_seed(0)
    model = nn.Linear(20, 200)
    x = 0.4 + 0.2 * torch.rand(16, 20)
    with torch.no_grad():
        z = model(x)
    k0 = z.argmax(1)
    calls = []
    grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or grad(*a, **k))
    result = DeepFool(model, max_iter=1, overshoot=0.0, candidates=5)(x, k0)
    assert len(calls) == 5  # one step of the batch: one backward pass per candidate
    top5 = z.topk(5, dim=1).indices
    w = model.weight
    diff_f = z.gather(1, top5) - z.gather(1, k0[:, None])
    diff_w = w[top5] - w[k0][:, None, :]
    dist = diff_f.abs() / diff_w.norm(dim=2).clamp(min=1e-12)
    dist[:, 0] = float("inf")
    norm = (result.x_adv - x).norm(dim=1)
    inside = ((result.x_adv > 0) & (result.x_adv < 1)).all(1)
    torch.testing.assert_close(norm[inside], dist.min(1).values[inside], rtol=1e-3, atol=1e-3)
    calls.clear()
    DeepFool(model, max_iter=1, candidates=None)(x, k0)
    assert len(calls) == 200  # None: every class linearised
    with pytest.raises(ValueError, match="candidates"):
        DeepFool(model, candidates=1)


def test_deepfool_on_digits(digits_model):
    model, x, y = digits_model
    correct = model(x).argmax(1) == y
    result = DeepFool(model)(x[correct], y[correct])
    assert result.success.float().mean() > 0.95
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    assert float((result.x_adv - x[correct]).flatten(1).norm(dim=1).mean()) < 2.0


def test_deepfool_finds_torchattacks_examples_on_a_relu_network():
    """A ReLU MLP trained on the digits: where torchattacks' DeepFool (3.5.1, same steps and
    overshoot) breaks an image, advlab's does too, at the same L2 distance within 0.5 %."""
    torchattacks = pytest.importorskip("torchattacks")
    from advlab.data import load_dataset
    from advlab.models import build_model

    torch.manual_seed(0)
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    model = build_model("mlp", 10, (1, 8, 8))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    x, y = torch.from_numpy(test.images[:60]), torch.from_numpy(test.labels[:60])
    keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    ours = DeepFool(model, max_iter=50, overshoot=0.02)(x, y)
    theirs = torchattacks.DeepFool(model, steps=50, overshoot=0.02)(x, y)
    broke = model(theirs).argmax(1) != y
    assert int(broke.sum()) >= 10 and bool(ours.success[broke].all())
    distance = (theirs - x).flatten(1).norm(dim=1)
    torch.testing.assert_close(ours.distances[broke], distance[broke], rtol=5e-3, atol=0)


@pytest.mark.parametrize("targeted", [False, True])
def test_carlini_wagner_l2(digits_model, targeted):
    model, x, y = digits_model
    x, y = x[:60], y[:60]
    correct = model(x).argmax(1) == y
    x, y = x[correct], y[correct]
    target = (y + 1) % 10 if targeted else None
    atk = CarliniWagnerL2(
        model,
        binary_search_steps=5,
        steps=100,
        lr=0.05,
        criterion=TargetedMisclassification() if targeted else None,
    )
    result = atk(x, y, target)
    assert result.success.float().mean() > 0.9
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    if targeted:
        assert bool((result.pred[result.success] == target[result.success]).all())
    else:  # C&W finds perturbations no larger than DeepFool's on average
        deepfool = DeepFool(model)(x, y)
        cw_norm = (result.x_adv - x).flatten(1).norm(dim=1)[result.success].mean()
        df_norm = (deepfool.x_adv - x).flatten(1).norm(dim=1)[deepfool.success].mean()
        assert cw_norm <= 1.1 * df_norm


def test_carlini_wagner_aborts_early_when_the_loss_stalls(digits_model):
    model, x, y = digits_model
    x, y = x[:20], y[:20]
    calls = []
    counted = nn.Sequential(model)
    counted.register_forward_hook(lambda *_: calls.append(1))
    results = {}
    for abort in (False, True):
        calls.clear()
        atk = CarliniWagnerL2(counted, binary_search_steps=2, steps=200, lr=0.05, abort_early=abort)
        results[abort] = (atk(x, y), len(calls))
    (full, n_full), (early, n_early) = results[False], results[True]
    assert n_early < 0.8 * n_full  # the loss stalls long before 200 steps on this small model
    assert early.success.float().mean() >= full.success.float().mean() - 0.1


def test_bad_parameters(digits_model):
    model = digits_model[0]
    with pytest.raises(ValueError, match="max_iter"):
        DeepFool(model, max_iter=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        CarliniWagnerL2(model, lr=0.0)
    with pytest.raises(ValueError, match="binary_search_steps"):
        CarliniWagnerL2(model, binary_search_steps=0)


def test_lbfgs_solves_with_one_scipy_blas_thread(digits_model, monkeypatch):
    """OpenBLAS threads busy-waiting beside torch's made L-BFGS 3-4x slower at 2 threads."""
    from threadpoolctl import threadpool_info

    import advlab.attacks.evasion.lbfgs as lbfgs
    from advlab.utils.perf import pinned_threads

    def blas_threads() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    seen, real_minimize = [], lbfgs.minimize

    def minimize(*args, **kwargs):
        seen.append(blas_threads())
        return real_minimize(*args, **kwargs)

    monkeypatch.setattr(lbfgs, "minimize", minimize)
    model, x, y = digits_model
    with pinned_threads(2):
        lbfgs.LBFGS(model, doublings=1, bisections=0, max_iter=5)(x[:4], y[:4])
        assert blas_threads() == {2}
    assert seen and all(s == {1} for s in seen)


def test_lbfgs_targets_the_second_ranked_label(digits_model):
    from advlab.attacks.evasion import LBFGS

    model, x, y = digits_model
    x, y = x[:25], y[:25]
    with torch.no_grad():
        second = model(x).topk(2, dim=1).indices[:, 1]
    result = LBFGS(model, doublings=4, bisections=3, max_iter=50)(x, y)
    assert result.success.float().mean() > 0.9
    assert bool((result.pred[result.success] == second[result.success]).all())
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    # minimal-perturbation attack: small L2 changes on the 64-pixel digits
    norms = (result.x_adv - x).flatten(1).norm(dim=1)[result.success]
    assert float(norms.mean()) < 3.0
    # generate goes through LBFGS.__call__, so it keeps the 2nd-ranked target
    atk = LBFGS(model, doublings=4, bisections=3, max_iter=50)
    assert torch.allclose(atk.generate(x, y), result.x_adv)
