"""``scripts/gpu_determinism.py``, issue #16's check for a GPU machine: its comparison of
runs, and the whole check on CPU with a small digits run (three runs must agree)."""

from __future__ import annotations

import json
import math

from scripts.gpu_determinism import compare, main


def test_compare_names_ids_that_differ_or_are_missing_and_treats_nan_as_equal() -> None:
    a = {"x": 1.0, "y": math.nan, "z": 2.0, "only_a": 0.0}
    b = {"x": 1.0, "y": math.nan, "z": 2.0000001, "only_b": 0.0}
    got = compare(a, b)
    assert got == {"only_one": ["only_a", "only_b"], "differ": 1, "first": [["z", 2.0, 2.0000001]]}
    assert compare(a, dict(a)) == {"only_one": [], "differ": 0, "first": []}


def test_the_check_passes_on_cpu(tmp_path, capsys) -> None:
    """Serial twice and 2 local workers, each with its own empty cache, on a small digits
    profile: the same comparisons, so the check reports reproducible and exits 0."""
    code = main(["--device", "cpu", "--out", str(tmp_path), "--set", "repetitions=1",
                 "--set", "beta=2", "--set", "figures=[fig2ab]"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["reproducible"] and report["cuda_test_exit_status"] is None
    assert report["comparisons"] > 10
    assert all(p == {"only_one": [], "differ": 0, "first": []} for p in report["pairs"].values())
    assert len(report["pairs"]) == 3
