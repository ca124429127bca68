"""Are runs on a device reproducible? Issue #16's check, as one command for a GPU machine.

    .venv/bin/python scripts/gpu_determinism.py [--device cuda] [--out DIR] [--set KEY=VALUE ...]

Runs ``advlab reproduce omari2024 --profile digits --set device=DEVICE`` three times, each
with an empty artefact cache of its own (so the surrogate, the pools and every k-means are
computed anew): twice serially and once with ``--executor local --workers 2``. Results must
not depend on the executor, the number of workers or the run (seeds come from unit keys), so
the three ``results.json`` must hold the same comparisons, bit for bit. Then, where the device
is CUDA, it runs the CUDA-only test ``tests/test_kmeans.py -k cuda``.

Prints JSON: per pair of runs, how many comparisons differ and the first few of them, the
test's exit status, and ``reproducible`` (no comparison differs and the test passed). With
``--device cpu`` the same check runs on any machine (it is how the script is tested).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from itertools import combinations
from pathlib import Path
from typing import Any

RUNS = {"serial": [], "serial-again": [], "local-2": ["--executor", "local", "--workers", "2"]}
SHOWN = 5  # differing comparisons printed per pair


def _run(name: str, extra: list[str], device: str, sets: list[str], root: Path) -> dict:
    """One reproduction into ``root/name`` with its own cache; its comparisons by id."""
    command = [sys.executable, "-m", "advlab.cli.main", "reproduce", "omari2024", "--profile",
               "digits", "--set", f"device={device}", *[a for s in sets for a in ("--set", s)],
               *extra, "--out", str(root / name), "--cache", str(root / f"{name}-cache")]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    results = json.loads((root / name / "results.json").read_text())
    return {c["id"]: c["ours"] for c in results["comparisons"]}


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The ids in one run only, and those whose values differ (with both values).

    Parameters
    ----------
    a, b : dict
        Comparison id -> value, of two runs.

    Returns
    -------
    dict
        ``only_one`` (ids missing from either), ``differ`` (their count) and ``first`` (up to
        ``SHOWN`` of them as [id, a, b]).
    """
    differ = [[i, a[i], b[i]] for i in sorted(set(a) & set(b)) if not _same(a[i], b[i])]
    return {"only_one": sorted(set(a) ^ set(b)), "differ": len(differ), "first": differ[:SHOWN]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="where the runs compute (cuda, cpu)")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="KEY=VALUE passed to every run (e.g. repetitions=1)")  # fmt: skip
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        runs = {name: _run(name, extra, args.device, args.sets, root)
                for name, extra in RUNS.items()}  # fmt: skip
    pairs = {f"{a} vs {b}": compare(runs[a], runs[b]) for a, b in combinations(runs, 2)}
    test = None
    if args.device.startswith("cuda"):
        test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:logging",
                               "tests/test_kmeans.py", "-k", "cuda"]).returncode  # fmt: skip
    same = all(not p["differ"] and not p["only_one"] for p in pairs.values())
    report = {"device": args.device, "comparisons": len(runs["serial"]), "pairs": pairs,
              "cuda_test_exit_status": test, "reproducible": same and test in (None, 0)}  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0 if report["reproducible"] else 1


if __name__ == "__main__":
    sys.exit(main())
