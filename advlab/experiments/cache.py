"""Content-addressed cache for expensive artefacts (trained weights, adversarial pools).

An entry is a dict of numpy arrays stored with safetensors (no pickle), keyed by the
SHA-256 of everything that determines it: a ``kind``, the caller's ``parts`` (config subset,
data checksum, ...) and the producer's code ``version``. A JSON sidecar records the parts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from advlab.data.sources import cache_dir
from advlab.utils.io import atomic_write_bytes, atomic_write_json

Arrays = dict[str, np.ndarray]


class Cache:
    """Artefact store under ``root`` (default ``$ADVLAB_CACHE/artifacts`` or ``~/.cache/advlab/artifacts``)."""

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
        """The stored arrays, or ``None`` when absent."""
        from safetensors.numpy import load_file

        path = self.path(kind, parts, version)
        return load_file(str(path)) if path.is_file() else None

    def save(self, kind: str, parts: dict[str, Any], version: str, arrays: Arrays) -> Path:
        """Store ``arrays`` atomically; returns the file path."""
        from safetensors.numpy import save

        path = self.path(kind, parts, version)
        payload = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
        atomic_write_bytes(path, payload)
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
