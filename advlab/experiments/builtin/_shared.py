"""Pieces shared by the k-means evasion experiments: the surrogate, a mapped k-means and
cached pools of adversarial images.

Adversarial pools: the surrogate is fixed and I-FGSM without random start is deterministic, so
the attacked version of each image at each eps is computed once, stored in the artefact cache
(float16: |error| <= 2.4e-4 on [0, 1] pixels, far below any eps used) and reused by every
repetition, every eta and every run. Images are attacked in index-aligned chunks of
``POOL_CHUNK`` (one batch each), and each chunk at each eps is a cache entry of its own: only the
chunks asked for are attacked, and workers filling different chunks of one pool at once never
write the same file (two computing the same chunk write identical bytes, atomically).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.attacks.evasion import IFGSM, TargetedMisclassification, eps_to_pixels
from advlab.cluster import KMeans, clustering_accuracy, majority_vote_mapping
from advlab.data import Dataset, load_dataset
from advlab.experiments.runner import RunContext
from advlab.models import train_classifier
from advlab.utils.cache import Cache

# 2: images are attacked in whole index-aligned chunks of POOL_CHUNK (one batch each), so an
# image's adversarial version never depends on which other images were requested with it (batch
# composition changes float rounding): a pool is bit-identical whoever fills it, in any order.
# 3: one cache entry per chunk (the values are those of version 2)
POOL_VERSION = "3"
POOL_CHUNK = 256


def surrogate(
    ctx: RunContext,
    name: str,
    epochs: int,
    device: str,
    dataset: str = "mnist",
    schedule: str = "constant",
    normalization: tuple[float, float] = (0.0, 1.0),
) -> tuple[nn.Module, str, float | None]:
    """The surrogate classifier, trained on ``dataset`` (train split) once and cached, with the
    input ``normalization`` (mean, std) of the experiment's config; returns (model, the hash
    of its weights, which keys everything derived from it, test accuracy)."""
    train, test = load_dataset(dataset, "train"), load_dataset(dataset, "test")
    ctx.record_dataset(train)
    trained = train_classifier(
        name, train, test, epochs=epochs, seed=0, device=device, cache=ctx.cache, schedule=schedule,
        mean=normalization[0], std=normalization[1],
    )  # fmt: skip
    ctx.log.info(
        "surrogate %s: %s test accuracy %.2f %% (cached: %s)",
        name,
        dataset,
        trained.test_accuracy,
        trained.from_cache,
    )
    return trained.model, trained.weights_sha256, trained.test_accuracy


def fit_mapped_kmeans(
    data: np.ndarray, labels: np.ndarray, k: int, seed: int, device: str, init: Any = "k-means++"
) -> tuple[KMeans, np.ndarray]:
    """k-means on ``data`` (labels unseen), then the majority-vote mapping from ``labels``."""
    km = KMeans(k, init=init, random_state=seed, device=device).fit(data)
    return km, majority_vote_mapping(km.labels_, labels, k)


def mapped_accuracy(km: KMeans, mapping: np.ndarray, data: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy (%) of k-means + mapping on ``data``."""
    return 100.0 * clustering_accuracy(labels, km.predict(data), mapping)


@dataclass(frozen=True)
class AttackSpec:
    """I-FGSM through the surrogate: eps in ``eps_units``, step eps * ``step_ratio``,
    ``max_iter`` steps; ``target_seed`` set = targeted at random wrong classes."""

    eps_units: str = "standardized"
    max_iter: int = 10
    step_ratio: float = 0.25
    target_seed: int | None = None


class AdversarialPool:
    """Cached adversarial versions of one dataset's images under one attack and surrogate."""

    def __init__(
        self, cache: Cache, model: nn.Module, model_key: str, ds: Dataset, spec: AttackSpec
    ) -> None:
        if ds.images is None:
            raise ValueError(f"{ds.name} has no images to attack")
        self.cache, self.model, self.model_key, self.ds, self.spec = (
            cache,
            model,
            model_key,
            ds,
            spec,
        )
        self.attacked_images = 0  # how many images this object sent through the surrogate

    def _parts(self, eps: float) -> dict[str, Any]:
        return {
            "data": self.ds.sha256,
            "surrogate": self.model_key,
            "eps": round(eps, 10),
            **self.spec.__dict__,
        }

    def _targets(self) -> np.ndarray:
        assert self.spec.target_seed is not None
        rng = np.random.default_rng(self.spec.target_seed)
        shift = rng.integers(1, self.ds.n_classes, size=len(self.ds))
        return (self.ds.labels + shift) % self.ds.n_classes

    @property
    def n_chunks(self) -> int:
        """Chunks of ``POOL_CHUNK`` images (the last one may be shorter)."""
        return -(-len(self.ds) // POOL_CHUNK)

    def _chunk(self, eps: float, c: int) -> np.ndarray:
        """Chunk ``c`` at ``eps`` (float16), from the cache or attacked and stored."""
        parts = {**self._parts(eps), "chunk": c, "chunk_size": POOL_CHUNK}
        stored = self.cache.load("adv-pool", parts, POOL_VERSION)
        if stored is not None:
            return stored["x"]
        idx = np.arange(c * POOL_CHUNK, min((c + 1) * POOL_CHUNK, len(self.ds)))
        x = self._attack(idx, eps).astype(np.float16)
        self.cache.save("adv-pool", parts, POOL_VERSION, {"x": x})
        return x

    def fill(self, eps: float, chunks: range) -> int:
        """Attack (or find in the cache) ``chunks`` at ``eps``; returns the images they hold.
        A pool task of its own, so that many workers fill one pool in parallel."""
        return sum(len(self._chunk(eps, c)) for c in chunks)

    def get(self, eps: float, indices: np.ndarray | None = None) -> np.ndarray:
        """Adversarial images (float32, (len(indices), C, H, W)) at ``eps`` for ``indices``.

        Images not in the cache yet are attacked with the rest of their chunk (indices
        ``[c * POOL_CHUNK, (c + 1) * POOL_CHUNK)``, one batch), so the values do not depend on
        the request."""
        assert self.ds.images is not None
        idx = np.arange(len(self.ds)) if indices is None else np.asarray(indices)
        if eps == 0:
            return self.ds.images[idx]
        out = np.empty((len(idx), *self.ds.images.shape[1:]), dtype=np.float32)
        chunk_of = idx // POOL_CHUNK
        for c in np.unique(chunk_of):
            where = np.flatnonzero(chunk_of == c)
            out[where] = self._chunk(eps, int(c))[idx[where] - c * POOL_CHUNK]
        return out

    def _attack(self, idx: np.ndarray, eps: float) -> np.ndarray:
        assert self.ds.images is not None
        spec = self.spec
        atk = IFGSM(
            self.model, eps=eps, max_iter=spec.max_iter, eps_step=eps * spec.step_ratio,
            eps_units=spec.eps_units, batch_size=POOL_CHUNK,
            criterion=TargetedMisclassification() if spec.target_seed is not None else None,
        )  # fmt: skip
        target = torch.from_numpy(self._targets()[idx]) if spec.target_seed is not None else None
        x_adv = atk.generate(
            torch.from_numpy(self.ds.images[idx]), torch.from_numpy(self.ds.labels[idx]), target
        )
        self.attacked_images += len(idx)
        return x_adv.cpu().numpy()

    def eps_pixels(self, eps: float) -> float:
        return float(
            eps_to_pixels(eps, self.spec.eps_units, getattr(self.model, "input_std", None))
        )
