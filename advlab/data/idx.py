"""Reader for the IDX format of MNIST / Fashion-MNIST (LeCun et al.), gzip or raw.

IDX layout: 2 zero bytes, a type byte (0x08 = unsigned byte), a byte giving the number
of dimensions ``nd``, then ``nd`` big-endian uint32 sizes, then ``prod(sizes)`` values.
Every check below raises ``IDXError`` naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from advlab.utils.io import sha256_bytes


class IDXError(ValueError):
    """A corrupt, truncated or unexpected IDX file."""


def read_idx_bytes(path: str | Path) -> bytes:
    """Return the decompressed bytes of an IDX file (``.gz`` is decompressed)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXError(f"{path}: gzip stream is corrupt or truncated ({exc})") from exc
    return raw


def parse_idx(
    payload: bytes, name: str = "<bytes>", expected_ndim: int | None = None
) -> np.ndarray:
    """Parse decompressed IDX bytes into a uint8 array, validating header and length.

    Parameters
    ----------
    payload : bytes
        Decompressed IDX content.
    name : str, default='<bytes>'
        Name used in error messages (the file's path).
    expected_ndim : int or None, default=None
        Number of dimensions the header must declare; None accepts any.

    Returns
    -------
    ndarray of uint8
        The array, shaped as the header says.
    """
    if len(payload) < 4:
        raise IDXError(f"{name}: {len(payload)} bytes is too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", payload[:4])
    if zero != 0 or dtype_code != 0x08:
        magic = int.from_bytes(payload[:4], "big")
        raise IDXError(
            f"{name}: bad magic number 0x{magic:08x} (expected 0x0000080N for unsigned-byte IDX)"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise IDXError(f"{name}: has {ndim} dimensions, expected {expected_ndim}")
    header_len = 4 + 4 * ndim
    if len(payload) < header_len:
        raise IDXError(f"{name}: truncated header ({len(payload)} bytes, need {header_len})")
    shape = struct.unpack(f">{ndim}I", payload[4:header_len])
    expected = int(np.prod(shape, dtype=np.int64)) + header_len
    if len(payload) != expected:
        raise IDXError(
            f"{name}: length {len(payload)} bytes does not match header shape {shape} "
            f"(expected {expected} bytes; file truncated or padded)"
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header_len).reshape(shape)


def load_idx(path: str | Path, sha256: str | None = None, expected_ndim: int | None = None):
    """Read, checksum and parse one IDX file; returns ``(array, sha256_of_decompressed)``.

    ``sha256`` is the expected SHA-256 of the *decompressed* bytes; a mismatch raises.

    Parameters
    ----------
    path : str or Path
        An IDX file, gzip-compressed or not.
    sha256 : str or None, default=None
        Expected SHA-256 of the decompressed bytes; a mismatch raises IDXError.
    expected_ndim : int or None, default=None
        Number of dimensions the header must declare.

    Returns
    -------
    (ndarray, str)
        The array and the SHA-256 of the decompressed bytes.
    """
    payload = read_idx_bytes(path)
    digest = sha256_bytes(payload)
    if sha256 is not None and digest != sha256:
        raise IDXError(
            f"{path}: SHA-256 of decompressed content is {digest}, expected {sha256} "
            "(wrong or corrupt file)"
        )
    return parse_idx(payload, str(path), expected_ndim), digest
