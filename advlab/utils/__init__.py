"""Small shared helpers: atomic file output, the artefact cache, progress bars, hashing, input checks."""

from advlab.utils.cache import Cache, cache_dir
from advlab.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_bytes
from advlab.utils.progress import progress, set_quiet

__all__ = [
    "Cache",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_dir",
    "progress",
    "set_quiet",
    "sha256_bytes",
]
