"""A self-contained HTML report: one file, figures inlined as base64 PNG, a small CSS block and
a few lines of inline script (sortable, filterable tables); no network access, CDN, external
script or font is needed to view it."""

from __future__ import annotations

import base64
import html
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from advlab.report.comparisons import verdict_counts
from advlab.report.document import Section, value_source
from advlab.report.tables import Table, comparison_table, fmt

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 75em; padding: 0 1em; color: #1b1b1b; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #d0d0d0; padding: .25em .55em; vertical-align: top; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
td.r { text-align: right; font-variant-numeric: tabular-nums; }
td.inside { background: #e3f4e3; } td.outside { background: #fbe3e1; }
tr.differs td { background: #fff6d9; }
code { font-size: 12px; } .muted { color: #666; } figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
input.filter { margin: .3em 0; padding: .25em .4em; width: 22em; }
nav ul { columns: 2; } .counts span { margin-right: 1.2em; }
"""

# Click a header to sort by that column (numbers numerically); type in a box to filter rows.
SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var up = th.dataset.dir !== "up"; th.dataset.dir = up ? "up" : "down";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent.trim(), y = b.cells[col].textContent.trim();
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return up ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
document.querySelectorAll("input.filter").forEach(function (box) {
  box.addEventListener("input", function () {
    var q = box.value.toLowerCase();
    var table = document.getElementById(box.dataset.table);
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
    });
  });
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _cell_class(align: str, text: str) -> str:
    return f"{align} {text}" if text in ("inside", "outside") else align


def _table(table: Table, table_id: str = "", row_classes: Sequence[str] = ()) -> str:
    align = table.alignment()
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = []
    for i, row in enumerate(table.rows):
        cls = f' class="{row_classes[i]}"' if i < len(row_classes) and row_classes[i] else ""
        cells = "".join(
            f'<td class="{_cell_class(align[j], c)}">{_e(c.strip("`"))}</td>'
            for j, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    note = f'<p class="muted">{_e(table.note)}</p>' if table.note else ""
    heading = f"<h3>{_e(table.title)}</h3>\n" if table.title else ""
    return (
        f'{heading}<table class="sortable"{ident}><thead><tr>{head}</tr>'
        f"</thead>\n<tbody>\n" + "\n".join(body) + f"\n</tbody></table>{note}"
    )


def _comparisons(section: Section) -> str:
    table = comparison_table(section.rows, "Every comparison (ours vs the paper)")
    sources = [value_source(r.id, section.value_sources) for r in section.rows]
    columns = [*table.columns, "paper value from"]
    rows = [[*row, src] for row, src in zip(table.rows, sources, strict=True)]
    full = Table(table.title, columns, rows, align=[*table.alignment(), "l"])
    counts = verdict_counts(section.rows)
    summary = "".join(f"<span><b>{n}</b> {_e(v)}</span>" for v, n in counts.items())
    tid = f"{section.anchor}-comparisons"
    return (
        f'<p class="counts">{summary}</p>\n'
        f'<input class="filter" data-table="{tid}" placeholder="filter comparisons">\n'
        + _table(full, tid)
    )


def _settings(section: Section) -> str:
    if not section.settings and not section.setting_notes:
        return ""
    out = ["<h3>Settings that differ from the paper</h3>"]
    if section.settings:
        table = Table(
            "",
            ("setting", "paper", "this run", "paper's source", "differs"),
            [[s.key, s.paper, s.ours, s.source, "yes" if s.differs else ""]
             for s in section.settings],
            align=("l", "l", "l", "l", "l"),
        )  # fmt: skip
        out.append(_table(table, "", ["differs" if s.differs else "" for s in section.settings]))
    if section.setting_notes:
        out.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in section.setting_notes) + "</ul>")
    return "\n".join(out)


def _controls(section: Section) -> str:
    if not section.controls:
        return ""
    out = ["<h3>Controls</h3><dl>"]
    for control in section.controls:
        values = ", ".join(f"{r.id} = {fmt(r.ours)}" for r in control.rows) or "not in this run"
        out.append(
            f"<dt><code>{_e(control.ids)}</code></dt><dd>{_e(control.tests)}"
            f'<br><span class="muted">{_e(values)}</span></dd>'
        )
    out.append("</dl>")
    return "\n".join(out)


def _figures(section: Section) -> str:
    if not section.run.figures:
        return ""
    out = ["<h3>Figures</h3>"]
    for path in section.run.figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        out.append(
            f'<figure><img alt="{_e(path.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(path.name)}</figcaption></figure>"
        )
    out.append(
        '<p class="muted">The papers\' own figures are not reproduced here (their images were '
        "lost in the text of the source documents); the paper's values beside ours are in the "
        "table above.</p>"
    )
    return "\n".join(out)


def _manifest(section: Section) -> str:
    m = section.run.manifest
    facts = [
        ("run directory", str(section.run.path)),
        (
            "experiment / profile",
            f"{section.run.experiment} / {section.run.profile or 'config file'}",
        ),
        ("commit", m.get("commit") or f"not recorded (advlab {m.get('advlab', '?')})"),
        ("started / finished", f"{m.get('started', '?')} / {m.get('finished', '?')}"),
        ("wall time", "-" if m.get("seconds") is None else f"{m['seconds']:.0f} s"),
        ("units computed / resumed", f"{m.get('units_computed')} / {m.get('units_resumed')}"),
        ("python / platform", f"{m.get('python')} / {m.get('platform')}"),
        ("threads per unit", m.get("threads_per_unit", m.get("torch_threads"))),
        ("command", " ".join(m.get("command", []))),
        ("seeds", ", ".join(f"{k} = {v}" for k, v in (m.get("seeds") or {}).items())),
    ]
    facts += [(f"package {k}", v) for k, v in (m.get("packages") or {}).items()]
    facts += [
        (f"data {name}", f"sha256 {info.get('sha256')} (n = {info.get('n')})")
        for name, info in (m.get("datasets") or {}).items()
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    out = ["<h3>Provenance</h3>", f'<table class="manifest">{rows}</table>']
    units = section.run.unit_seconds
    if units:
        table = Table(
            f"wall time per unit ({len(units)} units, {sum(units.values()):.0f} s in all)",
            ("unit", "seconds"),
            [[k, f"{v:.1f}"] for k, v in sorted(units.items())],
        )
        out.append("<details><summary>wall time per unit</summary>" + _table(table) + "</details>")
    else:
        out.append('<p class="muted">Per-unit wall times are not kept in this copy of the run.</p>')
    config = ", ".join(f"{k} = {v}" for k, v in section.run.config.get("config", {}).items())
    out.append(f'<p class="muted">config: {_e(config)}</p>')
    return "\n".join(out)


def _summary(section: Section) -> str:
    counts = verdict_counts(section.rows)
    with_paper = counts["inside"] + counts["outside"] + counts["no interval"]
    differing = sum(s.differs for s in section.settings)
    m = section.run.manifest
    tail = (f"Run finished {_e(m.get('finished', '?'))}; {len(section.controls)} controls; "
            f"{len(section.run.figures)} figures.</p>")  # fmt: skip
    if not section.has_paper:  # a run of the user's own things
        return (f"<p><b>{len(section.rows)} measurements</b> with their intervals (no paper to "
                f"compare with). {tail}")  # fmt: skip
    return (
        f"<p><b>{len(section.rows)} comparisons</b>, {with_paper} with a paper value: "
        f"the paper's value lies inside our interval in <b>{counts['inside']}</b>, outside in "
        f"<b>{counts['outside']}</b>, and {counts['no interval']} have no interval. "
        f"<b>{differing}</b> of the paper's {len(section.settings)} settings differ in this run "
        f"(table below), so read the verdicts against them. {tail}"
    )


def render_section(section: Section) -> str:
    """One run's part of the report.

    Parameters
    ----------
    section : Section
        One run.

    Returns
    -------
    str
        HTML of the run's section.
    """
    parts = [
        f'<section id="{section.anchor}"><h2>{_e(section.title)}</h2>',
        f"<p><i>{_e(section.citation)}</i></p>" if section.citation else "",
        _summary(section),
        *(f"<p>{_e(n)}</p>" for n in section.notes),
        _settings(section),
        *(_table(t) for t in section.tables),
        _controls(section),
        _figures(section),
        _comparisons(section),
        _manifest(section),
        "</section>",
    ]
    return "\n".join(p for p in parts if p)


def distinct_titles(sections: Sequence[Section]) -> list[Section]:
    """The sections, those whose titles repeat (two runs of one profile or config) told apart
    by their run directory's name, so that every heading and anchor is unique.

    Parameters
    ----------
    sections : sequence of Section
        The runs, in report order.

    Returns
    -------
    list of Section
        The same runs with unique titles.
    """
    counts = Counter(s.title for s in sections)
    out, seen = [], Counter[str]()
    for s in sections:
        title = s.title if counts[s.title] == 1 else f"{s.title}, {s.run.path.name}"
        seen[title] += 1
        if seen[title] > 1:  # the same directory name twice: number them
            title = f"{title} ({seen[title]})"
        out.append(replace(s, title=title))
    return out


def render_html(sections: Sequence[Section], title: str = "advlab report") -> str:
    """The whole report: a table of contents when there are several runs, then each run.

    Parameters
    ----------
    sections : sequence of Section
        The runs, at least one.
    title : str, default='advlab report'
        Page title.

    Returns
    -------
    str
        The whole self-contained page.
    """
    if not sections:
        raise ValueError("a report needs at least one run")
    sections = distinct_titles(sections)
    toc = ""
    if len(sections) > 1:
        items = "".join(f'<li><a href="#{s.anchor}">{_e(s.title)}</a></li>' for s in sections)
        toc = f"<nav><h2>Contents</h2><ul>{items}</ul></nav>"
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n"
        f'<h1>{_e(title)}</h1><p class="muted">generated {stamp} by advlab report; '
        "verdict: whether the paper's value lies inside our interval.</p>\n"
        + toc
        + "\n".join(render_section(s) for s in sections)
        + f"\n<script>{SCRIPT}</script></body></html>\n"
    )
