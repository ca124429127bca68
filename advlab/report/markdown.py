"""Markdown for a README: each run's tables between markers, so that a test can regenerate them
from the committed results and fail when they differ.

A block reads::

    <!-- advlab-report omari2024 start -->
    ...generated...
    <!-- advlab-report omari2024 end -->
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from advlab.report.comparisons import verdict_counts
from advlab.report.document import Section
from advlab.report.tables import Table, comparison_table, to_markdown
from advlab.utils.perf import DEFAULT_THREADS_PER_UNIT

START = "<!-- advlab-report {name} start -->"
END = "<!-- advlab-report {name} end -->"
_BLOCK = re.compile(
    r"<!-- advlab-report (?P<name>\S+) start -->\n.*?<!-- advlab-report (?P=name) end -->",
    re.DOTALL,
)


def _threads(manifest: dict) -> object:
    """Threads per unit (runs from before the setting recorded ``torch_threads``)."""
    return manifest.get("threads_per_unit", manifest.get("torch_threads", "?"))


def _command(section: Section) -> str:
    """How the run was started: the profile, or the config file of ``advlab run``, with the
    threads per unit where they are not the default (the results depend on them)."""
    run = section.run
    threads = _threads(run.manifest)
    extra = (
        f" --threads-per-unit {threads}" if threads not in (DEFAULT_THREADS_PER_UNIT, "?") else ""
    )
    if run.profile is not None:
        return f"`{run.experiment} --profile {run.profile}{extra}`"
    if run.config_file is not None:
        return f"`advlab run {run.config_file}{extra}`"
    return f"`{run.experiment}` from a config file"


def _resumed(manifest: dict) -> str:
    """The note "(R of N units resumed ...)" for a run that resumed units, whose wall time then
    covers only the units it computed; empty otherwise."""
    resumed = int(manifest.get("units_resumed") or 0)
    if not resumed:
        return ""
    total = resumed + int(manifest.get("units_computed") or 0)
    return f" ({resumed} of {total} units resumed from an earlier pass, not timed here)"


def _provenance(section: Section) -> str:
    m = section.run.manifest
    seconds = m.get("seconds")
    parts = [
        _command(section),
        f"finished {str(m.get('finished', '?'))[:10]}",
        f"commit {m['commit']}" if m.get("commit") else f"advlab {m.get('advlab', '?')}",
        "" if seconds is None else f"{seconds:.0f} s wall" + _resumed(m),
        f"{_threads(m)} thread(s) per unit",
    ]
    return "Run: " + ", ".join(p for p in parts if p) + "."


def render_markdown(section: Section, name: str | None = None) -> str:
    """One run's block: provenance, the experiment's tables, then every comparison and the
    settings that differ from the paper's in collapsed ``<details>``.

    Parameters
    ----------
    section : Section
        One run.
    name : str or None, default=None
        Name in the markers; None: the experiment's.

    Returns
    -------
    str
        The marked block.
    """
    name = name or section.run.experiment
    counts = verdict_counts(section.rows)
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    out = [START.format(name=name), _provenance(section), ""]
    for table in section.tables:
        out += [to_markdown(table), ""]
    out += [
        f"<details><summary>All {len(section.rows)} comparisons ({summary})</summary>"
        if section.has_paper
        else f"<details><summary>All {len(section.rows)} measurements, with their "
        "intervals</summary>",
        "",
        to_markdown(comparison_table(section.rows, "comparisons")),
        "",
        "</details>",
    ]
    differing = [s for s in section.settings if s.differs]
    if differing or section.setting_notes:
        table = Table(
            "settings that differ from the paper",
            ("setting", "paper", "this run", "paper's source"),
            [[f"`{s.key}`", s.paper, s.ours, s.source] for s in differing],
            align=("l", "l", "l", "l"),
        )
        out += [
            "",
            f"<details><summary>Settings that differ from the paper ({len(differing)})</summary>",
            "",
            to_markdown(table),
            "",
            *(f"- {note}" for note in section.setting_notes),
            "",
            "</details>",
        ]
    out.append(END.format(name=name))
    return "\n".join(out)


def marked_blocks(text: str) -> dict[str, str]:
    """The generated blocks of a document, by name (markers included).

    Parameters
    ----------
    text : str
        A Markdown document.

    Returns
    -------
    dict of str to str
        Name -> block, markers included.
    """
    return {m.group("name"): m.group(0) for m in _BLOCK.finditer(text)}


def replace_blocks(text: str, blocks: Mapping[str, str]) -> tuple[str, Sequence[str]]:
    """``text`` with each marked block that ``blocks`` names replaced; also the names replaced.

    Parameters
    ----------
    text : str
        A Markdown document.
    blocks : mapping of str to str
        New blocks by name, markers included.

    Returns
    -------
    (str, sequence of str)
        The new text and the names replaced.
    """
    replaced: list[str] = []

    def swap(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in blocks:
            return match.group(0)
        replaced.append(name)
        return blocks[name]

    return _BLOCK.sub(swap, text), replaced
