"""Shared fixtures. Tests never download: ADVLAB_OFFLINE is forced, the cache is a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
