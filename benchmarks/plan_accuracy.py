"""How close ``advlab plan`` comes to the run it plans, for ``evaluate``'s certificates: the
quick profile (an MLP on the scikit-learn 8x8 digits, four ``verify`` budgets, the linear
certificate at four budgets) with its network's weights given as a file, planned and then run.

    .venv/bin/python benchmarks/plan_accuracy.py [--out DIR]

The network is trained here as the quick profile trains it (``train_classifier``, its epochs
and seed, one torch thread) and saved as safetensors; the config is the profile's with
``model.weights`` in place of ``model.train_epochs``. ``advlab plan CONFIG --json`` times the
certificates on that network (see ``evaluate._timed_certificates``), then ``advlab run CONFIG``
runs it from an empty cache. Prints one JSON object: per ``verify`` budget and for the linear
certificate, the planned seconds on one worker against the seconds of the run's units (the
manifest's ``unit_seconds``) and their ratio, and the wall seconds of the plan itself. With
``--kmeans-config``, the same for an ``evaluate-kmeans`` config (its minimal perturbation, and
the plan's total against the run's wall time). Not a test: the programs' times are
heavy-tailed, so the ratios vary with the machine and the sample.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_model

from advlab.data import load_dataset
from advlab.models import train_classifier


def _advlab(*args: str, env: dict[str, str]) -> str:
    """Run the advlab command line in this interpreter; its standard output."""
    command = [sys.executable, "-m", "advlab.cli.main", *args]
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the run here (default: a temporary folder)"
    )
    parser.add_argument("--kmeans-config", type=Path, default=None,
                        help="also plan and run this evaluate-kmeans config (e.g. configs/evaluate-kmeans-mnist.yaml)")  # fmt: skip
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="plan-accuracy-"))
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ADVLAB_QUIET": "1", "ADVLAB_CACHE": str(root / "cache")}
    config = yaml.safe_load(_advlab("show", "evaluate", "--profile", "quick", env=env))
    model = config["model"]
    torch.set_num_threads(1)
    trained = train_classifier(model["factory"], load_dataset(config["data"]["name"], "train"),
                               epochs=model["train_epochs"], seed=config["seed"], device="cpu")  # fmt: skip
    save_model(trained.model, str(root / "net.safetensors"))
    config["model"] = {**model, "train_epochs": None, "weights": str(root / "net.safetensors")}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    plan = json.loads(_advlab("plan", str(path), "--json", env=env))
    plan_seconds = time.perf_counter() - start
    _advlab("run", str(path), "--out", str(root / "run"), env=env)
    manifest = json.loads((root / "run" / "manifest.json").read_text())
    measured: dict[str, float] = defaultdict(float)
    for key, seconds in manifest["unit_seconds"].items():
        if key.startswith("verify-"):  # verify-eps<e>-<start>: one budget's programs
            measured[f"verify {key.split('-')[1]}"] += seconds
        elif key.startswith("certify-"):  # interval bounds too, a few ms
            measured["certify"] += seconds
    planned: dict[str, float] = defaultdict(float)
    for line in plan["attacks"]:
        seconds = 3600 * float(line["hours"]["1"])
        if line["what"].startswith("verify at eps "):
            planned[f"verify eps{line['what'].split()[3]}"] += seconds
        elif line["what"].startswith("linear certificate"):
            planned["certify"] += seconds
    rows = {
        what: {"planned_s": round(planned.get(what, 0.0), 2), "run_s": round(measured[what], 2),
               "run_over_planned": round(measured[what] / planned[what], 2) if planned.get(what) else None}
        for what in sorted(measured)
    }  # fmt: skip
    total_planned, total_run = sum(planned.values()), sum(measured.values())
    report = {
        "config": "evaluate --profile quick, model.weights given", "rows": rows,
        "total": {"planned_s": round(total_planned, 1), "run_s": round(total_run, 1),
                  "run_over_planned": round(total_run / total_planned, 2)},
        "plan_wall_s": round(plan_seconds, 1), "run_wall_s": round(manifest["seconds"], 1),
        "plan_lines": [line["what"] for line in plan["attacks"]], "notes": plan["notes"], "folder": str(root),
    }  # fmt: skip
    if args.kmeans_config is not None:
        report["evaluate-kmeans"] = _kmeans(args.kmeans_config, root / "kmeans", env)
    print(json.dumps(report, indent=2))


def _kmeans(config: Path, root: Path, env: dict[str, str]) -> dict[str, object]:
    """``evaluate-kmeans`` on ``config``: the plan's minimal-perturbation line and total on one
    worker against the run's minimal units and its wall time (an empty cache: the surrogates'
    training is in both)."""
    start = time.perf_counter()
    plan = json.loads(_advlab("plan", str(config), "--json", env=env))
    plan_seconds = time.perf_counter() - start
    _advlab("run", str(config), "--out", str(root / "run"), env=env)
    manifest = json.loads((root / "run" / "manifest.json").read_text())
    units = manifest["unit_seconds"]
    minimal_run = sum(v for k, v in units.items() if k.startswith("minimal-"))
    minimal_plan = sum(3600 * float(a["hours"]["1"]) for a in plan["attacks"]
                       if a["what"].startswith("minimal perturbation"))  # fmt: skip
    total_plan = 3600 * float(plan["attack_hours"]["1"])
    return {
        "config": str(config),
        "minimal": {"planned_s": round(minimal_plan, 1), "run_s": round(minimal_run, 1),
                    "run_over_planned": round(minimal_run / minimal_plan, 2)},
        "total": {"planned_s": round(total_plan, 1), "run_wall_s": round(manifest["seconds"], 1),
                  "run_over_planned": round(manifest["seconds"] / total_plan, 2)},
        "plan_wall_s": round(plan_seconds, 1),
    }  # fmt: skip


if __name__ == "__main__":
    main()
