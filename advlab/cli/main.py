"""``advlab``: run experiments from a YAML config or reproduce a paper by name.

advlab run CONFIG.yaml --out DIR
advlab reproduce NAME [--profile quick|paper] [--out DIR]
advlab list
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from advlab.experiments import (
    Cache,
    ConfigError,
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
    run = sub.add_parser("run", parents=[common], help="run the experiment a YAML config names")
    run.add_argument("config", type=Path)
    rep = sub.add_parser("reproduce", parents=[common], help="reproduce a named experiment")
    rep.add_argument("name")
    rep.add_argument(
        "--profile", default="quick", help="quick (minutes, CPU) or paper (full scale)"
    )
    sub.add_parser("list", help="list the experiments and their profiles")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for exp in list_experiments():
            print(
                f"{exp.name:16s} profiles: {', '.join(exp.profiles) or '-':14s} {exp.description}"
            )
        return 0
    set_quiet(args.quiet)
    tune_cpu_allocator()
    try:
        if args.command == "run":
            name, raw = read_config_file(args.config)
            experiment, profile = get_experiment(name), None
            config = validate_config(experiment.config_cls, raw, str(args.config))
        else:
            experiment, profile = get_experiment(args.name), args.profile
            if profile not in experiment.profiles:
                raise ConfigError(
                    f"{experiment.name} has no profile {profile!r}; "
                    f"choose one of {', '.join(experiment.profiles)}"
                )
            config = validate_config(
                experiment.config_cls, experiment.profiles[profile], f"profile {profile}"
            )
        out = args.out or Path("runs") / f"{experiment.name}-{profile or 'custom'}"
        results = run_experiment(experiment, config, out, Cache(args.cache), profile, args.quiet)
    except (ConfigError, RunDirError, KeyError, ValueError, FileNotFoundError) as exc:
        print(f"advlab: error: {exc}", file=sys.stderr)
        return 2
    print(format_comparisons(results["comparisons"]))
    print(f"\nresults: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
