"""What a report is made of: a run directory read back, and one section per run.

A ``RunRecord`` is what ``advlab run`` / ``advlab reproduce`` left in a run directory
(``config.json``, ``manifest.json``, ``results.json``, the figures and the per-unit timings
under ``units/``). A ``Section`` is everything the report shows about one run; the
experiments layer builds it (it knows the paper), the renderers in ``advlab.report.html``
and ``advlab.report.markdown`` only lay it out.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advlab.report.comparisons import ComparisonRow
from advlab.report.tables import Table


class ReportError(ValueError):
    """A run directory cannot be reported (missing or damaged files)."""


@dataclass(frozen=True)
class RunRecord:
    """A finished run read from its directory.

    Attributes
    ----------
    path : Path
        The run directory.
    config : dict
        config.json: experiment, profile and the resolved config.
    manifest : dict
        manifest.json: versions, seeds, data checksums, timings.
    results : dict
        results.json.
    figures : tuple of Path
        The run's PNG figures.
    unit_seconds : dict of str to float
        Compute time per unit, from the manifest or units/.
    """

    path: Path
    config: dict[str, Any]
    manifest: dict[str, Any]
    results: dict[str, Any]
    figures: tuple[Path, ...]
    unit_seconds: dict[str, float]

    @property
    def experiment(self) -> str:
        return str(self.results.get("experiment") or self.config.get("experiment"))

    @property
    def profile(self) -> str | None:
        return self.config.get("profile")

    @property
    def config_file(self) -> str | None:
        """The config file of ``advlab run FILE`` (from the manifest's command), or None."""
        argv = self.manifest.get("command") or []
        return str(argv[2]) if len(argv) >= 3 and argv[1] == "run" else None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ReportError(f"{path}: no {what}; is {path.parent} a finished advlab run?")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: damaged {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object in the {what}")
    return data


def load_run(path: str | Path) -> RunRecord:
    """Read a finished run directory; errors name the missing or damaged file.

    Parameters
    ----------
    path : str or Path
        A finished run directory.

    Returns
    -------
    RunRecord
        The run; ReportError names a missing or damaged file.
    """
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: not a run directory")
    results = _read_json(path / "results.json", "results.json")
    if not isinstance(results.get("comparisons"), list):
        raise ReportError(f"{path / 'results.json'}: no 'comparisons' list")
    config = _read_json(path / "config.json", "config.json")
    manifest = _read_json(path / "manifest.json", "manifest.json")
    unit_seconds = dict(manifest.get("unit_seconds") or {})
    for unit_file in sorted((path / "units").glob("*.json")):
        try:
            record = json.loads(unit_file.read_text())
            unit_seconds.setdefault(str(record["key"]), float(record["seconds"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged unit file is the runner's business; timings are best effort
    figures = tuple(sorted(path.glob("*.png")))
    return RunRecord(path, config, manifest, results, figures, unit_seconds)


@dataclass(frozen=True)
class SettingRow:
    """One of the paper's settings against this run's.

    Attributes
    ----------
    key : str
        The config key.
    paper : str
        The paper's value, as shown.
    ours : str
        This run's value.
    source : str
        Where the paper says so.
    differs : bool
        Whether the run departs from the paper.
    """

    key: str
    paper: str
    ours: str
    source: str
    differs: bool


@dataclass(frozen=True)
class Control:
    """A control: which comparison ids it covers and what it tests, in one sentence.

    Attributes
    ----------
    ids : str
        fnmatch pattern over comparison ids.
    tests : str
        What the control tests, in one sentence.
    rows : tuple of ComparisonRow
        The rows it covers.
    """

    ids: str  # an fnmatch pattern over comparison ids
    tests: str
    rows: tuple[ComparisonRow, ...]


@dataclass(frozen=True)
class Section:
    """Everything the report shows about one run.

    Attributes
    ----------
    title : str
        Heading of the run's section.
    citation : str
        The paper.
    run : RunRecord
        The run.
    rows : sequence of ComparisonRow
        Every comparison.
    tables : sequence of Table
        The experiment's own tables.
    settings : sequence of SettingRow
        The paper's settings beside the run's.
    setting_notes : sequence of str
        Differences no config key expresses.
    controls : sequence of Control
        The controls.
    value_sources : sequence of (str, str)
        (id pattern, where the paper value comes from).
    notes : sequence of str
        Free text shown under the title.
    """

    title: str
    citation: str
    run: RunRecord
    rows: Sequence[ComparisonRow]
    tables: Sequence[Table] = ()
    settings: Sequence[SettingRow] = ()
    setting_notes: Sequence[str] = ()
    controls: Sequence[Control] = ()
    value_sources: Sequence[tuple[str, str]] = ()  # (id pattern, where the paper value is from)
    notes: Sequence[str] = field(default_factory=tuple)

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")

    @property
    def has_paper(self) -> bool:
        """Whether the run compares with a paper (a paper value or a paper setting); the runs
        of a user's own things (evaluate, evaluate-clustering) do not."""
        return bool(self.settings) or any(r.paper is not None for r in self.rows)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "default" if value is None else str(value)


def settings_rows(config: dict[str, Any], paper_settings: dict[str, Any]) -> list[SettingRow]:
    """The paper's settings (``{key: {paper, source, shown?}}``) beside the run's config.

    ``shown`` is how the paper's value reads when the config spells it differently (e.g.
    ``n_train: null`` means "all 60,000"). A key the config does not have is shown as "not
    a setting of this run" and counts as differing.

    Parameters
    ----------
    config : dict
        The run's resolved config.
    paper_settings : dict
        {key: {paper, source, shown?}} from the paper's data file.

    Returns
    -------
    list of SettingRow
        One row per paper setting.
    """
    rows = []
    for key, spec in paper_settings.items():
        paper = spec.get("paper")
        present = key in config
        ours = config.get(key)
        rows.append(
            SettingRow(
                key=key,
                paper=str(spec.get("shown", _show(paper))),
                ours=_show(ours) if present else "not a setting of this run",
                source=str(spec.get("source", "")),
                differs=not present or not _same(ours, paper),
            )
        )
    return rows


def controls_of(rows: Sequence[ComparisonRow], specs: Sequence[dict[str, str]]) -> list[Control]:
    """Controls from ``[{ids: pattern, tests: sentence}]``, each with the rows it covers.

    Parameters
    ----------
    rows : sequence of ComparisonRow
        Every comparison of the run.
    specs : sequence of dict
        [{ids: pattern, tests: sentence}] from the paper's data file.

    Returns
    -------
    list of Control
        Each control with the rows it covers.
    """
    return [
        Control(
            spec["ids"],
            spec["tests"],
            tuple(r for r in rows if fnmatch.fnmatchcase(r.id, spec["ids"])),
        )
        for spec in specs
    ]


def value_source(row_id: str, sources: Sequence[tuple[str, str]]) -> str:
    """Where the paper value of ``row_id`` comes from (first matching pattern), or "".

    Parameters
    ----------
    row_id : str
        A comparison id.
    sources : sequence of (str, str)
        (id pattern, source) pairs.

    Returns
    -------
    str
        The first matching source, or ''.
    """
    for pattern, source in sources:
        if fnmatch.fnmatchcase(row_id, pattern):
            return source
    return ""
