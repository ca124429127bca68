"""advlab report: intervals and verdicts, settings against the paper's, the Markdown blocks of
the README (regenerated from the committed results under docs/results/), the HTML page, and the
command line around them (show, --set, errors)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from advlab.cli.main import main
from advlab.experiments.reporting import build_section, paper_info
from advlab.report.comparisons import comparison_row, verdict_counts, wilson_interval
from advlab.report.document import ReportError, load_run, settings_rows
from advlab.report.html import render_html
from advlab.report.markdown import marked_blocks, render_markdown, replace_blocks

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "results"


# --- intervals and verdicts ----------------------------------------------------------------


def test_wilson_interval_matches_the_formula():
    # Wilson 95 %: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), p = 9/18
    z, n, p = 1.959963984540054, 18, 0.5
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    lo, hi = wilson_interval(50.0, 18)
    assert lo == pytest.approx(100 * (centre - half), abs=1e-9)
    assert hi == pytest.approx(100 * (centre + half), abs=1e-9)
    assert 20 < (hi - lo) / 2 < 23  # about +-21 points at n = 18, not the +-11 once claimed


def test_verdicts():
    inside = comparison_row({"id": "a", "ours": 80.0, "paper": 84.0, "unit": "%", "ci99": 5.0})
    outside = comparison_row({"id": "b", "ours": 80.0, "paper": 90.0, "unit": "%", "ci95": 5.0})
    control = comparison_row({"id": "c", "ours": 80.0, "paper": None, "unit": "%", "ci99": 1})
    single = comparison_row({"id": "d", "ours": 416.0, "paper": 3.0, "unit": "points"})
    rate = comparison_row({"id": "e", "ours": 50.0, "paper": 70.0, "unit": "%"}, n=18)
    assert [r.verdict for r in (inside, outside, control, single, rate)] == [
        "inside", "outside", "no paper value", "no interval", "inside"
    ]  # fmt: skip
    assert (inside.lo, inside.hi) == (75.0, 85.0)
    assert rate.interval == "Wilson 95 %" and rate.n == 18
    big = comparison_row({"id": "e", "ours": 50.0, "paper": 70.0, "unit": "%"}, n=1800)
    assert big.verdict == "outside"  # the same rate over many images excludes 70 %
    counts = verdict_counts([inside, outside, control, single, rate])
    assert counts == {"inside": 2, "outside": 1, "no paper value": 1, "no interval": 1}


def test_settings_rows_mark_differences():
    paper = {
        "n_clusters": {"paper": 856, "source": "Sec. IV"},
        "eta": {"paper": 0.5, "source": "Sec. IV"},
        "n_train": {"paper": None, "shown": "all 60,000", "source": "Sec. IV"},
        "models": {"paper": ["fc1", "pr"], "source": "Sec. 5"},
        "absent": {"paper": 1, "source": "x"},
    }
    config = {"n_clusters": 200, "eta": 0.5000000000001, "n_train": None, "models": ["fc1"]}
    rows = {r.key: r for r in settings_rows(config, paper)}
    assert rows["n_clusters"].differs and rows["n_clusters"].ours == "200"
    assert not rows["eta"].differs
    assert not rows["n_train"].differs and rows["n_train"].paper == "all 60,000"
    assert rows["models"].differs
    assert rows["absent"].differs and rows["absent"].ours == "not a setting of this run"


def test_every_builtin_paper_file_names_real_config_keys():
    from advlab.experiments import get_experiment

    for name in ("omari2024", "mygdalis2020", "poison-cluster"):
        info = paper_info(name)
        assert info["citation"] and info["settings"], name
        fields = get_experiment(name).config_cls.model_fields
        assert set(info["settings"]) <= set(fields), name


# --- the README's tables ---------------------------------------------------------------------


def _readme_blocks() -> dict[str, str]:
    return marked_blocks((ROOT / "README.md").read_text())


def test_readme_has_a_block_for_every_committed_run():
    committed = {p.name for p in COMMITTED.iterdir() if (p / "results.json").is_file()}
    assert committed == {
        "omari2024",
        "omari2024-label-free",
        "omari2024-fashion-full",
        "omari2024-fashion-full-fig2d",
        "omari2024-mnist-full",
        "omari2024-mnist-full-eps1.3",
        "omari2024-mnist-full-eps1.3-figures",
        "omari2024-fashion-full-eps1.3-fig3",
        "omari2024-fashion-full-eps1.3-figures",
        "mygdalis2020",
        "mygdalis2020-standard",
        "poison-cluster",
        "clustering-attacks",
        "transfer",
        "transfer-small_cnn-500",
        "transfer-art-100-steps",
        "transfer-resnet18-500",
        "transfer-small_cnn-500-fashion",
        "transfer-resnet18-500-fashion",
        "elbow",
        "evaluate",
        "evaluate-clustering",
        "evaluate-kmeans",
        "evaluate-kmeans-mnist",
        "evaluate-kmeans-digits-l2",
        "evaluate-digits-l2-smoothing",
        "evaluate-digits-l2-ibp",
        "evaluate-mnist-small_cnn",
    }
    assert set(_readme_blocks()) == committed


@pytest.mark.parametrize(
    "name", sorted(p.name for p in COMMITTED.iterdir() if (p / "results.json").is_file())
)
def test_readme_tables_are_generated_from_the_committed_results(name):
    expected = render_markdown(build_section(COMMITTED / name), name)
    assert _readme_blocks()[name] == expected, (
        f"README's {name} tables differ from docs/results/{name}; regenerate with "
        "`advlab report docs/results/* --markdown --update README.md`"
    )


def test_readme_check_breaks_when_a_committed_result_changes(tmp_path):
    copy = tmp_path / "omari2024"
    shutil.copytree(COMMITTED / "omari2024", copy)
    results = json.loads((copy / "results.json").read_text())
    results["comparisons"][1]["ours"] += 1.0  # fig2a.clean.first
    (copy / "results.json").write_text(json.dumps(results))
    changed = render_markdown(build_section(copy), "omari2024")
    assert changed != _readme_blocks()["omari2024"]


def test_provenance_says_when_units_were_resumed_and_what_n_counts():
    from advlab.report.markdown import _resumed

    assert _resumed({"units_resumed": 0, "units_computed": 5}) == ""
    assert _resumed({"units_resumed": 3, "units_computed": 2}) == (
        " (3 of 5 units resumed from an earlier pass, not timed here)"
    )
    row = comparison_row({"id": "x", "ours": 0.3, "paper": None, "unit": "SSIM points",
                          "ci95": 0.1, "n": 200, "n_of": "images"})  # fmt: skip
    assert row.interval == "95 % t (200 images)" and row.lo == pytest.approx(0.2)
    assert comparison_row({"id": "y", "ours": 1.0, "paper": 1.5, "unit": "%", "ci99": 0.2,
                           "n": 3}).interval == "99 % t (3 reps)"  # fmt: skip


def test_update_rewrites_only_the_named_blocks(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "intro\n<!-- advlab-report omari2024 start -->\nold\n<!-- advlab-report omari2024 end -->"
        "\nmiddle\n<!-- advlab-report other start -->\nkeep\n<!-- advlab-report other end -->\n"
    )
    assert main(["report", str(COMMITTED / "omari2024"), "--markdown", "--update", str(doc)]) == 0
    text = doc.read_text()
    assert "old" not in text and "keep" in text and text.startswith("intro\n")
    assert marked_blocks(text)["omari2024"] == render_markdown(
        build_section(COMMITTED / "omari2024"), "omari2024"
    )
    # a file without the block: one line naming it, nothing written
    other = tmp_path / "other.md"
    other.write_text("nothing here\n")
    assert main(["report", str(COMMITTED / "omari2024"), "--markdown", "--update", str(other)]) == 2
    assert "no marked block for omari2024" in capsys.readouterr().err
    assert other.read_text() == "nothing here\n"


def test_replace_blocks_leaves_unknown_blocks():
    text = "<!-- advlab-report a start -->\nx\n<!-- advlab-report a end -->"
    new, replaced = replace_blocks(text, {"b": "y"})
    assert new == text and replaced == []


# --- reports of a real tiny run --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two tiny real runs: poison-cluster on Iris (with figures) and the digits demo."""
    root = tmp_path_factory.mktemp("runs")
    cache = root / "cache"
    poison = ["reproduce", "poison-cluster", "--quiet", "--cache", str(cache), "--out",
              str(root / "poison"), "--set", "datasets=[iris]", "--set", "n_seeds=2",
              "--set", "attacks=[none, mimicry, uniform_outliers]",
              "--set", "defenses=[kmeans, trimmed]"]  # fmt: skip
    assert main(poison) == 0
    demo = ["reproduce", "demo", "--quiet", "--cache", str(cache), "--out", str(root / "demo"),
            "--set", "n_repeats=2", "--set", "n_clusters=20"]  # fmt: skip
    assert main(demo) == 0
    return root / "poison", root / "demo"


def test_set_overrides_are_recorded_in_the_run(tiny_runs):
    poison, demo = tiny_runs
    config = json.loads((poison / "config.json").read_text())
    assert config["profile"] == "quick+set"
    assert config["config"]["n_seeds"] == 2 and config["config"]["datasets"] == ["iris"]
    manifest = json.loads((poison / "manifest.json").read_text())
    assert manifest["unit_seconds"] and all(v >= 0 for v in manifest["unit_seconds"].values())
    assert "commit" in manifest
    assert json.loads((demo / "config.json").read_text())["config"]["n_clusters"] == 20


def test_html_report_is_self_contained(tiny_runs, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", *map(str, tiny_runs), "--html", str(out)]) == 0
    page = out.read_text()
    assert page.count("<section id=") == 2 and "<nav>" in page  # table of contents
    assert "data:image/png;base64," in page
    for external in ("http://", "https://", "<link", 'src="http', "@import"):
        assert external not in page, external
    section = build_section(tiny_runs[0])
    assert any(s.differs and s.key == "n_seeds" for s in section.settings)
    assert "Settings that differ from the paper" in page
    assert "uniform_outliers.survival.iris" in page  # a control with its value


def test_html_sections_of_runs_with_one_profile_are_told_apart(tmp_path):
    """Two runs of one profile (and the same run twice) get distinct headings and anchors; a
    custom run is titled by its config file."""
    import re
    import shutil

    other = tmp_path / "omari2024-rerun"
    shutil.copytree(COMMITTED / "omari2024", other)
    runs = [COMMITTED / "omari2024", other, other, COMMITTED / "omari2024-mnist-full-eps1.3"]
    page = render_html([build_section(r) for r in runs])
    ids = re.findall(r'<section id="([^"]+)">', page)
    assert len(ids) == 4 and len(set(ids)) == 4
    headings = re.findall(r"<h2>([^<]+)</h2>", page)
    assert "omari2024 (quick), omari2024" in headings
    assert "omari2024 (quick), omari2024-rerun (2)" in headings
    assert "omari2024 (omari2024-mnist-full-eps1.3-small_cnn.yaml)" in headings


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--html", str(tmp_path / "r.html")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("{broken")
    assert main(["report", str(tmp_path / "run"), "--markdown"]) == 2
    err = capsys.readouterr().err
    assert "damaged results.json" in err and err.count("\n") == 1
    with pytest.raises(ReportError):
        main(["report", str(tmp_path / "run"), "--markdown", "--debug"])
    assert main(["report", str(COMMITTED / "omari2024")]) == 2  # neither --html nor --markdown
    with pytest.raises(ReportError):
        load_run(tmp_path / "nope")


# --- show and --set ------------------------------------------------------------------------


def test_show_prints_a_config_that_run_accepts(tmp_path, capsys):
    assert main(["show", "demo", "--profile", "quick", "--set", "n_clusters=12"]) == 0
    text = capsys.readouterr().out
    assert "n_clusters: 12" in text and text.splitlines()[1] == "experiment: demo"
    config = tmp_path / "demo.yaml"
    config.write_text(text)
    out = tmp_path / "run"
    assert main(["run", str(config), "--quiet", "--out", str(out), "--cache",
                 str(tmp_path / "c"), "--set", "n_repeats=2"]) == 0  # fmt: skip
    assert json.loads((out / "config.json").read_text())["config"]["n_clusters"] == 12


def test_bad_set_names_the_key_in_one_line(tmp_path, capsys):
    args = ["reproduce", "demo", "--quiet", "--out", str(tmp_path / "r"), "--set", "n_clustrs=5"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "n_clustrs: unknown key" in err
    assert main(["show", "demo", "--set", "n_clusters"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["show", "demo", "--set", "n_clusters=-3"]) == 2
    assert "n_clusters" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_debug_shows_the_traceback(tmp_path):
    cmd = [sys.executable, "-m", "advlab.cli.main", "show", "demo", "--set", "bogus=1"]
    plain = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.count("\n") <= 3  # the message names the key, no stack
    debug = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, cwd=ROOT)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "bogus" in debug.stderr


def test_help_and_list_read_cleanly(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "examples:" in text
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    starts = {len(line) - len(line.split("  ", 1)[1].lstrip()) for line in lines}
    assert len(starts) == 1, lines  # the profiles column starts at the same place on every line


# --- the HTML page in a real browser -------------------------------------------------------


def _browser():
    """A headless Chromium driven by selenium, or a skip naming what is missing."""
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from scripts.screenshot_report import chromium

    try:
        return chromium(1400, 2000, console_log=True)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_html_report_in_headless_chromium(tiny_runs, tmp_path):
    out = tmp_path / "report.html"
    sections = [build_section(p) for p in tiny_runs]
    out.write_text(render_html(sections))
    driver = _browser()
    try:
        driver.get(out.as_uri())
        n_tables = driver.execute_script("return document.querySelectorAll('table').length")
        expected = sum(len(s.tables) + 1 + (1 if s.settings else 0) + 2 for s in sections)
        assert n_tables >= expected
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
        )
        assert len(images) == sum(len(s.run.figures) for s in sections) >= 3
        assert all(done and width > 0 for _alt, done, width in images), images
        # the inline script works: sorting a comparison table by 'ours' reorders its rows
        table_id = f"{sections[0].anchor}-comparisons"
        before = driver.execute_script(
            f"return Array.from(document.getElementById('{table_id}').tBodies[0].rows)"
            ".map(r => r.cells[2].textContent)"
        )
        driver.execute_script(
            f"document.getElementById('{table_id}').tHead.rows[0].cells[2].click()"
        )
        after = driver.execute_script(
            f"return Array.from(document.getElementById('{table_id}').tBodies[0].rows)"
            ".map(r => r.cells[2].textContent)"
        )
        assert after == sorted(before, key=float) and sorted(after) == sorted(before)
        assert driver.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 10_000
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
    finally:
        driver.quit()


def test_resumed_run_keeps_each_unit_time(tmp_path):
    args = ["reproduce", "demo", "--quiet", "--out", str(tmp_path / "r"), "--cache",
            str(tmp_path / "c"), "--set", "n_repeats=2", "--set", "n_clusters=10"]  # fmt: skip
    assert main(args) == 0
    first = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert main(args) == 0
    again = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert again["units_resumed"] == first["units_computed"] > 0
    assert again["unit_seconds"] == first["unit_seconds"]  # the stored times, not 0
