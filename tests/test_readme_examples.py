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


def test_the_section_has_ten_examples():
    assert len(_examples()) == 10


PRINTED = {  # example index: figures the README quotes from its output
    1: ("k-means accuracy 87.2%", "PGD leaves 73.1% correct", "the exact attack 10.4%",
        "the certificate guarantees 10.4%"),
    7: ("all 30 features may move: median minimal perturbation 0.37 std",
        "PGD leaves 35.5% correct", "10 features may move: median minimal perturbation 1.09 std",
        "PGD leaves 75.1% correct"),
    8: ("clean accuracy 96.4%", "open box: PGD leaves 18.9% robust, the exact verifier proves 17.2%",
        "observed range box: PGD leaves 19.5% robust, the exact verifier proves 17.8%"),
    9: ("clean accuracy 94.0%",
        "L2 0.25: PGD leaves 83.9% robust, linear bounds certify 78.1%, the smoothed classifier is certified on 75.6%",
        "L2 0.5: PGD leaves 61.0% robust, linear bounds certify 40.6%, the smoothed classifier is certified on 46.3%"),
}  # fmt: skip


@pytest.mark.parametrize("index", range(10))
def test_readme_example_runs(index, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples 5 to 7 write their files here
    code = _examples()[index]
    exec(compile(code, f"README example {index + 1}", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert out.strip()  # each example prints its result
    for figure in PRINTED.get(index, ()):
        assert figure in out


def _run_as_printed(index: int, config_name: str, capsys) -> None:
    """Example ``index`` (0-based python block), the YAML block after it saved as
    ``config_name`` and the commands of the bash block after that, as printed."""
    from advlab.cli.main import main

    section = _section()
    exec(compile(_examples()[index], f"README example {index + 1}", "exec"),
         {"__name__": "__readme__"})  # fmt: skip
    after = section[section.index(_examples()[index]) :]
    Path(config_name).write_text(re.findall(r"```yaml\n(.*?)```", after, flags=re.S)[0])
    commands = re.findall(r"```bash\n(.*?)```", after, flags=re.S)[0]
    for line in commands.strip().splitlines():
        assert line.startswith("advlab ")
        assert main(shlex.split(line.split("#")[0])[1:]) == 0, capsys.readouterr().err


CONFIG_RUNS = {  # example index: (config file, run folder, ids its results must hold)
    4: ("evaluate.yaml", "runs/mine", {"clean.accuracy", "pgd.linf.eps0.03.robust_accuracy",
                                       "deepfool.l2.median_distance",
                                       "worst_case.linf.eps0.03.robust_accuracy",
                                       "ibp.linf.eps0.01.certified_accuracy"}),
    5: ("evaluate-clustering.yaml", "runs/wine", {"clean.ari_labels", "control.seed_to_seed.ari",
                                                  "mimicry.b0.05.ari_clean",
                                                  "control.resample.b0.05.ari_clean",
                                                  "gaussian_noise.b0.3.changed"}),
    6: ("evaluate-kmeans.yaml", "runs/kmeans", {"kmeans.clean_accuracy",
                                                "transfer.linf.eps0.2.accuracy",
                                                "heldout.linf.eps0.2.accuracy",
                                                "trained.whitebox.linf.eps0.2.accuracy",
                                                "certified.linf.eps0.1.accuracy"}),
}  # fmt: skip


@pytest.mark.parametrize("index", sorted(CONFIG_RUNS))
def test_the_config_examples_run_as_printed(index, tmp_path, monkeypatch, capsys):
    """Examples 5 to 7: their files, their YAML config and their two commands, as printed;
    the run holds the ids the README names and its report was written."""
    config_name, run, ids = CONFIG_RUNS[index]
    monkeypatch.chdir(tmp_path)
    _run_as_printed(index, config_name, capsys)
    results = json.loads(Path(run, "results.json").read_text())
    assert ids <= {c["id"] for c in results["comparisons"]}
    assert Path(run, "report.html").is_file()
