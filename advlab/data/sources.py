"""Where the IDX files of MNIST and Fashion-MNIST come from, and how they are fetched.

Search order for each file (first hit wins):

1. the ``root`` argument of ``advlab.data.load_dataset``;
2. ``$ADVLAB_DATA/<dataset>/`` (a folder holding ``mnist/`` and ``fashion-mnist/``);
3. ``/usr/share/datasets/fashion-mnist/`` (Debian's ``dataset-fashion-mnist``), Fashion-MNIST only;
4. the user cache ``$ADVLAB_CACHE/data/<dataset>/`` (default ``~/.cache/advlab``);
5. a download from the official mirrors into the user cache, unless ``ADVLAB_OFFLINE=1``.

Downloads go to a temporary file that is renamed into place only after the SHA-256 of the
decompressed bytes matches the published checksum.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from advlab.data.idx import IDXError
from advlab.utils.cache import cache_dir
from advlab.utils.io import atomic_write_bytes, sha256_bytes
from advlab.utils.progress import progress_disabled

# SHA-256 of the decompressed IDX bytes (identical for every official mirror).
IDX_CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}

DEBIAN_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

Opener = Callable[[str], IO[bytes]]


class DataNotFoundError(FileNotFoundError):
    """The IDX files could not be found locally and could not be downloaded."""


def offline() -> bool:
    """True when ``ADVLAB_OFFLINE`` is set to anything but ``0``: never download."""
    return os.environ.get("ADVLAB_OFFLINE", "") not in ("", "0")


@dataclass(frozen=True)
class FileSpec:
    """One IDX file: dataset, stem (``train-images-idx3-ubyte``) and checksum."""

    dataset: str
    stem: str
    sha256: str


def candidate_dirs(dataset: str, root: str | Path | None) -> list[Path]:
    """Folders searched for ``dataset``'s IDX files, in priority order."""
    dirs: list[Path] = []
    if root is not None:
        dirs += [Path(root) / dataset, Path(root)]
    if os.environ.get("ADVLAB_DATA"):
        dirs.append(Path(os.environ["ADVLAB_DATA"]) / dataset)
    if dataset in DEBIAN_DIRS:
        dirs.append(DEBIAN_DIRS[dataset])
    dirs.append(cache_dir() / "data" / dataset)
    return dirs


def find_local(spec: FileSpec, dirs: list[Path]) -> Path | None:
    """First ``<stem>.gz`` or ``<stem>`` present in ``dirs``."""
    for folder in dirs:
        for name in (spec.stem + ".gz", spec.stem):
            if (folder / name).is_file():
                return folder / name
    return None


def download(
    spec: FileSpec,
    dest_dir: Path,
    mirrors: list[str] | None = None,
    opener: Opener | None = None,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """Fetch ``<stem>.gz`` from the first mirror that works, verify, and move into ``dest_dir``.

    Each mirror is tried ``retries`` times with exponential backoff. The file is written to a
    temporary name and renamed only after the SHA-256 of the decompressed bytes matches.
    """
    mirrors = MIRRORS[spec.dataset] if mirrors is None else mirrors
    fetch = opener or (lambda url: urllib.request.urlopen(url, timeout=60))
    errors: list[str] = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + spec.stem + ".gz"
        for attempt in range(retries):
            try:
                payload = _read_with_progress(fetch(url), spec.stem)
                _verify_download(payload, spec, url)
                return atomic_write_bytes(dest_dir / (spec.stem + ".gz"), payload)
            except (urllib.error.URLError, OSError, IDXError) as exc:
                errors.append(f"{url} (try {attempt + 1}): {exc}")
                if isinstance(exc, IDXError):
                    break  # a wrong file will not get better by retrying this mirror
                time.sleep(backoff * 2**attempt)
    raise DataNotFoundError(f"could not download {spec.stem}.gz:\n  " + "\n  ".join(errors))


def _read_with_progress(response: IO[bytes], label: str) -> bytes:
    from tqdm.auto import tqdm

    total = getattr(response, "length", None)
    chunks = []
    with (
        response,
        tqdm(
            total=total, unit="B", unit_scale=True, desc=label, disable=progress_disabled()
        ) as bar,
    ):
        while chunk := response.read(1 << 16):
            chunks.append(chunk)
            bar.update(len(chunk))
    return b"".join(chunks)


def _verify_download(payload: bytes, spec: FileSpec, url: str) -> None:
    import gzip

    try:
        content = gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload
    except (OSError, EOFError) as exc:
        raise IDXError(f"{url}: downloaded gzip is corrupt ({exc})") from exc
    digest = sha256_bytes(content)
    if digest != spec.sha256:
        raise IDXError(f"{url}: checksum {digest} does not match expected {spec.sha256}")


def locate(dataset: str, stem: str, root: str | Path | None = None, **download_kwargs) -> Path:
    """Path of one IDX file, found locally or downloaded into the user cache."""
    spec = FileSpec(dataset, stem, IDX_CHECKSUMS[dataset][stem])
    dirs = candidate_dirs(dataset, root)
    found = find_local(spec, dirs)
    if found is not None:
        return found
    if offline():
        raise DataNotFoundError(
            _missing_message(spec, dirs, "downloads are disabled (ADVLAB_OFFLINE)")
        )
    try:
        return download(spec, cache_dir() / "data" / dataset, **download_kwargs)
    except DataNotFoundError as exc:
        raise DataNotFoundError(_missing_message(spec, dirs, str(exc))) from exc


def _missing_message(spec: FileSpec, dirs: list[Path], why: str) -> str:
    looked = "\n  ".join(str(d) for d in dirs)
    return (
        f"{spec.dataset}: file {spec.stem}(.gz) not found; looked in:\n  {looked}\n"
        f"and {why}. Provide it in one of three ways:\n"
        f"  1. pass root=DIR (DIR/{spec.dataset}/{spec.stem}.gz) to load_dataset;\n"
        f"  2. set ADVLAB_DATA=DIR where DIR holds {spec.dataset}/ with the IDX files;\n"
        f"  3. allow a download (unset ADVLAB_OFFLINE, be online) or copy the files into "
        f"{cache_dir() / 'data' / spec.dataset}."
    )
