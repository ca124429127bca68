"""Compare a run's ``results.json`` with another (a committed one, say): how many ids are equal
to the digit, how many means lie inside the other run's interval, and the largest differences.

    .venv/bin/python scripts/compare_results.py NEW/results.json OLD/results.json [--prefix fig2 fig3 controls.]

An id counts as inside when |new - old| is at most the old run's half-width (``ci99`` or
``ci95``, the t intervals of the experiments that repeat); ids without one (rates over n images,
whose Wilson intervals the report computes) are only counted as equal or not. ``--prefix``
restricts the interval count and the largest differences to ids starting with one of the
prefixes. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _comparisons(path: Path) -> dict[str, dict]:
    """id -> comparison of a ``results.json``."""
    return {c["id"]: c for c in json.loads(path.read_text())["comparisons"]}


def compare(new: dict[str, dict], old: dict[str, dict], prefixes: tuple[str, ...] = ()) -> dict:
    """The counts and the 5 largest differences of ``new`` against ``old`` (see the module)."""
    shared = [k for k in old if k in new]
    chosen = [k for k in shared if not prefixes or k.startswith(prefixes)]
    numeric = [k for k in chosen if isinstance(new[k]["ours"], (int, float))
               and isinstance(old[k]["ours"], (int, float))]  # fmt: skip
    diff = {k: new[k]["ours"] - old[k]["ours"] for k in numeric}
    width = {k: old[k].get("ci99", old[k].get("ci95")) for k in numeric}
    with_ci = [k for k in numeric if width[k] is not None]
    outside = [k for k in with_ci if abs(diff[k]) > width[k]]
    largest = sorted(numeric, key=lambda k: -abs(diff[k]))[:5]
    return {
        "ids": len(old), "shared": len(shared),
        "identical": sum(new[k]["ours"] == old[k]["ours"] for k in shared),
        "missing_in_new": sorted(set(old) - set(new)), "new_ids": sorted(set(new) - set(old)),
        "compared": len(chosen), "with_interval": len(with_ci),
        "inside_old_interval": len(with_ci) - len(outside),
        "outside": [{"id": k, "old": old[k]["ours"], "new": new[k]["ours"], "half_width": width[k]}
                    for k in outside],
        "largest": [{"id": k, "old": old[k]["ours"], "new": new[k]["ours"]} for k in largest],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("new", type=Path)
    parser.add_argument("old", type=Path)
    parser.add_argument("--prefix", nargs="*", default=[], help="compare only ids starting so")
    args = parser.parse_args()
    report = compare(_comparisons(args.new), _comparisons(args.old), tuple(args.prefix))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
