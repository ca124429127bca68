"""Report sections of finished runs: the run directory joined with what advlab knows of the
paper (``advlab/experiments/papers/<experiment>.yaml``: the paper's settings with their source,
where each paper value comes from, and what each control tests) and the experiment's own
tables."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from advlab.experiments.registry import get_experiment
from advlab.report.comparisons import comparison_rows
from advlab.report.document import Section, controls_of, load_run, settings_rows

PAPER_KEYS = {"citation", "settings", "notes", "controls", "values", "data"}


@cache
def paper_info(experiment: str) -> dict[str, Any]:
    """The paper data of ``experiment`` (empty when advlab has none, e.g. the demo)."""
    resource = files("advlab.experiments") / "papers" / f"{experiment}.yaml"
    if not resource.is_file():
        return {}
    info = yaml.safe_load(resource.read_text()) or {}
    unknown = set(info) - PAPER_KEYS
    if unknown:
        raise ValueError(f"papers/{experiment}.yaml: unknown keys {sorted(unknown)}")
    return info


def paper_data(experiment: str, name: str) -> Any:
    """The paper's values of block ``name`` in ``papers/<experiment>.yaml`` (``data:``, each
    block with its source), as the experiment compares with them (tuples are lists)."""
    try:
        return paper_info(experiment)["data"][name]["values"]
    except KeyError as exc:
        raise KeyError(f"papers/{experiment}.yaml has no data block {name!r}") from exc


def build_section(run_dir: str | Path) -> Section:
    """Everything the report shows about the run in ``run_dir``."""
    run = load_run(run_dir)
    config = run.config.get("config", {})
    try:
        experiment = get_experiment(run.experiment)
    except KeyError:
        experiment = None
    info = paper_info(run.experiment) if experiment is not None else {}

    def sample_size(comparison_id: str) -> int | None:
        if experiment is None or experiment.sample_size is None:
            return None
        return experiment.sample_size(run.results, config, comparison_id)

    rows = comparison_rows(run.results["comparisons"], sample_size)
    tables = (
        experiment.tables(run.results, config)
        if experiment is not None and experiment.tables
        else []
    )
    return Section(
        title=f"{run.experiment} ({run.profile or Path(run.config_file or 'custom config').name})",
        citation=info.get("citation", ""),
        run=run,
        rows=rows,
        tables=tables,
        settings=settings_rows(config, info.get("settings", {})),
        setting_notes=tuple(info.get("notes", ())),
        controls=controls_of(rows, info.get("controls", ())),
        value_sources=tuple((v["ids"], v["source"]) for v in info.get("values", ())),
    )
