"""Progress bars (tqdm), shown only on an interactive terminal and never with ``--quiet``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Disable (``True``) or re-enable progress bars process-wide."""
    global _QUIET
    _QUIET = bool(quiet)


def progress_disabled() -> bool:
    """True when bars must stay hidden: ``--quiet``, ``ADVLAB_QUIET=1`` or stderr not a TTY."""
    return _QUIET or os.environ.get("ADVLAB_QUIET", "") not in ("", "0") or not sys.stderr.isatty()


def progress(
    iterable: Iterable[T], desc: str = "", total: int | None = None, **kwargs
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar unless bars are disabled."""
    return iter(tqdm(iterable, desc=desc, total=total, disable=progress_disabled(), **kwargs))
