"""Re-aggregate a finished ``omari2024`` run directory's units with the current code and say
whether ``summary``, ``robustness`` and ``comparisons`` equal its ``results.json``.

A check for refactors of the aggregation (``advlab/experiments/aggregate.py``) that needs no
recomputation: the units hold every repetition's history. Usage::

    .venv/bin/python scripts/reaggregate_omari.py RUN_DIR

Exit status 0 when all three are identical (NaN written as null, as results.json does).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from advlab.experiments import get_experiment, validate_config
from advlab.experiments.aggregate import aggregate
from advlab.experiments.builtin import omari2024 as om
from advlab.experiments.runner import _safe_name
from advlab.utils.io import json_roundtrip


def main(run: Path) -> int:
    results = json.loads((run / "results.json").read_text())
    exp = get_experiment("omari2024")
    config = validate_config(
        exp.config_cls, json.loads((run / "config.json").read_text())["config"]
    )
    variants = om._variants(config)
    units: dict[str, list] = {}
    for name in config.datasets:  # the order run_omari collects them in
        for rep in range(config.repetitions):
            for variant, _ in variants:
                unit = run / "units" / (_safe_name(f"{name}-{variant}-rep{rep}") + ".json")
                units.setdefault(f"{name}/{variant}", []).append(
                    json.loads(unit.read_text())["result"]
                )
    robustness = om._robustness_summary(units)
    again = {
        "summary": om._summaries(units),
        "robustness": robustness,
        "comparisons": aggregate(om._rows(units), om.LEVEL)
        + aggregate(om._robustness_rows(robustness))
        + aggregate(om._imitation_rows(units), om.LEVEL),
    }
    again = json.loads(json.dumps(json_roundtrip(again)).replace("NaN", "null"))
    same = {key: again[key] == results[key] for key in again}
    print(
        json.dumps({"run": str(run), "comparisons": len(again["comparisons"]), "identical": same})
    )
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
