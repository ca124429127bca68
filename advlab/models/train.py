"""Seeded, cached, resumable training of the model zoo.

The trained weights go through the artefact cache (key: architecture, dataset checksum and
every training hyper-parameter) as safetensors, so a second call loads instead of training.
While training, a checkpoint is written after every epoch (``torch.save``, read back with
``weights_only=True``: no pickle), so an interrupted run resumes at the last finished epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from advlab.data.datasets import Dataset
from advlab.models.wrapper import autograd_enabled, eval_mode
from advlab.models.zoo import Classifier, Stat, build_model
from advlab.utils.cache import Cache, arrays_sha256
from advlab.utils.io import atomic_write_bytes
from advlab.utils.progress import progress
from advlab.utils.validation import check_device, check_number

TRAINER_VERSION = "1"


@dataclass
class TrainedModel:
    """A trained classifier and what identifies it.

    Attributes
    ----------
    model : Classifier
        The network, in eval mode.
    name : str
        Its zoo name.
    test_accuracy : float or None
        Top-1 accuracy in % on the test set given, or None.
    cache_key : str
        Key of the training recipe in the cache.
    from_cache : bool
        Whether the weights were loaded rather than trained.
    weights_sha256 : str
        Hash of the weights themselves: what anything derived from the model (adversarial
        pools, defenses) is keyed by.
    """

    model: Classifier
    name: str
    test_accuracy: float | None
    cache_key: str
    from_cache: bool
    weights_sha256: str


def _images(ds: Dataset) -> torch.Tensor:
    if ds.images is None:
        raise ValueError(f"{ds.name} has no images; the model zoo needs image data")
    return torch.from_numpy(ds.images)


@torch.no_grad()
def accuracy(
    model: nn.Module, ds: Dataset, device: str | torch.device = "cpu", batch_size: int = 1000
) -> float:
    """Top-1 accuracy (%) of ``model`` on ``ds``.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier.
    ds : Dataset
        An image dataset.
    device : str or torch.device, default='cpu'
        Where to evaluate.
    batch_size : int, default=1000
        Images per forward pass.

    Returns
    -------
    float
        Top-1 accuracy in %.
    """
    x, y = _images(ds), torch.from_numpy(ds.labels)
    correct = 0
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size].to(device))
            correct += int((logits.argmax(1).cpu() == y[start : start + batch_size]).sum())
    return 100.0 * correct / len(x)


def train_classifier(
    name: str,
    train: Dataset,
    test: Dataset | None = None,
    epochs: int = 2,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    cache: Cache | None = None,
    schedule: str = "constant",
    mean: Stat = 0.0,
    std: Stat = 1.0,
    noise_sigma: float = 0.0,
) -> TrainedModel:
    """Train zoo model ``name`` on ``train`` with Adam and cross-entropy; cached and resumable.

    ``schedule``: ``"constant"`` learning rate or ``"cosine"`` (annealed to 0 over all steps).
    ``mean``, ``std``: the model's input normalisation (numbers or per-channel lists; the
    caller's data statistics, none by default). The global torch RNG is left untouched: the
    initial weights are drawn inside ``torch.random.fork_rng`` seeded by ``seed``.

    Parameters
    ----------
    name : str
        Zoo model (see build_model).
    train : Dataset
        Training images.
    test : Dataset or None, default=None
        Images for test_accuracy; None skips it.
    epochs : int, default=2
        Passes over train, >= 1.
    batch_size : int, default=128
        Images per step.
    lr : float, default=1e-3
        Adam's learning rate, > 0.
    seed : int, default=0
        Seed of the initial weights and the batch order.
    device : str or torch.device, default='cpu'
        Where to train.
    cache : Cache or None, default=None
        Artefact cache; None uses the default folder.
    schedule : {'constant', 'cosine'}, default='constant'
        Learning-rate schedule (cosine: annealed to 0 over all steps).
    mean : float or sequence of float, default=0.0
        Input normalisation mean (the caller's data statistics).
    std : float or sequence of float, default=1.0
        Input normalisation std.
    noise_sigma : float, default=0.0
        Std of Gaussian noise added to every training batch (in input units, unclipped; drawn
        from a generator seeded by (seed, epoch)): the base classifier of randomized smoothing
        (Cohen et al. 2019 train theirs so). 0: no noise.

    Returns
    -------
    TrainedModel
        The model in eval mode, its accuracy and hashes.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(
            f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}"
        )
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule={schedule!r}: use 'constant' or 'cosine'")
    check_device(device)
    noise_sigma = check_number("noise_sigma", noise_sigma, 0.0)
    x, y = _images(train), torch.from_numpy(train.labels)
    cache = cache or Cache()
    parts = {"arch": name, "data": train.sha256, "epochs": epochs, "batch_size": batch_size,
             "lr": lr, "seed": seed, "optimizer": "adam"}  # fmt: skip
    if schedule != "constant":
        parts["schedule"] = schedule
    if mean != 0.0 or std != 1.0:
        parts["normalization"] = [mean, std]
    if noise_sigma:
        parts["noise_sigma"] = noise_sigma
    if torch.device(device).type == "cpu":
        # CPU kernels split their float sums by thread, so the weights trained at another
        # thread count differ (small_cnn on MNIST, measured): they are another artefact.
        parts["threads"] = torch.get_num_threads()
    key = cache.key("weights", parts, TRAINER_VERSION)
    model = initial_model(name, x, y, seed, mean, std)
    stored = cache.load("weights", parts, TRAINER_VERSION)
    from_cache = stored is not None
    if stored is None:
        checkpoint = cache.root / "checkpoints" / f"{key}.pt"
        _fit(model, x, y, epochs, batch_size, lr, seed, device, checkpoint, schedule, noise_sigma)
        stored = state_arrays(model)
        cache.save("weights", parts, TRAINER_VERSION, stored)
        checkpoint.unlink(missing_ok=True)
    else:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in stored.items()})
    model.to(device).eval()
    acc = accuracy(model, test, device) if test is not None else None
    return TrainedModel(model, name, acc, key, from_cache, arrays_sha256(stored))


def initial_model(
    name: str, x: torch.Tensor, y: torch.Tensor, seed: int, mean: Stat, std: Stat
) -> Classifier:
    """Zoo model ``name`` for the inputs x and labels y (one class per label up to the
    largest) with its initial weights, drawn inside ``torch.random.fork_rng`` seeded by
    ``seed``: they depend on the seed only, and the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(name, int(y.max()) + 1, tuple(x.shape[1:]), mean, std)


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The state dict as numpy arrays, for the cache and for ``arrays_sha256``; a tensor of a
    dtype numpy lacks (a user's bfloat16 or float8 network) as its bytes, under its name, torch
    dtype and shape (so the digest tells it from another tensor of the same bytes)."""
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        try:
            state[name] = tensor.numpy()
        except TypeError:  # "Got unsupported ScalarType BFloat16"
            key = f"{name}@{tensor.dtype}{tuple(tensor.shape)}"
            state[key] = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
    return state


@autograd_enabled()  # (the caller may be under torch.no_grad)
def _fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str | torch.device,
    checkpoint: Path,
    schedule: str = "constant",
    noise_sigma: float = 0.0,
) -> None:
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(x) // batch_size)
    first_epoch = _resume(model, optimizer, checkpoint)
    scheduler = None
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=epochs * steps_per_epoch
        )
        for _ in range(first_epoch * steps_per_epoch):  # fast-forward after a resume
            scheduler.step()
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(first_epoch, epochs):
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(x)))
        noise = torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
        )
        batches = range(0, len(x), batch_size)
        for begin in progress(batches, desc=f"epoch {epoch + 1}/{epochs}"):
            idx = order[begin : begin + batch_size]
            optimizer.zero_grad(set_to_none=True)
            inputs = x[idx]
            if noise_sigma:  # Gaussian augmentation: the base classifier of smoothing
                inputs = inputs + noise_sigma * torch.randn(inputs.shape, generator=noise)
            loss = loss_fn(model(inputs.to(device)), y[idx].to(device))
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        _save_checkpoint(model, optimizer, epoch + 1, checkpoint)


def _save_checkpoint(
    model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, path: Path
) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(
        {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer
    )
    atomic_write_bytes(path, buffer.getvalue())


def _resume(model: nn.Module, optimizer: torch.optim.Optimizer, path: Path) -> int:
    """Load the last per-epoch checkpoint, if any; returns the epoch to start from."""
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"])
