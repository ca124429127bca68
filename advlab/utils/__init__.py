"""Small shared helpers: atomic file output, progress bars, hashing."""

from advlab.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_bytes
from advlab.utils.progress import progress, set_quiet

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "progress",
    "set_quiet",
    "sha256_bytes",
]
