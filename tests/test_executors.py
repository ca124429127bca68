"""Executors: the same results.json whether units run serially, in local worker processes or on
a Dask distributed cluster; a worker killed mid-run and an interrupted client lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from advlab.cli.main import main
from advlab.experiments import Cache, get_experiment, run_experiment, validate_config
from advlab.experiments.executors import (
    DaskExecutor,
    ExecutorError,
    LocalExecutor,
    SerialExecutor,
    WorkerError,
    make_executor,
)
from tests.conftest import needs_fashion, needs_mnist

TINY_POISON = {
    "datasets": ["iris"],
    "n_seeds": 3,
    "attacks": ["none", "uniform_outliers", "mimicry"],
    "defenses": ["kmeans", "kmeans--"],
    "budgets": [0.05],
    "budget_attacks": ["uniform_outliers", "mimicry"],
}
N_UNITS = 3 * 3 + 1 + 2 * 3 + 1  # attack x seed, flip sweep, budget x seed, reversal


def _run(tmp_path: Path, name: str, executor=None, config=TINY_POISON) -> str:
    exp = get_experiment("poison-cluster")
    cfg = validate_config(exp.config_cls, config)
    run_experiment(exp, cfg, tmp_path / name, Cache(tmp_path / "cache"), quiet=True,
                   executor=executor)  # fmt: skip
    return (tmp_path / name / "results.json").read_text()


@pytest.fixture(scope="module")
def serial_results(tmp_path_factory) -> str:
    return _run(tmp_path_factory.mktemp("serial"), "run")


@pytest.fixture
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield cluster, client
    client.close()
    cluster.close()


def test_bad_executor_options_are_named():
    with pytest.raises(ExecutorError, match="--workers must be >= 1"):
        make_executor("local", workers=0)
    with pytest.raises(ExecutorError, match="--scheduler ADDRESS"):
        make_executor("dask")
    with pytest.raises(ExecutorError, match="need --executor local or dask"):
        make_executor("serial", workers=2)
    with pytest.raises(ExecutorError, match="unknown executor 'spark'"):
        make_executor("spark")
    assert isinstance(make_executor(), SerialExecutor)


def test_unreachable_scheduler_is_a_clear_cli_error(tmp_path, capsys):
    pytest.importorskip("distributed")
    code = main(["reproduce", "poison-cluster", "--out", str(tmp_path / "r"), "--quiet",
                 "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1"])  # fmt: skip
    assert code == 2
    assert "could not reach the Dask scheduler at tcp://127.0.0.1:1" in capsys.readouterr().err


def _threads_seen() -> dict[str, int]:
    """The torch threads and the largest BLAS/OpenMP pool a job sees where it runs."""
    import torch
    from threadpoolctl import threadpool_info

    return {"torch": torch.get_num_threads(),
            "blas": max((p["num_threads"] for p in threadpool_info()), default=0)}  # fmt: skip


@pytest.mark.parametrize("threads", [1, 2])
def test_every_executor_runs_units_on_the_same_threads(threads, dask_cluster):
    """A job sees ``threads_per_unit`` torch threads and BLAS/OpenMP threads whichever executor
    runs it (the Dask workers were started with one thread, the local ones inherit nothing),
    and the client's own setting is restored afterwards."""
    import torch

    _, client = dask_cluster
    before = torch.get_num_threads()
    expected = {"torch": threads, "blas": threads}
    executors = [SerialExecutor(threads), LocalExecutor(2, threads), DaskExecutor(client, threads)]
    for executor in executors:
        try:
            seen = {key: r for key, r, _ in executor.run({"a": _threads_seen, "b": _threads_seen})}
        finally:
            executor.close()
        assert seen == {"a": expected, "b": expected}, executor.name
    assert torch.get_num_threads() == before


def _missing_data() -> dict[str, object]:
    raise FileNotFoundError("data.path 'rows.npz': no such file in the current directory /x")


def _missing_module() -> dict[str, object]:
    from advlab.experiments.builtin._user import import_object

    return import_object("not_installed_here:make", "model.factory")()


def test_a_file_or_module_a_worker_lacks_is_named_with_its_machine(dask_cluster):
    """A unit that fails in a worker because that machine lacks the data file or the user's
    module: a ``WorkerError`` (one CLI line) naming the machine and the process, not the
    worker's traceback; the serial executor raises the error itself."""
    import socket

    _, client = dask_cluster
    for executor in (LocalExecutor(1), DaskExecutor(client)):
        try:
            for job, what in ((_missing_data, "rows.npz"), (_missing_module, "not_installed")):
                with pytest.raises(WorkerError, match=f"failed on {socket.gethostname()} .*{what}"):
                    list(executor.run({"a": job}))
        finally:
            executor.close()
    with pytest.raises(FileNotFoundError, match=r"rows\.npz"):
        list(SerialExecutor().run({"a": _missing_data}))


def _kernels_seen() -> dict[str, object]:
    import torch

    return {"deterministic": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}  # fmt: skip


@pytest.mark.parametrize("cuda", [False, True])
def test_units_of_a_cuda_run_use_deterministic_kernels(cuda, monkeypatch):
    """When the run computes on a CUDA device (the runner sets ``executor.cuda`` from the
    config's device), every unit, in this process or a worker, runs with PyTorch's
    deterministic kernels (warning, not failing, on an operation that has none) and the
    reproducible cuBLAS workspace; a CPU run keeps the default kernels. Settings are restored."""
    import torch

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # the workers inherit it
    before = _kernels_seen()
    expected = ({"deterministic": True, "warn_only": True, "cudnn_benchmark": False,
                 "cublas": ":4096:8"} if cuda else before)  # fmt: skip
    for executor in (SerialExecutor(1), LocalExecutor(1)):
        executor.cuda = cuda
        try:
            [(_, seen, _)] = list(executor.run({"u": _kernels_seen}))
        finally:
            executor.close()
        assert seen == expected, executor.name
    assert torch.are_deterministic_algorithms_enabled() is before["deterministic"]
    assert torch.backends.cudnn.benchmark is before["cudnn_benchmark"]


def test_the_runner_asks_for_deterministic_kernels_from_the_config_device(tmp_path):
    """``executor.cuda`` follows the config's device, and the manifest records it."""
    from types import SimpleNamespace

    from advlab.experiments.runner import computes_on_cuda
    from tests.test_experiments import CountConfig  # noqa: F401 - registers "test-count"

    for device, cuda in (("cuda", True), ("cuda:1", True), ("cpu", False), ("mps", False)):
        assert computes_on_cuda(SimpleNamespace(device=device)) is cuda
    assert computes_on_cuda(SimpleNamespace()) is False
    exp = get_experiment("test-count")
    executor = SerialExecutor(1)
    executor.cuda = True  # a stale setting must not survive a CPU run
    run_experiment(exp, validate_config(exp.config_cls, {}), tmp_path / "r", quiet=True,
                   executor=executor)  # fmt: skip
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert executor.cuda is False and manifest["cuda_deterministic_kernels"] is False


def test_resume_at_other_threads_per_unit_is_refused(tmp_path, capsys):
    """Units computed at 2 threads per unit are never mixed with units at 1: the CLI names the
    setting to resume with; the manifest records it."""
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({"experiment": "poison-cluster", **TINY_POISON,
                                  "attacks": ["none"], "budgets": []}))  # fmt: skip
    out = tmp_path / "run"
    command = ["run", str(config), "--out", str(out), "--quiet", "--threads-per-unit", "2"]
    assert main(command) == 0
    capsys.readouterr()
    assert json.loads((out / "manifest.json").read_text())["threads_per_unit"] == 2
    assert main([*command[:-1], "1"]) == 2
    err = capsys.readouterr().err
    assert "computed at 2 thread(s) per unit, this run is at 1" in err
    assert "--threads-per-unit 2" in err
    assert main(command) == 0  # the same setting resumes
    assert main([*command[:-2], "--threads-per-unit", "0"]) == 2
    assert "--threads-per-unit must be an integer >= 1, got 0" in capsys.readouterr().err


def test_local_workers_give_the_serial_results(tmp_path, serial_results):
    executor = LocalExecutor(workers=2)
    try:
        assert _run(tmp_path, "local", executor) == serial_results
    finally:
        executor.close()
    manifest = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert manifest["executor"] == "local" and manifest["workers"] == 2
    assert manifest["units_computed"] == N_UNITS and manifest["units_in_process"] == 0


def test_dask_local_cluster_gives_the_serial_results(tmp_path, serial_results, dask_cluster):
    _, client = dask_cluster
    assert _run(tmp_path, "dask", DaskExecutor(client)) == serial_results
    manifest = json.loads((tmp_path / "dask" / "manifest.json").read_text())
    assert manifest["executor"] == "dask" and manifest["workers"] == 2
    assert manifest["units_computed"] == N_UNITS and manifest["units_in_process"] == 0


def test_a_worker_killed_mid_run_changes_nothing(tmp_path, serial_results, dask_cluster):
    _, client = dask_cluster
    units = tmp_path / "dask" / "units"
    seen_at_kill: list[int] = []

    def kill_one_worker_after_first_unit() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(units.glob("*.json")):
            time.sleep(0.01)
        pids = client.run(os.getpid)
        seen_at_kill.append(len(list(units.glob("*.json"))))
        os.kill(next(iter(pids.values())), signal.SIGKILL)  # its nanny restarts it

    killer = threading.Thread(target=kill_one_worker_after_first_unit)
    killer.start()
    results = _run(tmp_path, "dask", DaskExecutor(client))
    killer.join()
    assert seen_at_kill and 1 <= seen_at_kill[0] < N_UNITS  # the kill landed mid-run
    assert results == serial_results


def write_pid_then_sleep(path: str, seconds: float) -> dict:
    """A job for the orphan test: says which process runs it, then outlives its client."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_local_workers_exit_when_their_client_is_killed(tmp_path, sig):
    pid_file = tmp_path / "worker.pid"
    client_code = (
        "import functools\n"
        "from advlab.experiments.executors import LocalExecutor\n"
        "from tests.test_executors import write_pid_then_sleep\n"
        f"job = functools.partial(write_pid_then_sleep, {str(pid_file)!r}, 300.0)\n"
        "list(LocalExecutor(1).run({'u': job}))\n"
    )
    client = subprocess.Popen([sys.executable, "-c", client_code], cwd=Path(__file__).parents[1])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (pid_file.is_file() and pid_file.read_text()):
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    assert _alive(worker)
    client.send_signal(sig)
    client.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.1)
    if _alive(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail(f"the worker outlived its client by 20 s after {sig.name}")


# Both data sets and 10 seeds: 104 units, which 2 workers finish about 5 s after the 3rd (3 seeds
# on Iris: 17 units, 0.5 s after the 3rd), a margin for the client to act on SIGINT
INTERRUPTED = {**TINY_POISON, "datasets": ["iris", "breast-cancer"], "n_seeds": 10}
N_INTERRUPTED = 2 * (3 * 10 + 1 + 2 * 10 + 1)


def test_interrupted_client_resumes_without_recomputing(tmp_path, dask_cluster):
    serial_results = _run(tmp_path, "serial", config=INTERRUPTED)
    cluster, _ = dask_cluster
    out = tmp_path / "run"
    config = tmp_path / "interrupted.yaml"
    config.write_text(json.dumps({"experiment": "poison-cluster", **INTERRUPTED}))
    command = [sys.executable, "-m", "advlab.cli.main", "run", str(config), "--out", str(out),
               "--quiet", "--executor", "dask", "--scheduler", cluster.scheduler_address]  # fmt: skip
    # SIGINT back to its default in the client: a shell's background job (`.ci/run &`) starts
    # with SIGINT ignored, children inherit that, and Python then installs no KeyboardInterrupt
    # handler, so the client would ignore the interrupt and finish every unit
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if len(list((out / "units").glob("*.json"))) >= 3:  # finished units, not temp files
            break
        time.sleep(0.01)
    first.send_signal(signal.SIGINT)
    first.wait(timeout=60)
    finished = len(list((out / "units").glob("*.json")))
    assert 3 <= finished < N_INTERRUPTED and not (out / "results.json").exists()

    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=300)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["units_resumed"] == finished
    assert manifest["units_computed"] == N_INTERRUPTED - finished
    assert (out / "results.json").read_text() == serial_results


def _serial_then_dask(tmp_path: Path, name: str, config: dict, client, shared_cache=False) -> dict:
    """Run ``name`` serially, then on the Dask cluster (with its own cache unless
    ``shared_cache``); assert byte-identical results.json; return the Dask run's manifest."""
    exp = get_experiment(name)
    cfg = validate_config(exp.config_cls, config)
    cache = Cache(tmp_path / "cache")
    run_experiment(exp, cfg, tmp_path / "serial", cache, quiet=True)
    run_experiment(exp, cfg, tmp_path / "dask", cache if shared_cache else Cache(tmp_path / "cache2"),
                   quiet=True, executor=DaskExecutor(client))  # fmt: skip
    assert (tmp_path / "dask" / "results.json").read_bytes() == (
        tmp_path / "serial" / "results.json"
    ).read_bytes()
    return json.loads((tmp_path / "dask" / "manifest.json").read_text())


def test_omari_units_on_dask_give_the_serial_results(tmp_path, dask_cluster):
    """Algorithm 1's units and the pool tasks (3 training eps levels, 2 test pools) shipped to
    two workers that rebuild the data from the shared cache: byte-identical results.json.

    The serial run starts in a process with torch's default threads (2 on CI): the runner pins
    every unit to one thread as on the workers. Without that pinning float32 reductions split
    over more threads round differently and Algorithm 1 amplifies it (87 of 448 comparisons of
    the digits profile differed, docs/benchmarks/executors-omari2024-digits.json)."""
    import torch

    from tests.test_omari2024 import DIGITS_TINY

    _, client = dask_cluster
    assert torch.get_num_threads() > 1 or (os.cpu_count() or 1) == 1  # the runner pins 1
    config = {**DIGITS_TINY, "repetitions": 2, "figures": ["fig2ab", "fig2ef"]}
    manifest = _serial_then_dask(tmp_path, "omari2024", config, client)
    assert manifest["units_in_process"] == 0 and manifest["units_computed"] == 4 + 3 + 2


@needs_fashion
def test_clustering_attacks_and_elbow_units_on_dask_give_the_serial_results(tmp_path, dask_cluster):
    """Every unit of clustering-attacks (Cina grid cells and their random starts, spill-over
    cases, merge curves, robust victims, the transfer models) and of elbow (one k-means fit per
    k) on two workers: byte-identical results.json, nothing left in the client."""
    from tests.test_clustering_attacks import TINY

    _, client = dask_cluster
    manifest = _serial_then_dask(tmp_path / "ca", "clustering-attacks", TINY, client)
    # 2 clusterers x 2 deltas x (search, random start), 1 case, 1 merge dataset, 2 robust, transfer
    assert manifest["units_in_process"] == 0 and manifest["units_computed"] == 8 + 1 + 1 + 2 + 1
    config = {"datasets": ["digits"], "ks": [2, 5, 10, 20]}
    manifest = _serial_then_dask(tmp_path / "elbow", "elbow", config, client)
    assert manifest["units_in_process"] == 0 and manifest["units_computed"] == 4


def test_plan_counts_units_and_image_steps(capsys):
    """advlab plan on the Omari digits profile: Fig. 2 a/b, c/d, e/f, white-box training and
    six Fig. 3 etas x 3 repetitions; the training pool at the 8 eps levels s / 8 (Fig. 3's
    beta = 1 reuses eps_max) x 10 steps; hours = image-steps / (rate x min(workers, units))."""
    from advlab.data import load_dataset

    n_train = len(load_dataset("digits", "train"))
    code = main(["plan", "omari2024", "--profile", "digits", "--image-steps-per-second", "1000",
                 "--workers", "1", "4", "--json"])  # fmt: skip
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["units"] == {"digits: pool tasks (eps x 2048 images)": 8 + 2,
                             "digits: Algorithm 1 (variants x repetitions)": (4 + 6) * 3}  # fmt: skip
    pool = next(a for a in plan["attacks"] if "training pool" in a["what"])
    assert pool["image_steps"] == n_train * 8 * 10 and pool["units"] == 8
    assert pool["hours"]["1"] == pytest.approx(pool["image_steps"] / 1000 / 3600, abs=1e-3)
    assert pool["hours"]["4"] == pytest.approx(pool["hours"]["1"] / 4, abs=1e-3)


def test_plan_reads_a_config_file_of_run(tmp_path, capsys):
    """advlab plan FILE.yaml plans the file's config: the digits profile written out by
    ``advlab show`` with one repetition instead of 3 plans (4 + 6) x 1 Algorithm 1 units."""
    assert main(["show", "omari2024", "--profile", "digits", "--set", "repetitions=1"]) == 0
    config = tmp_path / "digits-1rep.yaml"
    config.write_text(capsys.readouterr().out)
    assert main(["plan", str(config), "--image-steps-per-second", "1000", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["profile"] == str(config)
    assert plan["units"]["digits: Algorithm 1 (variants x repetitions)"] == 4 + 6


def test_plan_measures_throughput_and_names_what_it_cannot_plan(capsys):
    from advlab.experiments.planning import ATTACKS, measure_throughput

    for attack in ATTACKS:
        assert measure_throughput("mlp", (1, 8, 8), steps=2, batch=8, attack=attack) > 0
    with pytest.raises(ValueError, match="attack='pgd'"):
        measure_throughput("mlp", (1, 8, 8), attack="pgd")
    assert main(["plan", "elbow"]) == 2
    err = capsys.readouterr().err
    assert "elbow has no plan yet; plans exist for" in err
    assert all(name in err for name in ("omari2024", "mygdalis2020", "poison-cluster"))
    assert main(["plan", "omari2024", "--profile", "digits", "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err


def test_plan_counts_one_pass_per_ifgsm_step_and_bounds_lbfgs_and_ka3():
    """timed_passes counts exactly one image-pass per I-FGSM step and image; a real L-BFGS and
    K-A3 search (c doubled, then bisected) stays within the pass budget advlab plan uses."""
    import torch

    from advlab.attacks.evasion import IFGSM, KA3, LBFGS
    from advlab.experiments.builtin.mygdalis2020 import MygdalisConfig, _passes_per_image
    from advlab.experiments.planning import timed_passes
    from advlab.models import build_model

    torch.manual_seed(0)
    model = build_model("lenet5", 10, (1, 28, 28)).eval()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    passes, seconds = timed_passes(model, lambda: IFGSM(model, eps=0.1, max_iter=4)(x, y))
    assert passes == 4 * 6 and seconds > 0
    search = {"doublings": 2, "bisections": 1, "max_iter": 10, "batch_size": 6}
    config = MygdalisConfig(**search)
    budget = len(x) * _passes_per_image(config, "lbfgs", 6)
    for attack in (LBFGS(model, **search), KA3(model, K=2, **search)):
        passes, _ = timed_passes(model, lambda a=attack: a(x, y))
        assert 0 < passes <= budget


@needs_mnist
def test_mygdalis_attack_chunks_on_dask_give_the_serial_results(tmp_path, dask_cluster):
    """The network's training with its defense, every attack chunk and SSIM-sweep setting of
    Mygdalis (the network and the defense travel with the job) on two workers: byte-identical
    results.json (one thread per unit everywhere, by default); the adversarial examples land in
    the run directory as in a serial run."""
    from tests.test_mygdalis2020 import TINY

    _, client = dask_cluster
    config = {**TINY, "attacks": ["lbfgs", "deepfool", "5-A3"]}
    # each run its own cache: the Dask run trains the classifier and its defense on a worker
    manifest = _serial_then_dask(tmp_path, "mygdalis2020", config, client)
    # on the workers: the training, 3 attacks x 2 chunks x (undefended, defended) + 3 sweep
    # settings (weight 0 once, weight 10 in each placement); in the client: Table 1
    assert manifest["units_in_process"] == 1
    assert manifest["units_computed"] == 1 + 3 * 2 * 2 + 3 + 1
    assert len(list((tmp_path / "dask" / "adversarial").glob("*.safetensors"))) == 12


@needs_mnist
def test_transfer_units_on_dask_give_the_serial_results(tmp_path, dask_cluster):
    """transfer's eps units (the pool with its surrogate, the fitted k-means and its radii
    travel with the job) on two workers: byte-identical results.json, nothing in the client."""
    _, client = dask_cluster
    config = {"surrogate": "fc1", "surrogate_epochs": 1, "n_clusters": 20, "n_test": 100,
              "pixel_eps": [0.1, 0.3], "standardized_eps": [1.0], "max_iter": 2, "whitebox_iter": 3}  # fmt: skip
    manifest = _serial_then_dask(tmp_path, "transfer", config, client)
    assert manifest["units_in_process"] == 0 and manifest["units_computed"] == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_workers_tune_the_allocator_as_their_client_does(monkeypatch, dask_cluster):
    """A fresh local worker raises glibc's malloc thresholds exactly when its client has
    (``allocator_tuned`` is what the executor reads); a Dask worker too."""
    from advlab.experiments import executors
    from advlab.utils.perf import allocator_tuned

    monkeypatch.delenv("ADVLAB_MALLOC_TUNING", raising=False)  # the workers inherit it
    for tuned in (False, True):
        monkeypatch.setattr(executors, "allocator_tuned", lambda tuned=tuned: tuned)
        local = LocalExecutor(1)
        try:
            [(_, worker_tuned, _)] = list(local.run({"u": allocator_tuned}))
        finally:
            local.close()
        assert worker_tuned is tuned
    _, client = dask_cluster
    [(_, worker_tuned, _)] = list(DaskExecutor(client).run({"u": allocator_tuned}))
    assert worker_tuned is True


def test_evaluate_units_on_dask_import_the_users_model_and_give_the_serial_results(
    tmp_path, dask_cluster
):
    """The user's model is imported by name on each worker and its weights read from the
    file: byte-identical results.json, every clean and attack unit on the workers (then a zoo
    model the client trains, which the workers find in the shared cache)."""
    from tests.test_evaluate import _config, make_user_files

    _, client = dask_cluster
    files = make_user_files(tmp_path)
    manifest = _serial_then_dask(tmp_path / "own", "evaluate", _config(files), client)
    # the client records the data and weights checksums (a unit of its own); all else on workers
    assert manifest["units_in_process"] == 1 and manifest["units_computed"] == 1 + 3 + 3 * 5
    zoo = {"data": {"name": "digits", "n": 40}, "model": {"factory": "mlp", "train_epochs": 2},
           "attacks": [{"name": "fgsm", "eps": [0.1]}], "chunk_size": 20}  # fmt: skip
    manifest = _serial_then_dask(tmp_path / "zoo", "evaluate", zoo, client, shared_cache=True)
    assert manifest["units_in_process"] == 1 and manifest["units_computed"] == 1 + 2 + 2


def test_evaluate_clustering_units_on_dask_give_the_serial_results(tmp_path, dask_cluster):
    """The user's pipeline is imported by name on each worker: byte-identical results.json,
    every clean fit and attack on the workers but seed 0's clean fit (the client's check) and
    the data's checksum."""
    from tests.test_evaluate_clustering import _config

    _, client = dask_cluster
    X = np.random.default_rng(0).normal(size=(60, 3))
    np.savez(tmp_path / "rows.npz", x=X)
    config = {**_config(tmp_path / "rows.npz"), "n_seeds": 2}
    manifest = _serial_then_dask(tmp_path, "evaluate-clustering", config, client)
    # in the client: clean seed 0 and the data's checksum; on the workers: clean seed 1 and
    # (2 uniform budgets + 1 noise + 2 resample) x 2 seeds
    assert manifest["units_in_process"] == 2 and manifest["units_computed"] == 2 + 1 + 5 * 2
