"""Run-to-run spread of M-SVDD-D's operating points (Table 1 of Mygdalis et al.).

Fits the defense of ``advlab reproduce mygdalis2020 --profile quick`` (same hyper-parameters,
on the same cached classifier W) once per seed and prints, per seed and as min/max, the test
accuracy and the share of clean test images flagged adversarial at beta = 1 (the untuned
spheres), at O_c and at O_d. The quick reproduction uses one seed; this says how far its
beta = 1 figures can move when only the seed (or the floating-point rounding) changes.

    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/msvdd_spread.py lenet5 --seeds 0 1 2 3

Not a test: the numbers are measurements.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from advlab.data import load_dataset
from advlab.experiments import Cache
from advlab.experiments.builtin.mygdalis2020 import (
    PROJECTIONS,
    TRAINING,
    MygdalisConfig,
    build_defense,
    defense_training_set,
    operating_point,
)
from advlab.experiments.registry import load_profiles
from advlab.models import train_classifier
from advlab.utils.perf import tune_cpu_allocator


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", choices=sorted(PROJECTIONS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--cache", default=None, help="artefact cache holding (or getting) W")
    parser.add_argument("--finetune-hinge", type=float, default=None,
                        help="override the profile's finetune_hinge (0: the paper's loss)")  # fmt: skip
    args = parser.parse_args()
    tune_cpu_allocator()
    profile = MygdalisConfig(**load_profiles("mygdalis2020")["quick"])
    hinge = profile.finetune_hinge if args.finetune_hinge is None else args.finetune_hinge
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    epochs, schedule = TRAINING[args.model]
    mean, std = profile.input_normalization
    model = train_classifier(args.model, train, test, epochs=epochs, schedule=schedule,
                             cache=Cache(args.cache), mean=mean, std=std).model  # fmt: skip
    xt, yt = torch.from_numpy(test.images), torch.from_numpy(test.labels).long()
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        config = profile.model_copy(update={"seed": seed, "finetune_hinge": hinge})
        defense = build_defense(config, args.model, model).fit(*defense_training_set(config, train))
        row: dict[str, float] = {"seed": seed}
        for label, beta in (("beta1", 1.0), ("Oc", "classification"), ("Od", "defense")):
            acc, flagged = operating_point(defense, xt, yt, beta)
            row[f"accuracy.{label}"], row[f"clean_flagged.{label}"] = acc, flagged
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k not in ("seed", "seconds")]
    spread = {k: [min(r[k] for r in rows), max(r[k] for r in rows)] for k in keys}
    summary = {"model": args.model, "finetune_hinge": hinge, "seeds": args.seeds, "min_max": spread}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
