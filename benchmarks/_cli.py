"""Command-line options shared by the throughput benchmarks."""

from __future__ import annotations

import argparse


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
