"""The ``advlab`` command line: run, reproduce, show, plan, report, list, cache, data."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

from advlab.data import DataNotFoundError
from advlab.data.idx import IDXError
from advlab.experiments import (
    Cache,
    ConfigError,
    Experiment,
    ExperimentConfig,
    RunDirError,
    apply_overrides,
    get_experiment,
    list_experiments,
    read_config_file,
    run_experiment,
    validate_config,
)
from advlab.experiments.executors import (
    DEFAULT_THREADS_PER_UNIT,
    EXECUTORS,
    ExecutorError,
    make_executor,
)
from advlab.report import format_comparisons
from advlab.report.document import ReportError
from advlab.utils.perf import is_cuda, reproducible_unit, tune_cpu_allocator
from advlab.utils.progress import set_quiet

DESCRIPTION = "Adversarial robustness of clustering and image classifiers: run experiments from a YAML config, reproduce a paper by name, report on finished runs."

EXAMPLES = """examples:
  advlab list
  advlab show omari2024 --profile quick --set n_clusters=50 > my.yaml
  advlab run my.yaml --out runs/mine
  advlab reproduce omari2024 --profile quick --out runs/omari
  advlab reproduce poison-cluster --executor local --workers 2
  advlab plan omari2024 --profile paper --workers 1 8 32
  advlab reproduce omari2024 --profile paper --executor dask --scheduler tcp://host:8786
  advlab report runs/omari runs/poison --html report.html
  advlab report docs/results/* --markdown --update README.md
  advlab cache verify --repair
  advlab data check mnist fashion-mnist
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="advlab",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, help="run directory (rerun into it to resume)")
    common.add_argument(
        "--cache", type=Path, help="artefact cache (default ~/.cache/advlab/artifacts)"
    )
    common.add_argument("--quiet", action="store_true", help="no progress bars, no log on stderr")
    common.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    common.add_argument("--executor", choices=EXECUTORS, default="serial",
                        help="where independent units run: this process (serial), worker "
                        "processes here (local) or a Dask cluster (dask); results do not depend on it")  # fmt: skip
    common.add_argument("--workers", type=int, help="worker processes for --executor local")
    common.add_argument("--threads-per-unit", type=int, default=DEFAULT_THREADS_PER_UNIT,
                        metavar="N", help="threads every unit runs on, whatever the executor "
                        "(default 1; the results depend on it, so a resume must use the same)")  # fmt: skip
    common.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask scheduler for --executor dask, e.g. tcp://host:8786")  # fmt: skip
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument("--set", dest="overrides", action="append", default=[],
                           metavar="KEY=VALUE",
                           help="override one config key (repeatable; VALUE is read as YAML)")  # fmt: skip
    run = sub.add_parser("run", parents=[common, overrides],
                         help="run the experiment a YAML config names")  # fmt: skip
    run.add_argument("config", type=Path)
    rep = sub.add_parser("reproduce", parents=[common, overrides],
                         help="reproduce a named experiment")  # fmt: skip
    rep.add_argument("name")
    rep.add_argument(
        "--profile",
        default="quick",
        help="a profile of the experiment: quick (minutes on a CPU), paper (full scale) or "
        "another file of advlab/experiments/profiles/NAME/ (an unknown one lists them)",
    )
    show = sub.add_parser("show", parents=[overrides],
                          help="print the resolved config of a profile as YAML (a config for run)")  # fmt: skip
    show.add_argument("name")
    show.add_argument("--profile", default="quick")
    show.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    plan = sub.add_parser("plan", parents=[overrides],
                          help="units, attack work and estimated wall time of a run, before it runs")  # fmt: skip
    plan.add_argument("name", help="an experiment (with --profile) or a config file of run")
    plan.add_argument("--profile", default="quick")
    plan.add_argument("--workers", type=int, nargs="+", default=[1, 2, 8, 32],
                      help="worker counts to estimate for")  # fmt: skip
    plan.add_argument("--device", default="cpu", help="measure the throughput here (cpu, cuda)")
    plan.add_argument("--threads-per-unit", type=int, default=DEFAULT_THREADS_PER_UNIT,
                      metavar="N", help="measure on N threads, as each unit of the run will run")  # fmt: skip
    plan.add_argument("--image-steps-per-second", type=float, dest="throughput",
                      help="use this throughput instead of measuring (e.g. a GPU's)")  # fmt: skip
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    report = sub.add_parser("report", help="report on finished runs (HTML page or Markdown tables)")
    report.add_argument("runs", nargs="+", type=Path, help="run directories")
    report.add_argument("--html", type=Path, metavar="OUT.html",
                        help="write one self-contained HTML page")  # fmt: skip
    report.add_argument("--markdown", action="store_true",
                        help="print the Markdown result tables (the README's)")  # fmt: skip
    report.add_argument("--update", type=Path, metavar="FILE.md",
                        help="with --markdown: rewrite the marked blocks of FILE.md in place")  # fmt: skip
    report.add_argument("--title", default="advlab report")
    report.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    sub.add_parser("list", help="list the experiments and their profiles")
    cache = sub.add_parser("cache", help="check the artefact cache")
    cache.add_argument("action", choices=["verify"])
    cache.add_argument("--repair", action="store_true",
                       help="move damaged entries aside (the next run recomputes them)")  # fmt: skip
    cache.add_argument(
        "--cache", type=Path, help="artefact cache (default ~/.cache/advlab/artifacts)"
    )
    data = sub.add_parser("data", help="check that data sets load (checksums included)")
    data.add_argument("action", choices=["check"])
    data.add_argument("names", nargs="+", help="data sets, e.g. mnist fashion-mnist")
    return parser


def _check_data(names: list[str]) -> int:
    """``advlab data check NAME...``: 0 when every split loads and matches its checksum, 3 when
    a data set is not found (nothing to blame), 2 with one line naming the file when one is
    damaged or the name is unknown."""
    from advlab.data import load_dataset

    for name in names:
        for split in ("train", "test"):
            try:
                load_dataset(name, split)
            except DataNotFoundError as exc:
                print(f"advlab: not found: {exc}", file=sys.stderr)
                return 3
            except (ValueError, KeyError, OSError) as exc:
                print(f"advlab: error: {exc}", file=sys.stderr)
                return 2
    return 0


def _verify_cache(root: Path | None, repair: bool) -> int:
    """``advlab cache verify``: check every entry's content hash; exit 1 when any is damaged
    (and not repaired)."""
    cache = Cache(root)
    report = cache.verify(repair=repair)
    for _path, reason in report.bad:
        print(f"damaged: {reason}" + (" (moved aside)" if repair else ""))
    print(f"{cache.root}: {len(report.ok)} entries ok, {len(report.bad)} damaged"
          + ("" if repair or not report.bad else "; rerun with --repair to move them aside"))  # fmt: skip
    return 0 if repair or not report.bad else 1


class PathError(ValueError):
    """A folder given on the command line cannot be used."""


# errors a user causes: named in one line (``--debug`` shows the traceback); anything else is a
# bug and keeps its traceback
USER_ERRORS = (ConfigError, RunDirError, PathError, DataNotFoundError, IDXError, ReportError)


def _named_config_file(args: argparse.Namespace) -> Path | None:
    """``advlab plan FILE.yaml``: the NAME argument of ``plan`` may be a config file of ``run``."""
    name = str(getattr(args, "name", ""))
    return Path(name) if args.command == "plan" and name.endswith((".yaml", ".yml")) else None


def _resolve(args: argparse.Namespace) -> tuple[Experiment, ExperimentConfig, str | None]:
    """The experiment, its validated config and profile, before any work."""
    overrides = list(getattr(args, "overrides", []))
    try:
        config_file = args.config if args.command == "run" else _named_config_file(args)
        if config_file is not None:
            name, raw = read_config_file(config_file)
            experiment = get_experiment(name)
            raw = apply_overrides(raw, overrides)
            source = str(config_file) + (" with --set" if overrides else "")
            return experiment, validate_config(experiment.config_cls, raw, source), None
        experiment, profile = get_experiment(args.name), args.profile
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from exc
    if profile not in experiment.profiles:
        raise ConfigError(
            f"{experiment.name} has no profile {profile!r}; "
            f"choose one of {', '.join(experiment.profiles)}"
        )
    raw = apply_overrides(experiment.profiles[profile], overrides)
    source = f"profile {profile}" + (" with --set" if overrides else "")
    config = validate_config(experiment.config_cls, raw, source)
    # a profile changed by --set is a custom config: its run directory says so
    return experiment, config, profile if not overrides else f"{profile}+set"


def _check_writable_folder(path: Path, option: str) -> None:
    """``path`` is (or can be made) a folder this process can write to."""
    if path.exists() and not path.is_dir():
        raise PathError(f"{option} {path} is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise PathError(
            f"{option} {path} is not writable ({exc.strerror}); choose another folder"
        ) from exc


def _list() -> int:
    """``advlab list``: name, profiles and description in aligned columns."""
    rows = [(e.name, ", ".join(e.profiles) or "-", e.description) for e in list_experiments()]
    rows.insert(0, ("experiment", "profiles", "what it runs"))
    w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
    for name, profiles, description in rows:
        print(f"{name:<{w0}}  {profiles:<{w1}}  {description}".rstrip())
    return 0


def _show(args: argparse.Namespace) -> int:
    """``advlab show NAME --profile P``: the resolved config, as a YAML file ``run`` accepts."""
    experiment, config, _profile = _resolve(args)
    print(f"# advlab show {experiment.name} --profile {args.profile}"
          + "".join(f" --set {o}" for o in args.overrides))  # fmt: skip
    print(yaml.safe_dump({"experiment": experiment.name, **config.model_dump(mode="json")},
                         sort_keys=False), end="")  # fmt: skip
    return 0


def _plan(args: argparse.Namespace) -> int:
    """``advlab plan NAME --profile P``: units, attack work, estimated hours on N workers."""
    import json

    from advlab.experiments.planning import format_plan, make_plan

    experiment, config, profile = _resolve(args)
    if any(n < 1 for n in args.workers):
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.throughput is not None and args.throughput <= 0:
        raise ConfigError(f"--image-steps-per-second must be > 0, got {args.throughput}")
    if experiment.plan is None:
        raise ConfigError(f"{experiment.name} has no plan yet; plans exist for "
                          + ", ".join(e.name for e in list_experiments() if e.plan))  # fmt: skip
    if args.threads_per_unit < 1:
        raise ConfigError(f"--threads-per-unit must be >= 1, got {args.threads_per_unit}")
    tune_cpu_allocator()  # measure as advlab run attacks: its allocator, a unit's threads and kernels
    with reproducible_unit(args.threads_per_unit, is_cuda(args.device)):
        planned = make_plan(experiment, config, tuple(args.workers), args.device, args.throughput)
    if args.throughput is None:
        planned["throughput_source"] += f" at {args.threads_per_unit} thread(s) per unit"
    if args.json:
        print(json.dumps({"experiment": experiment.name, "profile": profile or args.name,
                          **planned}, indent=1))  # fmt: skip
    else:
        print(format_plan(experiment.name, profile or args.name, planned))
    return 0


def _report(args: argparse.Namespace) -> int:
    """``advlab report RUN...``: the HTML page (``--html``) and/or the Markdown tables."""
    from advlab.experiments.reporting import build_section
    from advlab.report.html import render_html
    from advlab.report.markdown import render_markdown, replace_blocks
    from advlab.utils.io import atomic_write_text

    if not args.html and not args.markdown:
        raise PathError("say what to write: --html OUT.html and/or --markdown")
    if args.update and not args.markdown:
        raise PathError("--update rewrites Markdown blocks; add --markdown")
    sections = [build_section(run) for run in args.runs]
    if args.html:
        atomic_write_text(args.html, render_html(sections, args.title))
        print(f"report: {args.html}")
    if args.markdown:
        blocks = {s.run.path.name: render_markdown(s, s.run.path.name) for s in sections}
        if args.update:
            if not args.update.is_file():
                raise PathError(f"--update {args.update}: no such file")
            text, replaced = replace_blocks(args.update.read_text(), blocks)
            missing = sorted(set(blocks) - set(replaced))
            if missing:
                raise PathError(
                    f"{args.update} has no marked block for {', '.join(missing)}; add "
                    "'<!-- advlab-report NAME start -->' and '... end -->' lines where they go"
                )
            atomic_write_text(args.update, text)
            print(f"updated {', '.join(replaced)} in {args.update}")
        else:
            print("\n\n".join(blocks.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``advlab`` command.

    Parameters
    ----------
    argv : list of str or None, default=None
        Arguments; None reads ``sys.argv``.

    Returns
    -------
    int
        The exit status: 0 done, 2 a user error (one line on stderr), 1 or 3 where the
        command says so (a damaged cache entry, a missing data set).
    """
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command in ("show", "report", "plan"):
        handler = {"show": _show, "report": _report, "plan": _plan}[args.command]
        try:
            return handler(args)
        except USER_ERRORS as exc:
            if args.debug:
                raise
            print(f"advlab: error: {exc}", file=sys.stderr)
            return 2
    if args.command == "cache":
        return _verify_cache(args.cache, args.repair)
    if args.command == "data":
        return _check_data(args.names)
    set_quiet(args.quiet)
    tune_cpu_allocator()
    try:
        experiment, config, profile = _resolve(args)
        out = args.out or Path("runs") / f"{experiment.name}-{profile or 'custom'}"
        _check_writable_folder(out, "--out")
        cache = Cache(args.cache)
        _check_writable_folder(cache.root, "--cache")
        executor = make_executor(args.executor, args.workers, args.scheduler, args.threads_per_unit)
        try:
            results = run_experiment(experiment, config, out, cache, profile, args.quiet, executor)
        finally:
            executor.close()
    except (
        *USER_ERRORS,
        ExecutorError,
    ) as exc:  # a mistake in the command or the config: one line, exit 2
        if args.debug:
            raise
        print(f"advlab: error: {exc}", file=sys.stderr)
        return 2
    print(format_comparisons(results["comparisons"]))
    print(f"\nresults: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
