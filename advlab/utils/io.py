"""Atomic file output: write to a temporary file in the target folder, then rename.

A reader (or a resumed run) never sees a half-written file: ``os.replace`` is atomic
on POSIX and Windows when source and target are on the same file system.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``),
    with the permissions a plain ``open`` would give (0666 less the user's umask)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, strict: bool = True) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically. ``strict`` (default): standard
    JSON, NaN and infinities written as ``null`` (Python's bare ``NaN`` tokens are not JSON);
    ``strict=False`` keeps them, for advlab's own resume files that must read back as floats."""
    if strict:
        obj = _finite_or_null(obj)
    text = json.dumps(obj, indent=2, sort_keys=False, default=_jsonable, allow_nan=not strict)
    return atomic_write_text(path, text + "\n")


def json_roundtrip(obj: Any) -> Any:
    """``obj`` as it reads back from (non-strict) JSON: numpy values to numbers, tuples to
    lists, NaN kept."""
    return json.loads(json.dumps(obj, default=_jsonable))


def strict_json(obj: Any) -> Any:
    """``obj`` as it reads back from strict JSON (``atomic_write_json``'s default): non-finite
    floats as None, numpy values as numbers, tuples as lists."""
    return json_roundtrip(_finite_or_null(obj))


def _finite_or_null(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (numpy values converted)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_null(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, str):
        return _finite_or_null(obj.tolist())
    return obj


def _jsonable(obj: Any) -> Any:
    """JSON fallback for numpy scalars/arrays and paths."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")
