"""``scripts/compare_results.py``: a rerun's results against committed ones, counted by what
is equal to the digit and what lies inside the committed intervals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scripts.compare_results import compare


def _c(id_: str, ours: float, **extra: float) -> dict:
    return {"id": id_, "ours": ours, "paper": None, "unit": "%", **extra}


OLD = {c["id"]: c for c in [
    _c("fig2a.adv", 45.0, ci99=0.7), _c("fig2a.clean", 85.0, ci99=2.0),
    _c("fig3.adv", 40.0, ci99=5.0), _c("rate", 50.0, n=100), _c("gone", 1.0),
]}  # fmt: skip
NEW = {c["id"]: c for c in [
    _c("fig2a.adv", 45.9, ci99=0.7), _c("fig2a.clean", 85.0, ci99=2.0),
    _c("fig3.adv", 43.2, ci99=5.0), _c("rate", 51.0, n=100), _c("added", 1.0),
]}  # fmt: skip


def test_counts_identical_ids_means_inside_the_old_interval_and_the_largest_differences():
    got = compare(NEW, OLD)
    assert got["identical"] == 1 and got["shared"] == 4
    assert got["missing_in_new"] == ["gone"] and got["new_ids"] == ["added"]
    assert got["with_interval"] == 3 and got["inside_old_interval"] == 2  # 0.9 > 0.7 is out
    assert [o["id"] for o in got["outside"]] == ["fig2a.adv"]
    assert [o["id"] for o in got["largest"]][:3] == ["fig3.adv", "rate", "fig2a.adv"]
    only_fig2 = compare(NEW, OLD, ("fig2",))
    assert only_fig2["compared"] == 2 and only_fig2["inside_old_interval"] == 1


def test_the_command_prints_the_comparison(tmp_path: Path):
    for name, data in (("new", NEW), ("old", OLD)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"comparisons": list(data.values())}))
    script = Path(__file__).parents[1] / "scripts" / "compare_results.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "new.json"),
                          str(tmp_path / "old.json"), "--prefix", "fig3"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    got = json.loads(out)
    assert got["compared"] == 1 and got["inside_old_interval"] == 1
