"""``advlab``: run experiments from a YAML config or reproduce a paper by name.

advlab run CONFIG.yaml --out DIR
advlab reproduce NAME [--profile quick|paper] [--out DIR]
advlab list
advlab cache verify [--repair]
advlab data check NAME...
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from advlab.data import DataNotFoundError
from advlab.data.idx import IDXError
from advlab.experiments import (
    Cache,
    ConfigError,
    Experiment,
    ExperimentConfig,
    RunDirError,
    get_experiment,
    list_experiments,
    read_config_file,
    run_experiment,
    validate_config,
)
from advlab.report import format_comparisons
from advlab.utils.perf import tune_cpu_allocator
from advlab.utils.progress import set_quiet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="advlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, help="run directory (rerun into it to resume)")
    common.add_argument(
        "--cache", type=Path, help="artefact cache (default ~/.cache/advlab/artifacts)"
    )
    common.add_argument("--quiet", action="store_true", help="no progress bars, no log on stderr")
    common.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    run = sub.add_parser("run", parents=[common], help="run the experiment a YAML config names")
    run.add_argument("config", type=Path)
    rep = sub.add_parser("reproduce", parents=[common], help="reproduce a named experiment")
    rep.add_argument("name")
    rep.add_argument(
        "--profile", default="quick", help="quick (minutes, CPU) or paper (full scale)"
    )
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
USER_ERRORS = (ConfigError, RunDirError, PathError, DataNotFoundError, IDXError)


def _resolve(args: argparse.Namespace) -> tuple[Experiment, ExperimentConfig, str | None]:
    """The experiment, its validated config and profile, before any work."""
    try:
        if args.command == "run":
            name, raw = read_config_file(args.config)
            experiment, profile = get_experiment(name), None
            return experiment, validate_config(experiment.config_cls, raw, str(args.config)), None
        experiment, profile = get_experiment(args.name), args.profile
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from exc
    if profile not in experiment.profiles:
        raise ConfigError(
            f"{experiment.name} has no profile {profile!r}; "
            f"choose one of {', '.join(experiment.profiles)}"
        )
    config = validate_config(
        experiment.config_cls, experiment.profiles[profile], f"profile {profile}"
    )
    return experiment, config, profile


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for exp in list_experiments():
            print(
                f"{exp.name:16s} profiles: {', '.join(exp.profiles) or '-':14s} {exp.description}"
            )
        return 0
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
        results = run_experiment(experiment, config, out, cache, profile, args.quiet)
    except USER_ERRORS as exc:  # a mistake in the command or the config: one line, exit 2
        if args.debug:
            raise
        print(f"advlab: error: {exc}", file=sys.stderr)
        return 2
    print(format_comparisons(results["comparisons"]))
    print(f"\nresults: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
