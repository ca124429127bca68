"""What two changes buy L-BFGS and K-A3: seconds per image before and after, in one run.

1. scipy's BLAS on one thread during each L-BFGS-B solve (``lbfgs.SCIPY_BLAS_THREADS``; before,
   OpenBLAS kept its own thread count and its busy-waiting threads took the cores from torch);
2. CW-SSIM's 7 x 7 window means as two matrix products
   (:func:`advlab.metrics.cw_ssim.window_mean`) instead of ``F.avg_pool2d(t, 7, stride=1)``.

Side by side in one process, on the classifiers mygdalis2020 trains (from the artefact cache,
trained on the first call), each attack with the quick profile's search settings attacks the
same correctly classified MNIST test images in every setting, interleaved over ``--rounds``
rounds (median kept). Also prints the mean L2 and CW-SSIM of the examples of each setting,
which differ only through float rounding in the search. Run it at the thread count to compare
(``torch.set_num_threads`` through ``--threads``; the contention of change 1 needs >= 2).

    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/ka3_speed.py --models fc1 lenet5

Prints JSON. Not a test: compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch.nn import functional as F

from advlab.attacks.evasion import KA3, LBFGS
from advlab.data import load_dataset
from advlab.experiments.builtin.mygdalis2020 import TRAINING, MygdalisConfig
from advlab.metrics.image import cw_ssim
from advlab.models.train import train_classifier
from advlab.utils.cache import Cache

# the package re-exports the function cw_ssim under the module's name
cw_module = importlib.import_module("advlab.metrics.cw_ssim")
lbfgs_module = importlib.import_module("advlab.attacks.evasion.lbfgs")


@contextmanager
def _setting(avg_pool_windows: bool, scipy_blas_threads: int | None) -> Iterator[None]:
    """CW-SSIM's window mean and scipy's BLAS threads in L-BFGS-B as they were (or are)."""
    window_mean, blas_threads = cw_module.window_mean, lbfgs_module.SCIPY_BLAS_THREADS
    if avg_pool_windows:
        cw_module.window_mean = lambda t, window: F.avg_pool2d(t, window, stride=1)
    lbfgs_module.SCIPY_BLAS_THREADS = scipy_blas_threads
    try:
        yield
    finally:
        cw_module.window_mean, lbfgs_module.SCIPY_BLAS_THREADS = window_mean, blas_threads


SETTINGS = {  # name: (avg_pool windows, scipy BLAS threads)
    "before": (True, None),
    "one_blas_thread": (True, 1),
    "after": (False, 1),
}


def _images(model: torch.nn.Module, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    test = load_dataset("mnist", "test")
    x, y = torch.from_numpy(test.images[: 4 * n]), torch.from_numpy(test.labels[: 4 * n]).long()
    with torch.no_grad():
        keep = (model(x).argmax(1) == y).nonzero()[:n, 0]
    return x[keep], y[keep]


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["fc1", "lenet5"])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--K", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = MygdalisConfig()
    search = {"doublings": 3, "bisections": 3, "max_iter": 30, "batch_size": 32}  # quick profile
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    out: dict[str, object] = {"torch_threads": torch.get_num_threads(), "images": args.images}
    for name in args.models:
        epochs, schedule = TRAINING[name]
        mean, std = config.input_normalization
        model = train_classifier(name, train, test, epochs=epochs, seed=config.seed,
                                 cache=Cache(), schedule=schedule, mean=mean, std=std).model.eval()  # fmt: skip
        x, y = _images(model, args.images)
        attacks = {"ka3": KA3(model, K=args.K, **search), "lbfgs": LBFGS(model, **search)}
        seconds: dict[str, list[float]] = {}
        examples: dict[str, torch.Tensor] = {}
        for _ in range(args.rounds):
            for setting, flags in SETTINGS.items():
                for attack_name, attack in attacks.items():
                    with _setting(*flags):
                        took, result = _timed(lambda: attack(x, y))  # noqa: B023
                    seconds.setdefault(f"{attack_name}.{setting}", []).append(took)
                    examples[f"{attack_name}.{setting}"] = result.x_adv  # type: ignore[attr-defined]
        per_image = {k: statistics.median(v) / len(x) for k, v in seconds.items()}
        out[name] = {
            "seconds_per_image": per_image,
            "speedup_vs_before": {
                k: per_image[f"{k.split('.')[0]}.before"] / v for k, v in per_image.items()
            },
            "mean_l2": {
                k: float((v - x).flatten(1).norm(dim=1).mean()) for k, v in examples.items()
            },
            "mean_cw_ssim": {k: float(cw_ssim(x, v).mean()) for k, v in examples.items()},
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
