"""``advlab plan``: what a run will do before it runs: its units, its attack work in image-steps
(one image through one forward + backward pass of the attacked model), and the wall time that
work takes on N workers at a throughput measured here and now.

The throughput is measured, not assumed: the attacked model (untrained weights: the speed is
the same) runs advlab's I-FGSM on a batch of random images of the experiment's shape for a few
steps on the chosen device, after one warm-up call. The estimate divides the image-steps by
(throughput x workers), which assumes every worker attacks at the measured rate (a machine or a
GPU of its own) and that there are enough units to keep them busy: the number of parallel units
of each attack is printed beside it. It counts the surrogate attacks only; k-means fits,
evaluations and the white-box controls come on top (``manifest.json`` of a quick run shows
their share in ``unit_seconds``).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from advlab.attacks.evasion import IFGSM
from advlab.models import build_model


def measure_throughput(
    model_name: str,
    shape: tuple[int, ...],
    device: str = "cpu",
    batch: int = 256,
    steps: int = 5,
    n_classes: int = 10,
) -> float:
    """Image-steps per second of advlab's I-FGSM on ``model_name`` (untrained) over a batch of
    ``batch`` random images of ``shape`` (C, H, W), best of two timed calls after a warm-up.

    Parameters
    ----------
    model_name : str
        A model of ``advlab.models``.
    shape : tuple of int
        One image's shape (C, H, W).
    device : str, default="cpu"
        Where to measure ("cuda" for a GPU).
    batch : int, default=256
        Images per call (the pools' chunk).
    steps : int, default=5
        I-FGSM steps per call.
    n_classes : int, default=10
        Outputs of the model.

    Returns
    -------
    float
        Images x steps per second.
    """
    c, h, w = shape
    model = build_model(model_name, n_classes, (c, h, w)).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((batch, *shape), generator=generator)
    y = torch.randint(0, n_classes, (batch,), generator=generator)
    attack = IFGSM(model, eps=0.1, max_iter=steps, eps_step=0.025, batch_size=batch)
    attack.generate(x[: min(batch, 8)], y[: min(batch, 8)])  # warm-up (allocations, kernels)
    best = float("inf")
    for _ in range(2):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        attack.generate(x, y)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return batch * steps / best


def make_plan(
    experiment: Any,
    config: Any,
    workers: tuple[int, ...] = (1,),
    device: str = "cpu",
    throughput: float | None = None,
) -> dict[str, Any]:
    """The plan of ``experiment`` with ``config``: its units, its attacks' image-steps and the
    estimated attack wall time on each number of ``workers``.

    Parameters
    ----------
    experiment : Experiment
        A registered experiment with a ``plan`` hook.
    config : ExperimentConfig
        Its validated config.
    workers : tuple of int, default=(1,)
        Worker counts to estimate for.
    device : str, default="cpu"
        Where the throughput is measured.
    throughput : float or None, default=None
        Image-steps per second to use instead of measuring (e.g. measured on a GPU elsewhere).

    Returns
    -------
    dict
        units, attacks (each with image_steps, throughput and hours per worker count), totals.
    """
    if experiment.plan is None:
        raise ValueError(f"{experiment.name} has no plan yet (its units are counted as it runs)")
    plan = dict(experiment.plan(config))
    measured: dict[tuple[str, tuple[int, ...]], float] = {}
    total_hours = dict.fromkeys(workers, 0.0)
    for attack in plan.get("attacks", []):
        attack["image_steps"] = int(attack["images"] * attack["steps"])
        key = (attack["model"], tuple(attack["shape"]))
        if throughput is None and key not in measured:
            measured[key] = measure_throughput(attack["model"], tuple(attack["shape"]), device)
        rate = throughput if throughput is not None else measured[key]
        attack["image_steps_per_second"] = round(rate, 1)
        attack["hours"] = {}
        for n in workers:
            busy = min(n, max(1, int(attack.get("units", 1))))  # more workers than units idle
            hours = attack["image_steps"] / (rate * busy) / 3600
            attack["hours"][n] = round(hours, 3)
            total_hours[n] += hours
    plan["throughput_source"] = "given" if throughput is not None else f"measured on {device}"
    plan["attack_hours"] = {n: round(h, 3) for n, h in total_hours.items()}
    return plan


def format_plan(name: str, profile: str | None, plan: dict[str, Any]) -> str:
    """The plan as text: units per group, then one line per attack and the totals.

    Parameters
    ----------
    name : str
        The experiment's name.
    profile : str or None
        The profile's name (None: a custom config).
    plan : dict
        What ``make_plan`` returns.

    Returns
    -------
    str
    """
    width = max([len(g) for g in plan["units"]] + [len(a["what"]) for a in plan["attacks"]] + [27])
    lines = [f"plan of {name} (profile {profile or 'custom'})", "", "units:"]
    lines += [f"  {group:<{width}} {count:>8}" for group, count in plan["units"].items()]
    lines.append(f"  {'total':<{width}} {sum(plan['units'].values()):>8}")
    workers = list(plan["attack_hours"])
    lines += ["", f"attack work (image-steps per second {plan['throughput_source']}):"]
    head = f"  {'what':<{width}}{'image-steps':>14}{'per s':>10}{'units':>7}"
    lines.append(head + "".join(f"{f'h @{n}':>10}" for n in workers))
    for a in plan["attacks"]:
        row = f"  {a['what']:<{width}}{a['image_steps']:>14,}{a['image_steps_per_second']:>10,.0f}"
        row += f"{a.get('units', 1):>7}" + "".join(f"{a['hours'][n]:>10.2f}" for n in workers)
        lines.append(row)
    total = f"  {'total (hours on N workers)':<{width + 31}}"
    lines.append(total + "".join(f"{plan['attack_hours'][n]:>10.2f}" for n in workers))
    lines += ["", "Attack work only: k-means fits, evaluations and white-box controls come on top;",
              "N workers each attack at the rate above (a machine or GPU of its own); the",
              "surrogate is trained by the client before the pool tasks are sent."]  # fmt: skip
    return "\n".join(lines)
