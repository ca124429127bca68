"""The README's "Use it on your own things" examples run exactly as printed."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Use it on your own things"


def _examples() -> list[str]:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def _section() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    return text[start : text.index("\n## ", start + len(SECTION))]


def test_the_section_has_five_examples():
    assert len(_examples()) == 5


@pytest.mark.parametrize("index", range(5))
def test_readme_example_runs(index, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # example 5 writes its files here
    code = _examples()[index]
    exec(compile(code, f"README example {index + 1}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip()  # each example prints its result


def test_the_evaluate_example_runs_as_printed(tmp_path, monkeypatch, capsys):
    """Example 5: its files, its evaluate.yaml and its two commands, as printed."""
    from advlab.cli.main import main

    monkeypatch.chdir(tmp_path)
    exec(compile(_examples()[4], "README example 5", "exec"), {"__name__": "__readme__"})
    (config,) = re.findall(r"```yaml\n(.*?)```", _section(), flags=re.S)
    Path("evaluate.yaml").write_text(config)
    (commands,) = re.findall(r"```bash\n(.*?)```", _section(), flags=re.S)
    for line in commands.strip().splitlines():
        assert line.startswith("advlab ")
        assert main(shlex.split(line)[1:]) == 0, capsys.readouterr().err
    results = json.loads(Path("runs/mine/results.json").read_text())
    ids = {c["id"] for c in results["comparisons"]}
    assert {"clean.accuracy", "pgd.linf.eps0.03.robust_accuracy", "deepfool.l2.median_distance",
            "worst_case.linf.eps0.03.robust_accuracy"} <= ids  # fmt: skip
    assert "worst case" in Path("runs/mine/report.html").read_text()
