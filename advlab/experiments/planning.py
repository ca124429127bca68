"""``advlab plan``: what a run will do before it runs: its units, its attack work in image-steps
(one image through one forward pass of the attacked model under autograd and its backward pass:
an I-FGSM step, an L-BFGS-B objective evaluation, a C&W Adam step, a DeepFool linearisation),
and the wall time that work takes on N workers at a throughput measured here and now.

The throughput is measured, not assumed: the attacked model (untrained weights: the speed is
the same) runs the attack itself on a batch of random images of the experiment's shape for a
few steps on the chosen device, after one warm-up call, while ``timed_passes`` counts the
passes it makes; the rate is passes over seconds, so whatever an attack does around its passes
(scipy's L-BFGS-B, CW-SSIM) is in it. The estimate divides the image-steps by
(throughput x workers), which assumes every worker attacks at the measured rate (a machine or a
GPU of its own) and that there are enough units to keep them busy: the number of parallel units
of each attack is printed beside it. Each experiment's plan says in its notes what it counts
and what comes on top. An experiment whose work is not a network's passes measures its own rate
(``evaluate-clustering``: fits of the user's clusterer per second) and counts that work instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.attacks.evasion import IFGSM, KA3, LBFGS, CarliniWagnerL2, DeepFool
from advlab.models import Model, build_model
from advlab.utils.perf import is_cuda
from advlab.utils.validation import clip

ATTACKS = ("ifgsm", "lbfgs", "ka3", "deepfool", "cw")  # what measure_throughput can run


def timed_passes(model: nn.Module, run: Callable[[], Any]) -> tuple[int, float]:
    """(image-steps, seconds) of ``run()``: the images that went through a forward call of
    ``model`` while autograd was on (each is followed by a backward pass in every attack here;
    forward calls under ``torch.no_grad``, the attacks' success checks, are not counted).

    Parameters
    ----------
    model : torch.nn.Module
        The module whose forward calls are counted.
    run : callable
        What to time, called once without arguments.

    Returns
    -------
    tuple of (int, float)
    """
    count = [0]

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if torch.is_grad_enabled():
            count[0] += len(inputs[0])

    handle = model.register_forward_hook(hook)
    try:
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
    finally:
        handle.remove()
    return count[0], seconds


def _probe(attack: str, model: nn.Module, steps: int, batch: int) -> Callable[..., Any]:
    """A short run of ``attack`` (its per-pass work as in the experiments, its search cut to
    one solve / one binary-search step of ``steps`` iterations)."""
    if attack == "ifgsm":
        return IFGSM(model, eps=0.1, max_iter=steps, eps_step=0.025, batch_size=batch).generate
    if attack == "lbfgs":
        return LBFGS(model, doublings=0, bisections=0, max_iter=steps, batch_size=batch)
    if attack == "ka3":
        return KA3(model, K=1, doublings=0, bisections=0, max_iter=steps, batch_size=batch)
    if attack == "deepfool":
        return DeepFool(model, max_iter=steps, batch_size=batch)
    if attack == "cw":
        return CarliniWagnerL2(model, binary_search_steps=1, steps=steps, abort_early=False,
                               batch_size=batch)  # fmt: skip
    raise ValueError(f"attack={attack!r}: measure one of {ATTACKS}")


LBFGSB_MAXLS = 20  # scipy's L-BFGS-B: at most 20 evaluations per line search (its default)


def lbfgs_pass_budget(doublings: int, bisections: int, max_iter: int, batch: int) -> int:
    """The pass budget of one image under L-BFGS or K-A3 in a batch of ``batch``:
    (doublings + bisections + 1) solves, each of int(max_iter sqrt(batch)) L-BFGS-B iterations
    at one objective evaluation each, the first evaluation and one line search that fails
    (scipy's maxls, 20 evaluations). Not a strict bound (every line search could take 20), a
    budget: on MNIST a full solve takes about one evaluation per iteration and many solves stop
    early.

    Parameters
    ----------
    doublings, bisections : int
        The c search's steps.
    max_iter : int
        L-BFGS-B iterations per sqrt(batch).
    batch : int
        Images solved jointly.

    Returns
    -------
    int
    """
    solves = doublings + bisections + 1
    return solves * (int(max_iter * batch**0.5) + 1 + LBFGSB_MAXLS)


def measure_throughput(
    model_name: str | Callable[[], nn.Module],
    shape: tuple[int, ...],
    device: str = "cpu",
    batch: int = 256,
    steps: int = 5,
    n_classes: int = 10,
    attack: str = "ifgsm",
    bounds: tuple[float, float] = (0.0, 1.0),
) -> float:
    """Image-passes per second of advlab's ``attack`` on ``model_name`` (untrained) over a
    batch of ``batch`` random inputs of ``shape`` inside ``bounds``, best of two timed calls
    after a warm-up, the passes counted by ``timed_passes``.

    Parameters
    ----------
    model_name : str or callable
        A model of ``advlab.models`` (then ``shape`` is (C, H, W)), or a function without
        arguments returning the model to measure (a user's network, any input shape).
    shape : tuple of int
        One input's shape.
    device : str, default="cpu"
        Where to measure ("cuda" for a GPU).
    batch : int, default=256
        Images per call (the attack's batch in the experiment).
    steps : int, default=5
        Iterations per call (I-FGSM steps, L-BFGS-B iterations per sqrt(batch), Adam steps,
        DeepFool linearisations).
    n_classes : int, default=10
        Outputs of the model.
    attack : str, default="ifgsm"
        One of ``ATTACKS``.
    bounds : (float, float), default=(0.0, 1.0)
        The range the random inputs are drawn in (infinite bounds: standard normal inputs),
        clipped to an advlab ``Model``'s own bounds.

    Returns
    -------
    float
        Image-passes per second.
    """
    if attack not in ATTACKS:
        raise ValueError(f"attack={attack!r}: measure one of {ATTACKS}")
    if callable(model_name):
        model = model_name().to(device).eval()
    else:
        model = build_model(model_name, n_classes, tuple(shape)).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    lo, hi = bounds
    x = torch.rand((batch, *shape), generator=generator)
    x = lo + (hi - lo) * x if math.isfinite(lo) and math.isfinite(hi) else torch.randn_like(x)
    if isinstance(model, Model):  # (per-feature bounds narrower than ``bounds`` hold them)
        x = clip(x, model.bounds)
    x = x.to(device)
    y = torch.randint(0, n_classes, (batch,), generator=generator).to(device)
    run = _probe(attack, model, steps, batch)
    run(x[: min(batch, 8)], y[: min(batch, 8)])  # warm-up (allocations, kernels)
    best = 0.0
    for _ in range(2):
        if is_cuda(device):
            torch.cuda.synchronize()
        passes, seconds = timed_passes(model, lambda: run(x, y))
        if is_cuda(device):
            torch.cuda.synchronize()
        best = max(best, passes / seconds)
    return best


SAMPLE_SECONDS = 30.0  # what a plan spends timing one piece of work whose cost depends on data
SAMPLE_SIZE = 256  # inputs, spread through the data, that such timings draw on


def spread_sample(n: int, size: int = SAMPLE_SIZE) -> np.ndarray:
    """Up to ``size`` row indices spread evenly from 0 to n - 1 (the first, the last and the
    ones between: a sample of data that may be ordered by class or source).

    Parameters
    ----------
    n : int
        Rows of the data.
    size : int, default=SAMPLE_SIZE
        Most indices returned.

    Returns
    -------
    ndarray of int
        Sorted distinct indices.
    """
    return np.unique(np.linspace(0, n - 1, num=min(n, size)).round().astype(int))


def inputs_per_second(
    check: Callable[[np.ndarray], Any], groups: list[np.ndarray], limit: float = SAMPLE_SECONDS
) -> tuple[float, int]:
    """The rate of ``check(group)`` over ``groups`` (arrays of input indices) in order, in
    inputs per second, stopping once ``limit`` seconds are spent (at least one group).

    Parameters
    ----------
    check : callable
        The work on one group of inputs.
    groups : list of ndarray
        The groups, in the order to time them.
    limit : float, default=SAMPLE_SECONDS
        Seconds after which no further group is started.

    Returns
    -------
    (float, int)
        Inputs per second and the number of inputs timed.
    """
    seconds, timed = 0.0, 0
    for group in groups:
        start = time.perf_counter()
        check(group)
        seconds += time.perf_counter() - start
        timed += len(group)
        if seconds > limit:
            break
    return timed / max(seconds, 1e-9), timed


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
        units, attacks (each with image_steps, throughput and hours per worker count), totals,
        and the experiment's notes.
    """
    if experiment.plan is None:
        raise ValueError(f"{experiment.name} has no plan yet (its units are counted as it runs)")
    plan = dict(experiment.plan(config))
    measured: dict[tuple[str, tuple[int, ...], str, int], float] = {}
    total_hours = dict.fromkeys(workers, 0.0)
    for attack in plan.get("attacks", []):
        attack["image_steps"] = int(attack["images"] * attack["steps"])
        if "rate" in attack:  # work the hook measured itself (a clusterer's fits per second)
            rate = float(attack.pop("rate"))
            attack.pop("module", None)  # (a builder, not data)
            _hours(attack, rate, workers, total_hours)
            continue
        kind, batch = attack.setdefault("attack", "ifgsm"), int(attack.get("batch", 256))
        key = (attack["model"], tuple(attack["shape"]), kind, batch)
        if throughput is None and key not in measured:  # "module": a builder of the model
            measured[key] = measure_throughput(
                attack.get("module", attack["model"]), tuple(attack["shape"]), device,
                batch=batch, attack=kind, n_classes=int(attack.get("n_classes", 10)),
                bounds=tuple(attack.get("bounds", (0.0, 1.0))),
            )  # fmt: skip
        attack.pop("module", None)  # a builder, not data: the plan is printed as JSON too
        _hours(
            attack, throughput if throughput is not None else measured[key], workers, total_hours
        )
    plan.setdefault(
        "throughput_source", "given" if throughput is not None else f"measured on {device}"
    )
    plan["attack_hours"] = {n: round(h, 6) for n, h in total_hours.items()}
    return plan


def _hours(
    attack: dict[str, Any], rate: float, workers: tuple[int, ...], total: dict[int, float]
) -> None:
    """Set ``attack``'s rate and its hours on each number of workers (more workers than units
    idle), and add them to ``total``."""
    # slow work (a program a minute) keeps 3 significant digits where 1 decimal would say 0
    attack["image_steps_per_second"] = round(rate, 1) if rate >= 1 else float(f"{rate:.3g}")
    attack["hours"] = {}
    for n in workers:
        busy = min(n, max(1, int(attack.get("units", 1))))
        hours = attack["image_steps"] / (rate * busy) / 3600
        attack["hours"][n] = round(hours, 6)
        total[n] += hours


def _duration(hours: float) -> str:
    """Hours in a 10-wide column: 2 decimals, 4 below 0.01 h (where 0.00 would say nothing)."""
    return f"{hours:>10.2f}" if hours >= 0.01 or hours == 0 else f"{hours:>10.4f}"


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
    work = plan.get("work_unit", "image-steps")  # what is counted: image-steps, or fits
    lines += ["", f"attack work ({work} per second {plan['throughput_source']}):"]
    head = f"  {'what':<{width}}{work:>14}{'per s':>10}{'units':>7}"
    lines.append(head + "".join(f"{f'h @{n}':>10}" for n in workers))
    for a in plan["attacks"]:
        rate = a["image_steps_per_second"]  # a slow clusterer's fits per second: 3 digits
        rate_text = f"{rate:>10,.0f}" if rate >= 10 else f"{rate:>10.3g}"
        row = f"  {a['what']:<{width}}{a['image_steps']:>14,}{rate_text}"
        row += f"{a.get('units', 1):>7}" + "".join(_duration(a["hours"][n]) for n in workers)
        lines.append(row)
    total = f"  {'total (hours on N workers)':<{width + 31}}"
    lines.append(total + "".join(_duration(plan["attack_hours"][n]) for n in workers))
    lines += ["", *plan.get("notes", [])]
    return "\n".join(lines)
