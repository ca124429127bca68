"""Seeded, cached certified training of the model zoo: ``train_certified_classifier`` trains a
zoo network against its interval bounds (``train_ibp``, Gowal et al. 2018, eq. 12) over L-inf
boxes or L2 balls, and keeps its weights in the artefact cache (key: architecture, data
checksum and every training hyper-parameter), as ``advlab.models.train_classifier`` does for
plain training: a second call loads instead of training.
"""

from __future__ import annotations

import torch

from advlab.attacks.evasion.base import check_norm
from advlab.data.datasets import Dataset
from advlab.defenses.interval_bounds import train_ibp
from advlab.models.train import TrainedModel, accuracy, initial_model, state_arrays
from advlab.models.zoo import Stat
from advlab.utils.cache import Cache, arrays_sha256
from advlab.utils.validation import check_device, check_number

IBP_TRAINER_VERSION = "1"


def train_certified_classifier(
    name: str,
    train: Dataset,
    eps: float,
    epochs: int,
    norm: str = "linf",
    ramp_epochs: int | None = None,
    kappa_end: float = 0.5,
    test: Dataset | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    cache: Cache | None = None,
    mean: Stat = 0.0,
    std: Stat = 1.0,
    n_train: int | None = None,
) -> TrainedModel:
    """Train zoo model ``name`` on ``train`` against its interval bounds at radius ``eps``
    (``train_ibp``: Adam, batches of 100, eps and the clean loss's weight ramped over the
    first ``ramp_epochs`` epochs); cached.

    Parameters
    ----------
    name : str
        Zoo model (see ``advlab.models.build_model``).
    train : Dataset
        Training images.
    eps : float
        Training radius, > 0, in input units (in ``norm``).
    epochs : int
        Passes over the training images, >= 1.
    norm : {"linf", "l2"}, default="linf"
        The ball trained against.
    ramp_epochs : int or None, default=None
        Epochs of the ramp, >= 0; None: half of ``epochs``.
    kappa_end : float, default=0.5
        Weight of the clean loss after the ramp, in [0, 1].
    test : Dataset or None, default=None
        Images for ``test_accuracy``; None skips it.
    seed : int, default=0
        Seed of the initial weights, the batch order and the subset.
    device : str or torch.device, default='cpu'
        Where to train.
    cache : Cache or None, default=None
        Artefact cache; None uses the default folder.
    mean : float or sequence of float, default=0.0
        The model's input normalisation mean (a number or per-channel list).
    std : float or sequence of float, default=1.0
        Its std.
    n_train : int or None, default=None
        Train on this many training images drawn with ``seed``; None: all.

    Returns
    -------
    TrainedModel
        The model in eval mode, its accuracy and hashes.
    """
    eps = check_number("eps", eps, 0.0, low_open=True)
    epochs = int(check_number("epochs", epochs, 1, integer=True))
    ramp = epochs // 2 if ramp_epochs is None else ramp_epochs
    ramp = int(check_number("ramp_epochs", ramp, 0, integer=True))
    kappa_end = check_number("kappa_end", kappa_end, 0.0, 1.0)
    check_norm(norm)
    check_device(device)
    if train.images is None:
        raise ValueError(f"{train.name} has no images; the model zoo needs image data")
    x, y = torch.from_numpy(train.images).float(), torch.from_numpy(train.labels).long()
    cache = cache or Cache()
    parts = {"arch": name, "data": train.sha256, "epochs": epochs, "eps": eps,
             "ramp_epochs": ramp, "seed": seed, "normalization": [mean, std],
             "subset": n_train, "trainer": "ibp"}  # fmt: skip
    if norm != "linf":
        parts["norm"] = norm
    if kappa_end != 0.5:
        parts["kappa_end"] = kappa_end
    model = initial_model(name, x, y, seed, mean, std)
    stored = cache.load("weights", parts, IBP_TRAINER_VERSION)
    from_cache = stored is not None
    if stored is None:
        if n_train is not None:
            pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
            x, y = x[pick[:n_train]], y[pick[:n_train]]
        train_ibp(model.to(device), x, y, eps, epochs=epochs, ramp_epochs=ramp,
                  kappa_end=kappa_end, seed=seed, norm=norm)  # fmt: skip
        stored = state_arrays(model)
        cache.save("weights", parts, IBP_TRAINER_VERSION, stored)
    else:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in stored.items()})
    model.to(device).eval()
    acc = accuracy(model, test, device) if test is not None else None
    key = cache.key("weights", parts, IBP_TRAINER_VERSION)
    return TrainedModel(model, name, acc, key, from_cache, arrays_sha256(stored))
