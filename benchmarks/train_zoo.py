"""Train one model of the zoo on MNIST and print its test accuracy and wall time as JSON.

    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/train_zoo.py small_cnn --epochs 2
    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/train_zoo.py fc1 --epochs 20 --schedule cosine

Weights go to the artefact cache (``--cache``), so a second call only loads them.
"""

from __future__ import annotations

import argparse
import json
import time

from advlab.data import load_dataset
from advlab.experiments import Cache
from advlab.models import MODELS, train_classifier
from advlab.utils.perf import tune_cpu_allocator

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # MNIST's training-set statistics (as the experiments)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--cache", default=None, help="artefact cache (default ~/.cache/advlab/artifacts)"
    )
    args = parser.parse_args()
    malloc_tuned = tune_cpu_allocator()  # as the CLI does
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    start = time.perf_counter()
    trained = train_classifier(args.model, train, test, epochs=args.epochs, schedule=args.schedule,
                               device=args.device, cache=Cache(args.cache),
                               mean=MNIST_MEAN, std=MNIST_STD)  # fmt: skip
    print(json.dumps({"model": args.model, "epochs": args.epochs, "schedule": args.schedule,
                      "test_accuracy": trained.test_accuracy, "seconds": time.perf_counter() - start,
                      "from_cache": trained.from_cache, "malloc_tuned": malloc_tuned}))  # fmt: skip


if __name__ == "__main__":
    main()
