"""Nothing lost, nothing silently wrong: a cache and unit files that verify what they load,
strict JSON, the user's umask, one-line CLI errors, config checks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from advlab.cli.main import main
from advlab.experiments import ConfigError, get_experiment, run_experiment, validate_config
from advlab.utils.cache import Cache, CacheCorruptionWarning
from advlab.utils.io import atomic_write_json
from tests.conftest import needs_mnist
from tests.test_experiments import CALLS, CountConfig  # registers "test-count"


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "emptied":
        path.write_bytes(b"")
    else:  # bytes changed in the middle of the tensor data, header intact
        middle = len(data) - 8
        path.write_bytes(
            data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 4]) + data[middle + 4 :]
        )


@pytest.mark.parametrize("how", ["truncated", "emptied", "changed"])
def test_a_damaged_cache_entry_is_reported_moved_aside_and_recomputed(tmp_path, how):
    cache = Cache(tmp_path)
    calls = []

    def producer():
        calls.append(1)
        return {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}

    parts = {"arch": "x"}
    first = cache.get_or_create("weights", parts, "1", producer)
    path = cache.path("weights", parts, "1")
    _damage(path, how)
    assert len(cache.verify().bad) == 1
    with pytest.warns(CacheCorruptionWarning, match=str(path.name)):
        again = cache.get_or_create("weights", parts, "1", producer)
    assert len(calls) == 2 and np.array_equal(first["w"], again["w"])
    assert list(path.parent.glob("*.corrupt-*"))  # kept for inspection
    assert cache.verify().bad == []


def test_cache_verify_cli(tmp_path, capsys):
    cache = Cache(tmp_path)
    cache.save("weights", {"a": 1}, "1", {"w": np.ones(8, dtype=np.float32)})
    cache.save("weights", {"a": 2}, "1", {"w": np.zeros(8, dtype=np.float32)})
    assert main(["cache", "verify", "--cache", str(tmp_path)]) == 0
    _damage(cache.path("weights", {"a": 2}, "1"), "changed")
    assert main(["cache", "verify", "--cache", str(tmp_path)]) == 1
    assert "1 entries ok, 1 damaged" in capsys.readouterr().out
    with pytest.warns(CacheCorruptionWarning):
        assert main(["cache", "verify", "--repair", "--cache", str(tmp_path)]) == 0
    assert main(["cache", "verify", "--cache", str(tmp_path)]) == 0


@pytest.mark.parametrize("how", ["truncated", "emptied", "edited"])
def test_a_damaged_unit_file_is_recomputed_with_identical_results(tmp_path, how):
    exp = get_experiment("test-count")
    config = CountConfig(n_units=3, seed=4)
    reference = run_experiment(exp, config, tmp_path / "ref", Cache(tmp_path / "c"), quiet=True)
    run_experiment(exp, config, tmp_path / "run", Cache(tmp_path / "c"), quiet=True)
    unit = tmp_path / "run" / "units" / "unit_1.json"
    if how == "edited":  # a plausible value, valid JSON: only the hash tells
        record = json.loads(unit.read_text())
        record["result"]["value"] = 0.0
        unit.write_text(json.dumps(record))
    else:
        _damage(unit, how)
    CALLS.clear()
    with pytest.warns(CacheCorruptionWarning, match="unit_1.json"):
        again = run_experiment(exp, config, tmp_path / "run", Cache(tmp_path / "c"), quiet=True)
    assert CALLS == [1] and again == reference
    assert (tmp_path / "run" / "results.json").read_bytes() == (
        tmp_path / "ref" / "results.json"
    ).read_bytes()


def test_json_is_strict_and_files_follow_the_umask(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {"a": float("nan"), "b": [1.0, float("inf")]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None]}
    old = os.umask(0o022)
    try:
        mode = atomic_write_json(tmp_path / "m.json", {}).stat().st_mode & 0o777
    finally:
        os.umask(old)
    assert mode == 0o644


def test_config_values_are_checked_by_key():
    omari = get_experiment("omari2024").config_cls
    with pytest.raises(ConfigError, match=r"repetitions: .*boolean"):
        validate_config(omari, {"repetitions": True})
    with pytest.raises(ConfigError, match=r"device: .*unknown device 'gpu0'"):
        validate_config(omari, {"device": "gpu0"})
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"device: .*no CUDA GPU"):
            validate_config(omari, {"device": "cuda"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "{tmp}"], "is a folder; give the path of a YAML config file"),
        (["run", "{tmp}/missing.yaml"], "no such config file"),
        (["reproduce", "test-count", "--out", "{tmp}/file"], "--out {tmp}/file is a file"),
        (
            ["reproduce", "test-count", "--out", "{tmp}/o", "--cache", "{tmp}/file"],
            "--cache {tmp}/file is a file",
        ),
        (["run", "{tmp}/bad.yaml"], "'experiment' must be the name of an experiment, got 123"),
    ],
)
def test_cli_errors_are_one_line_naming_the_path(tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "bad.yaml").write_text("experiment: 123\n")
    argv = [a.format(tmp=tmp_path) for a in args] + ["--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message.format(tmp=tmp_path) in err
    with pytest.raises((ConfigError, ValueError)):
        main([*argv, "--debug"])  # the traceback, for whoever wants it


KILL_CONFIG = """experiment: omari2024
datasets: [digits]
surrogate: mlp
surrogate_data: digits
surrogate_epochs: 5
n_clusters: 15
repetitions: 2
beta: 3
max_iter: 2
whitebox_iter: 2
figures: [fig2ab]
"""


def _start(tmp_path, out):
    import subprocess
    import sys

    env = {**os.environ, "ADVLAB_CACHE": str(tmp_path / "cache"), "ADVLAB_MALLOC_TUNING": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "advlab.cli.main", "run", str(tmp_path / "c.yaml"), "--out",
         str(out), "--quiet"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.parametrize("kill_when", ["first-checkpoint", "first-unit", "second-checkpoint"])
def test_sigkill_of_a_real_run_then_rerun_gives_byte_identical_results(tmp_path, kill_when):
    """Without MNIST: the digits profile of omari2024 in a child process, killed with SIGKILL
    (the whole process group) at a point of its progress, then rerun into the same folder."""
    import signal
    import time

    (tmp_path / "c.yaml").write_text(KILL_CONFIG)
    reference = _start(tmp_path, tmp_path / "ref")
    assert reference.wait(timeout=600) == 0, reference.stderr.read().decode()
    run = tmp_path / "run"
    child = _start(tmp_path, run)

    def reached() -> bool:
        units = list((run / "units").glob("*.json")) if (run / "units").is_dir() else []
        ckpts = (
            list((run / "checkpoints").glob("*.safetensors"))
            if (run / "checkpoints").is_dir()
            else []
        )
        if kill_when == "first-unit":
            return bool(units)
        if kill_when == "second-checkpoint":
            return len(ckpts) >= 2
        return bool(ckpts)

    deadline = time.monotonic() + 600
    while not reached() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert not (run / "results.json").exists()  # killed before the end
    again = _start(tmp_path, run)
    assert again.wait(timeout=600) == 0, again.stderr.read().decode()
    assert (run / "results.json").read_bytes() == (tmp_path / "ref" / "results.json").read_bytes()


def test_a_damaged_checkpoint_restarts_its_unit(tmp_path):
    from advlab.experiments.runner import RunContext

    ctx = RunContext.__new__(RunContext)
    ctx.out = tmp_path
    ctx.save_checkpoint("u", {"centers": np.ones((2, 3), dtype=np.float32)}, {"history": [1]})
    arrays, meta = ctx.load_checkpoint("u")
    assert meta == {"history": [1]} and arrays["centers"].shape == (2, 3)
    _damage(ctx._checkpoint_path("u"), "changed")
    with pytest.warns(CacheCorruptionWarning, match="u.safetensors"):
        assert ctx.load_checkpoint("u") is None


def test_small_refusals_name_their_parameter():
    from advlab.attacks.evasion import KMeansMinimalAttack, KMeansPGD, kmeans_certified_radius
    from advlab.attacks.poisoning import gaussian_noise
    from advlab.defenses import KMeansMinusMinus, TrimmedKMeans
    from advlab.experiments.builtin.poison_cluster import flip_ratio_sweep
    from advlab.metrics import mean_ci

    X, y = np.random.default_rng(0).normal(size=(60, 2)), np.arange(60) % 3
    with pytest.raises(ValueError, match="sigma must be finite"):
        gaussian_noise(X, y, sigma=float("inf"))
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci([])
    with pytest.raises(ValueError, match=r"level=1\.5"):
        mean_ci([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="n_seeds must be >= 1"):
        flip_ratio_sweep(X, y, n_seeds=0)
    with pytest.raises(ValueError, match="n_outliers=60 discards 60 of n_samples=60"):
        KMeansMinusMinus(3, n_outliers=60).fit(X)
    with pytest.raises(ValueError, match=r"trim=0\.99 discards 59"):
        TrimmedKMeans(3, trim=0.99).fit(X)
    with pytest.raises(ValueError, match="'n_outliers' parameter"):
        KMeansMinusMinus(3, n_outliers=2.5).fit(X)
    nan_centres = np.full((3, 2), np.nan)
    for make in (lambda: KMeansMinimalAttack(nan_centres), lambda: KMeansPGD(nan_centres, None, 0.1, 2),
                 lambda: kmeans_certified_radius(nan_centres, X)):  # fmt: skip
        with pytest.raises(ValueError, match="finite"):
            make()


def test_a_device_this_machine_lacks_is_named_by_every_estimator(tmp_path):
    """``device="gpu"`` (not a torch device) and, on a machine without CUDA, ``device="cuda"``
    are a ValueError naming the device, from KMeans (fit, predict, fit_predict_many, and the
    estimators built on it), M-SVDD-D and the zoo's training: torch's own errors were an
    AssertionError ('Torch not compiled with CUDA enabled') or a list of 20 device types."""
    import torch

    from advlab.cluster import KMeans, SeededKMeans
    from advlab.data import Dataset
    from advlab.defenses import MSVDDDefense
    from advlab.models import train_classifier

    X = np.random.default_rng(0).random((40, 4))
    y = np.arange(40) % 2
    missing = ["gpu"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:0"])

    def calls(device: str) -> list:
        fitted = KMeans(2, random_state=0).fit(X)
        fitted.device = device
        data = Dataset.from_arrays(X, y)
        return [
            lambda: KMeans(2, device=device).fit(X),
            lambda: fitted.predict(X),
            lambda: KMeans(2, init=X[:2], device=device).fit_predict_many(np.stack([X, X])),
            lambda: SeededKMeans(device=device).fit(X, np.where(y == 0, 0, -1)),
            lambda: MSVDDDefense(device=device).fit(X, y),
            lambda: train_classifier("mlp", data, device=device, cache=Cache(tmp_path)),
        ]

    for device in missing:
        message = "unknown device" if device == "gpu" else "has no CUDA GPU"
        for make in calls(device):
            with pytest.raises(ValueError, match=f"{device}.*{message}|{message}.*{device}"):
                make()


def test_numbers_given_as_zero_dimensional_tensors_are_taken():
    """A budget held as a 0-d tensor or numpy scalar (``eps = torch.tensor(8 / 255)``, a value
    read off an array) is the number it holds (it was refused: 'eps must be a number, got
    tensor(0.0300)'); tensors of one value per sample (an array budget is one per feature of
    an input), booleans and NaN still are refused."""
    import torch
    from torch import nn

    from advlab.attacks.evasion import FGSM, PGD

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x = torch.rand(10, 1, 3, 4)
    y = net(x).argmax(1)
    ref = PGD(net, eps=0.2, max_iter=3, random_state=0)(x, y).x_adv
    for eps in (torch.tensor(0.2), np.float32(0.2), np.array(0.2)):
        ours = PGD(net, eps=eps, max_iter=3, random_state=0)(x, y).x_adv
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    per_sample = (
        r"eps has shape \(10,\), which does not broadcast to one input of shape \(1, 3, 4\)"
    )
    with pytest.raises(ValueError, match=per_sample):
        FGSM(net, eps=torch.full((10,), 0.2))(x, y)
    with pytest.raises(ValueError, match="max_iter must be an integer"):
        PGD(net, eps=0.2, max_iter=torch.tensor(2.5))
    with pytest.raises(ValueError, match="eps must be a number, got tensor\\(True\\)"):
        FGSM(net, eps=torch.tensor(True))
    with pytest.raises(ValueError, match="eps must be finite"):
        FGSM(net, eps=torch.tensor(float("nan")))


@needs_mnist
def test_data_check_names_a_damaged_file_and_tells_missing_from_damaged(
    tmp_path, monkeypatch, capsys
):
    import gzip
    import shutil
    from pathlib import Path

    source = Path(os.environ["ADVLAB_DATA"]) / "mnist"
    shutil.copytree(source, tmp_path / "mnist")
    monkeypatch.setenv("ADVLAB_DATA", str(tmp_path))
    assert main(["data", "check", "mnist"]) == 0
    damaged = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(damaged.read_bytes()))
    data[100] ^= 1  # one byte changed
    damaged.write_bytes(gzip.compress(bytes(data)))
    assert main(["data", "check", "mnist"]) == 2
    assert "t10k-labels-idx1-ubyte.gz" in capsys.readouterr().err
    monkeypatch.setenv("ADVLAB_DATA", str(tmp_path / "none"))
    assert main(["data", "check", "fashion-mnist"]) == 3  # absent: the demo falls back to digits


def test_a_damaged_run_config_is_one_line(tmp_path, capsys):
    assert main(["reproduce", "test-count", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    (tmp_path / "r" / "config.json").write_text("{garbage")
    assert main(["reproduce", "test-count", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "config.json is damaged" in capsys.readouterr().err
