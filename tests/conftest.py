"""Shared fixtures. Tests never download: ADVLAB_OFFLINE is forced, the cache is a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

DATA_ROOT = os.environ.get("ADVLAB_DATA")


def has_idx(dataset: str) -> bool:
    return bool(DATA_ROOT) and (Path(DATA_ROOT) / dataset / "train-images-idx3-ubyte.gz").is_file()  # type: ignore[arg-type]


needs_mnist = pytest.mark.skipif(
    not has_idx("mnist"), reason="set ADVLAB_DATA to a folder with mnist/"
)
needs_fashion = pytest.mark.skipif(
    not has_idx("fashion-mnist"), reason="set ADVLAB_DATA to a folder with fashion-mnist/"
)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ADVLAB_OFFLINE", "1")
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("ADVLAB_QUIET", "1")


@pytest.fixture(scope="session")
def digits_model():
    """Logistic regression on the 8x8 digits, trained in a second (a real, accurate model)."""
    torch.manual_seed(0)
    from advlab.data import load_dataset

    train = load_dataset("digits", "train")
    x, y = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    test = load_dataset("digits", "test")
    xt, yt = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    assert (model(xt).argmax(1) == yt).float().mean() > 0.9
    return model, xt, yt


class Call(nn.Module):
    """A function called in a user's forward on its input (traced by torch.fx as that function,
    with its arguments)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def trained_on_digits(make, n: int = 16) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """``make()``'s network trained on the first 500 8x8 digits, 4 classes (the digit mod 4;
    seeded, 100 full-batch Adam steps at 1e-2), in eval mode; n held-out digits from the
    1,000th on, (n, 1, 8, 8) in [0, 1], and the network's labels of them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images / 16).float()[:, None]
    torch.manual_seed(0)
    net = make()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        optimiser.zero_grad()
        nn.functional.cross_entropy(net(images[:500]),
                                    torch.from_numpy(digits.target[:500] % 4)).backward()  # fmt: skip
        optimiser.step()
    net.eval()
    x = images[1000 : 1000 + n]
    with torch.no_grad():
        return net, x, net(x).argmax(1)


def run_config(experiment: str, tmp_path: Path, config: dict, executor=None) -> dict:
    """Run ``experiment`` with ``config`` into ``tmp_path / "run"`` (its cache in
    ``tmp_path / "cache"``) and return the ``results.json`` it wrote."""
    import json

    from advlab.experiments import Cache, get_experiment, run_experiment, validate_config

    exp = get_experiment(experiment)
    run_experiment(exp, validate_config(exp.config_cls, config), tmp_path / "run",
                   Cache(tmp_path / "cache"), quiet=True, executor=executor)  # fmt: skip
    return json.loads((tmp_path / "run" / "results.json").read_text())
