"""Command-line options shared by the throughput benchmarks."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from advlab.utils.io import atomic_write_text


def throughput_parser(doc: str | None) -> argparse.ArgumentParser:
    """--models, --batch, --steps, --rounds with the defaults every throughput table uses."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["small_cnn", "lenet5"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    return parser


def rounds_parser(doc: str | None) -> argparse.ArgumentParser:
    """--rounds (3, alternated in one process) and --out (a JSON file, optional): the options of
    the benchmarks that time two forms of one computation side by side."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    return parser


def write_rows(out: Path | None, rows: list[dict], rounds: int) -> None:
    """``rows`` and the machine they were timed on, as JSON at ``out`` (atomically), if given."""
    if out is None:
        return
    meta = {"machine": platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "rounds": rounds}  # fmt: skip
    atomic_write_text(out, json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
