"""Content-addressed cache for expensive artefacts (trained weights, adversarial pools).

An entry is a dict of numpy arrays stored with safetensors (no pickle), keyed by the
SHA-256 of everything that determines it: a ``kind``, the caller's ``parts`` (config subset,
data checksum, the hash of the weights that made it, ...) and the producer's code ``version``.
The file's safetensors metadata holds the SHA-256 of its own tensors (``arrays_sha256``),
so every load verifies the content: a truncated, emptied or altered file is reported with its
path, moved aside (``*.corrupt``) and treated as absent, so the caller recomputes it. Each
entry is one file written atomically, so two processes computing the same key at once both
write a complete, identical file and readers never see a mix. A JSON sidecar records the parts
for people.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advlab.utils.io import atomic_write_bytes, atomic_write_json

Arrays = dict[str, np.ndarray]
HASH_KEY = "advlab_sha256"


class CacheCorruptionWarning(UserWarning):
    """A cached file failed its check and was moved aside; it will be recomputed."""


def cache_dir() -> Path:
    """User cache root: ``$ADVLAB_CACHE`` or ``~/.cache/advlab``."""
    return Path(os.environ.get("ADVLAB_CACHE") or Path.home() / ".cache" / "advlab")


def arrays_sha256(arrays: Arrays) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def read_verified(path: Path) -> tuple[Arrays, dict[str, str]]:
    """Load a safetensors file written by advlab and check its content hash. Raises
    ``ValueError`` naming the file when it is unreadable or its content does not match."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: unreadable safetensors file ({exc})") from exc
    expected = meta.get(HASH_KEY)
    if expected is None:
        raise ValueError(
            f"{path}: no content hash in its metadata (written by advlab < 0.2, or not by advlab)"
        )
    if arrays_sha256(arrays) != expected:
        raise ValueError(f"{path}: content does not match its hash (the file was altered)")
    return arrays, meta


def write_verified(path: Path, arrays: Arrays, metadata: dict[str, str] | None = None) -> Path:
    """Write ``arrays`` atomically as safetensors with their content hash in the metadata."""
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    meta = {**(metadata or {}), HASH_KEY: arrays_sha256(arrays)}
    return atomic_write_bytes(path, save(arrays, metadata=meta))


def move_aside(path: Path, reason: str) -> Path:
    """Rename a damaged file to ``NAME.corrupt-<time>`` and warn with its path and reason."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d%H%M%S')}")
    try:
        path.replace(target)
    except OSError:
        target = path
    warnings.warn(f"{reason}; moved aside to {target.name}, it will be recomputed",
                  CacheCorruptionWarning, stacklevel=3)  # fmt: skip
    return target


@dataclass(frozen=True)
class VerifyReport:
    """``ok`` and ``bad`` entry paths of a cache check (``bad`` with the reason)."""

    ok: list[Path]
    bad: list[tuple[Path, str]]


class Cache:
    """Artefact store under ``root`` (default ``$ADVLAB_CACHE/artifacts`` or ``~/.cache/advlab/artifacts``).

    Parameters
    ----------
    root : str, Path or None, default=None
        The store's folder; None: $ADVLAB_CACHE/artifacts or ~/.cache/advlab/artifacts.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "artifacts"
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(kind: str, parts: dict[str, Any], version: str) -> str:
        blob = json.dumps(
            {"kind": kind, "version": version, "parts": parts}, sort_keys=True, default=str
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, kind: str, parts: dict[str, Any], version: str) -> Path:
        return self.root / kind / f"{self.key(kind, parts, version)}.safetensors"

    def load(self, kind: str, parts: dict[str, Any], version: str) -> Arrays | None:
        """The stored arrays, or ``None`` when absent or damaged (then moved aside, with a
        ``CacheCorruptionWarning`` naming the file)."""
        path = self.path(kind, parts, version)
        if not path.is_file():
            return None
        try:
            return read_verified(path)[0]
        except ValueError as exc:
            move_aside(path, str(exc))
            return None

    def save(self, kind: str, parts: dict[str, Any], version: str, arrays: Arrays) -> Path:
        """Store ``arrays`` atomically with their content hash; returns the file path."""
        path = self.path(kind, parts, version)
        write_verified(path, arrays, {"kind": kind, "version": version})
        atomic_write_json(
            path.with_suffix(".json"), {"kind": kind, "version": version, "parts": parts}
        )
        return path

    def get_or_create(
        self, kind: str, parts: dict[str, Any], version: str, producer: Callable[[], Arrays]
    ) -> Arrays:
        """Load the entry, or run ``producer`` once, store its arrays and return them."""
        found = self.load(kind, parts, version)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        arrays = producer()
        self.save(kind, parts, version, arrays)
        return arrays

    def entries(self) -> Iterator[Path]:
        """Every stored entry (``*.safetensors``) under the root."""
        yield from sorted(self.root.rglob("*.safetensors")) if self.root.is_dir() else iter(())

    def verify(self, repair: bool = False) -> VerifyReport:
        """Check every entry's content hash; with ``repair``, move the damaged ones aside (the
        next run recomputes them)."""
        ok: list[Path] = []
        bad: list[tuple[Path, str]] = []
        for path in self.entries():
            try:
                read_verified(path)
                ok.append(path)
            except ValueError as exc:
                bad.append((path, str(exc)))
                if repair:
                    move_aside(path, str(exc))
        return VerifyReport(ok, bad)
