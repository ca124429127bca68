from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import Field

from advlab.cli.main import main
from advlab.experiments import (
    Cache,
    ConfigError,
    ExperimentConfig,
    RunDirError,
    get_experiment,
    read_config_file,
    register,
    run_experiment,
    validate_config,
)


class CountConfig(ExperimentConfig):
    n_units: int = Field(5, ge=1)
    scale: float = 1.0


CALLS: list[int] = []
FAIL_AT: dict[str, int | None] = {"unit": None}


@register("test-count", CountConfig, profiles={"quick": {"n_units": 4}})
def _run_count(config, ctx):
    values = []
    for i in range(config.n_units):

        def compute(i=i):
            if FAIL_AT["unit"] == i:
                raise KeyboardInterrupt  # as if Ctrl-C arrived during unit i
            CALLS.append(i)
            rng = np.random.default_rng(config.seed + i)
            return {"i": i, "value": float(rng.normal() * config.scale)}

        values.append(ctx.unit(f"unit {i}", compute)["value"])
    return {
        "values": values,
        "comparisons": [{"id": "mean", "ours": float(np.mean(values)), "paper": 0.0, "unit": "x"}],
    }


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    FAIL_AT["unit"] = None


def test_unknown_key_and_wrong_type_are_named():
    with pytest.raises(ConfigError, match=r"n_unitz: unknown key"):
        validate_config(CountConfig, {"n_unitz": 3})
    with pytest.raises(ConfigError, match=r"n_units: .*integer"):
        validate_config(CountConfig, {"n_units": "many"})
    with pytest.raises(ConfigError, match=r"n_units: .*greater than or equal to 1"):
        validate_config(CountConfig, {"n_units": 0})


def test_yaml_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("experiment: test-count\nn_units: 3\nscale: 2.5\n")
    name, raw = read_config_file(path)
    assert name == "test-count" and raw == {"n_units": 3, "scale": 2.5}
    path.write_text("n_units: 3\n")
    with pytest.raises(ConfigError, match="missing key 'experiment'"):
        read_config_file(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_config_file(path)


def test_run_directory_contents(tmp_path):
    exp = get_experiment("test-count")
    results = run_experiment(
        exp, CountConfig(n_units=3, seed=7), tmp_path / "run", Cache(tmp_path / "c"), quiet=True
    )
    run = tmp_path / "run"
    for name in ("config.json", "manifest.json", "log.txt", "results.json"):
        assert (run / name).is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seeds"]["seed"] == 7 and "torch" in manifest["packages"]
    assert json.loads((run / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["comparisons"][0]["id"] == "mean"


def test_interrupted_run_resumes_without_recomputing(tmp_path):
    exp = get_experiment("test-count")
    config = CountConfig(n_units=5, seed=1)
    reference = run_experiment(exp, config, tmp_path / "ref", Cache(tmp_path / "c"), quiet=True)
    CALLS.clear()

    FAIL_AT["unit"] = 3
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, config, tmp_path / "run", Cache(tmp_path / "c"), quiet=True)
    assert CALLS == [0, 1, 2] and not (tmp_path / "run" / "results.json").exists()

    FAIL_AT["unit"] = None
    CALLS.clear()
    resumed = run_experiment(exp, config, tmp_path / "run", Cache(tmp_path / "c"), quiet=True)
    assert CALLS == [3, 4]  # finished units were not recomputed
    assert resumed == reference
    assert (tmp_path / "run" / "results.json").read_text() == (
        tmp_path / "ref" / "results.json"
    ).read_text()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["units_resumed"] == 3 and manifest["units_computed"] == 2


def test_run_dir_with_other_config_is_refused(tmp_path):
    exp = get_experiment("test-count")
    run_experiment(exp, CountConfig(n_units=2), tmp_path / "run", Cache(tmp_path / "c"), quiet=True)
    with pytest.raises(RunDirError, match="different config"):
        run_experiment(
            exp, CountConfig(n_units=3), tmp_path / "run", Cache(tmp_path / "c"), quiet=True
        )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty"):
        run_experiment(exp, CountConfig(), tmp_path / "other", Cache(tmp_path / "c"), quiet=True)


def test_cache_get_or_create(tmp_path):
    cache = Cache(tmp_path)
    calls = []

    def producer():
        calls.append(1)
        return {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}

    parts = {"arch": "x", "data": "abc"}
    first = cache.get_or_create("weights", parts, "1", producer)
    second = cache.get_or_create("weights", parts, "1", producer)
    assert len(calls) == 1 and cache.hits == 1 and cache.misses == 1
    assert np.array_equal(first["w"], second["w"])
    cache.get_or_create("weights", {**parts, "data": "abd"}, "1", producer)
    cache.get_or_create("weights", parts, "2", producer)  # new producer version, new entry
    assert len(calls) == 3
    assert cache.path("weights", parts, "1").with_suffix(".json").is_file()


def test_cli_reproduce_and_run(tmp_path, capsys):
    assert main(["reproduce", "test-count", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mean" in out and "ours" in out and "paper" in out
    config = tmp_path / "c.yaml"
    config.write_text("experiment: test-count\nn_units: 2\nbogus: 1\n")
    assert main(["run", str(config), "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert "bogus: unknown key" in capsys.readouterr().err
    assert main(["reproduce", "test-count", "--profile", "huge", "--out", str(tmp_path / "d")]) == 2
    assert main(["reproduce", "no-such-thing", "--out", str(tmp_path / "e")]) == 2


def test_demo_runs_end_to_end(tmp_path):
    exp = get_experiment("demo")
    config = validate_config(exp.config_cls, {"n_repeats": 2, "n_clusters": 30})
    results = run_experiment(
        exp, config, tmp_path / "demo", Cache(tmp_path / "c"), "quick", quiet=True
    )
    (acc,) = results["comparisons"]
    assert 80.0 < acc["ours"] <= 100.0  # k = 30 on 8x8 digits with majority vote: ~90 %
    assert len(results["repeats"]) == 2


def test_paper_values_are_data_with_their_sources():
    """The papers' numbers live in advlab/experiments/papers/*.yaml, each block with a source;
    the experiments compare with exactly those (no copy in the code)."""
    from advlab.experiments.builtin import mygdalis2020, omari2024, poison_cluster
    from advlab.experiments.reporting import paper_data, paper_info

    for name in ("omari2024", "mygdalis2020", "poison-cluster"):
        blocks = paper_info(name)["data"]
        assert blocks and all(b["source"] and "values" in b for b in blocks.values())
    assert (
        omari2024.PAPER_FIG3["mnist"]["1"]
        == [41.5, 73.9]
        == paper_data("omari2024", "fig3")["mnist"]["1"]
    )
    assert mygdalis2020.PAPER_TABLE1["wong_small"]["W-LC"] == 87.29
    assert poison_cluster.PAPER_FLIP == {"iris": 0.7, "breast-cancer": 0.6}
    with pytest.raises(KeyError, match=r"papers/omari2024\.yaml has no data block 'table9'"):
        paper_data("omari2024", "table9")


def test_profiles_are_yaml_files_that_advlab_run_reads():
    """Every built-in profile is a YAML file in the format of advlab run: reading it as a run
    config gives the experiment and exactly the keys reproduce --profile uses."""
    from importlib.resources import files

    root = Path(str(files("advlab.experiments") / "profiles"))
    paths = sorted(root.glob("*/*.yaml"))
    assert {p.parent.name for p in paths} >= {"omari2024", "mygdalis2020", "poison-cluster"}
    for path in paths:
        name, raw = read_config_file(path)
        exp = get_experiment(name)
        assert name == path.parent.name and exp.profiles[path.stem] == raw
        validate_config(exp.config_cls, raw, str(path))
    assert get_experiment("omari2024").profiles["quick"]["n_clusters"] == 200


def test_the_committed_configs_validate():
    """Every YAML file in configs/ (the runs the README quotes) names an experiment and holds
    only keys its config takes, with valid values."""
    paths = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert len(paths) >= 20
    for path in paths:
        name, raw = read_config_file(path)
        validate_config(get_experiment(name).config_cls, raw, str(path))


def test_set_reaches_keys_inside_blocks():
    """--set data.n=100 sets n inside data and keeps the block's other keys; a dotted key
    through a value that is not a block, and an unknown key inside one, are named."""
    from advlab.experiments.config import ConfigError, apply_overrides

    raw = {"data": {"name": "digits"}, "seed": 0}
    out = apply_overrides(raw, ["data.n=100", "model.bounds=[0, 2]"])
    assert out == {"data": {"name": "digits", "n": 100}, "seed": 0, "model": {"bounds": [0, 2]}}
    assert raw == {"data": {"name": "digits"}, "seed": 0}  # the profile itself is untouched
    with pytest.raises(ConfigError, match="seed is not a block of keys"):
        apply_overrides(raw, ["seed.x=1"])
    exp = get_experiment("evaluate")
    with pytest.raises(ConfigError, match=r"data\.nn: unknown key"):
        validate_config(exp.config_cls, apply_overrides(exp.profiles["quick"], ["data.nn=1"]))
