"""The README's "Use it on your own things" examples run exactly as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Use it on your own things"


def _examples() -> list[str]:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_the_section_has_four_examples():
    assert len(_examples()) == 4


@pytest.mark.parametrize("index", range(4))
def test_readme_example_runs(index, capsys):
    code = _examples()[index]
    exec(compile(code, f"README example {index + 1}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip()  # each example prints its result
