"""``mygdalis2020``: Tables 1-2 and Fig. 4 of Mygdalis, Tefas & Pitas (2020) on MNIST.

Per model (MNIST-FC1, MNIST-LeNet and, when asked for, MNIST-PR; steps 1-2 of every model
run first, one unit per model, so that on an executor with workers the networks train in
parallel into the shared artefact cache):

1. the classifier W is trained (cached; fc1 20 epochs with a cosine schedule, lenet5 8 epochs;
   MNIST-PR, the paper's "defensive architecture [24]" of Wong, Schmidt, Metzen & Kolter 2018,
   is their small ReLU network ``wong_small`` trained 20 epochs by interval bound propagation
   at L-inf ``pr_train_eps``, advlab's substitute for their convex outer bound; Table 1 then
   also reports its certified accuracy at that eps);
2. M-SVDD-D is fitted on (a subset of) the training set (cached as safetensors), giving W~-LC
   and the SVDD network; **Table 1** is the test accuracy of W-LC, W~-LC, W~-SVDD(beta = O_c)
   and W~-SVDD(beta = O_d) on the full test set;
3. **Table 2, undefended**: each attack (L-BFGS, DeepFool, C&W-L2, 1/5/9-A3) is run on W
   against the first ``n_attack`` images of ``attack_split`` W classifies correctly (the paper
   attacks the training samples: "adversarial datasets ... by modifying the training samples");
   SSIM and MSE (per-pixel mean, the scale of the paper's values) between
   clean and adversarial images and the attack success rate ASR = P(W(x') != y);
4. **Table 2, defended**: the attacks are crafted on W~-LC (the attacker knows the fine-tuned
   backbone but not the SVDD layer, as in the paper) against the first ``n_attack`` images
   W~-LC classifies correctly, and evaluated on M-SVDD-D at beta = 1, at the paper's tuned
   uniform beta (0.85 for FC1, 0.97 for LeNet) and at our per-class O_d: ASR, failed (F) and
   detected (D) rates;
5. **Fig. 4**: the distribution of the true label's rank position under each undefended attack.

Beyond the paper (documented, ``finetune_hinge``): the backbone fine-tuning adds to the
cross-entropy on r a hinge keeping each sample inside its own class's sphere; with the paper's
cross-entropy alone LeNet's features leave their spheres (see ``MSVDDDefense``). Set
``finetune_hinge: 0`` for the paper's loss. Also beyond the paper: Table 1 reports the defended
accuracy and the share of clean test images flagged adversarial at every beta the attacks are
judged at, without which the detection rates D cannot be read.

L-BFGS and C&W-L2 (confidence 0) target the same label, the one ranked 2nd on the clean image
("the same target class labels were assigned to L-BFGS and C & W attacks"); DeepFool is
untargeted (overshoot 0.02, 50 steps). K-A3 splits the attacked images into K contiguous groups
(group g pushes the g top-ranked wrong labels above y). Work is split into units of
``chunk_size`` images per (model, setting, attack), each checkpointed (per-sample SSIM, MSE,
predictions, ranks) with its adversarial images saved under ``adversarial/``, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from advlab.attacks.evasion import (
    KA3,
    LBFGS,
    CarliniWagnerL2,
    DeepFool,
    TargetedMisclassification,
)
from advlab.data import Dataset, load_dataset
from advlab.defenses import MSVDDDefense, certified_accuracy, train_certified_classifier
from advlab.experiments.aggregate import aggregate, tidy_row
from advlab.experiments.config import ExperimentConfig
from advlab.experiments.planning import lbfgs_pass_budget
from advlab.experiments.registry import register
from advlab.experiments.reporting import paper_data
from advlab.experiments.runner import RunContext
from advlab.metrics import (
    attack_success_rate,
    cw_ssim,
    defense_outcomes,
    k_anonymity_holds,
    mean_ci,
    mse,
    pmf_from_ranks,
    ssim,
    true_label_ranks,
)
from advlab.models import train_classifier
from advlab.report.plots import plot_adversarial_examples, plot_rank_pmfs
from advlab.report.tables import Table
from advlab.utils.io import atomic_write_bytes

AttackName = Literal["lbfgs", "deepfool", "cw", "1-A3", "5-A3", "9-A3"]
ModelName = Literal["fc1", "lenet5", "wong_small"]
N_CLASSES = 10  # MNIST
MODEL_ID = {"fc1": "fc1", "lenet5": "lenet", "wong_small": "pr"}  # ids of the comparisons
# epochs, schedule ("ibp": certified training by interval bound propagation, MNIST-PR)
TRAINING = {"fc1": (20, "cosine"), "lenet5": (8, "constant"), "wong_small": (20, "ibp")}
PROJECTIONS = {"fc1": 512, "lenet5": 256, "wong_small": 256}  # M of the paper (Sec. 5.2)
# the paper's numbers are data, with their sources: advlab/experiments/papers/mygdalis2020.yaml
PAPER_BETA: dict[str, float] = paper_data("mygdalis2020", "tuned_beta")
DEFENSE_VERSION = "3"

PAPER_TABLE1: dict[str, dict[str, float]] = paper_data("mygdalis2020", "table1")
PAPER_UNDEFENDED: dict[str, dict[str, list[float]]] = paper_data(
    "mygdalis2020", "table2_undefended"
)
PAPER_DEFENDED: dict[str, dict[str, list[Any]]] = paper_data("mygdalis2020", "table2_defended")


class MygdalisConfig(ExperimentConfig):
    models: tuple[ModelName, ...] = ("fc1", "lenet5", "wong_small")
    attacks: tuple[AttackName, ...] = ("lbfgs", "deepfool", "cw", "1-A3", "5-A3", "9-A3")
    train_epochs: int | None = Field(
        None,
        ge=1,
        description="classifier epochs (None: fc1 20 with cosine, lenet5 8, wong_small 20)",
    )
    pr_train_n: int | None = Field(
        None,
        ge=100,
        description="random training subset of MNIST-PR's IBP training (None: all 60,000)",
    )
    pr_train_eps: float = Field(
        0.1,
        ge=0,
        description="L-inf radius of MNIST-PR's certified (IBP) training; Wong et al.'s MNIST eps",
    )
    attack_split: Literal["train", "test"] = Field(
        "train", description="images attacked: the paper modifies the training samples"
    )
    n_attack: int | None = Field(
        None, ge=1, description="first n correctly classified images of attack_split (None: all)"
    )
    chunk_size: int = Field(256, ge=1, description="images per checkpointed unit")
    svdd_train: int | None = Field(
        None, ge=100, description="random training subset for M-SVDD-D (None: all 60,000)"
    )
    svdd_epochs: int = Field(20, ge=0, description="SVDD epochs with L_p, then with L_p + L_n")
    finetune_epochs: int = Field(3, ge=0)
    finetune_hinge: float = Field(
        10.0, ge=0, description="own-sphere hinge in fine-tuning (0: the paper's CE alone)"
    )
    nu: float = Field(0.1, gt=0)
    doublings: int = Field(8, ge=0, description="c search of L-BFGS / K-A3: doublings")
    bisections: int = Field(6, ge=0, description="c search of L-BFGS / K-A3: bisections")
    max_iter: int = Field(100, ge=1, description="L-BFGS-B iterations per solve (per sample)")
    ssim_weight: float = Field(1.0, ge=0, description="lambda of K-A3's CW-SSIM term")
    ssim_sweep: tuple[float, ...] = Field(
        (),
        description="lambdas of the 1-A3 SSIM-weight sweep on the undefended models (empty: none)",
    )
    ssim_sweep_placements: tuple[Literal["distortion", "separate"], ...] = (
        "distortion",
        "separate",
    )
    ssim_sweep_images: int = Field(32, ge=1, description="images of the SSIM-weight sweep")
    cw_binary_steps: int = Field(9, ge=1)
    cw_steps: int = Field(10000, ge=1, description="Adam steps per C&W binary-search step")
    batch_size: int = Field(32, ge=1)
    n_examples: int = Field(6, ge=0, description="images per attack in the examples figure")
    input_normalization: tuple[float, float] = Field(
        (0.1307, 0.3081), description="mean and std the classifiers normalise inputs with (MNIST's)"
    )
    device: str = "cpu"


# quick: a subset of the *test* images (the issue's quick profile); paper: the training samples
def _tensors(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    assert ds.images is not None
    return torch.from_numpy(ds.images).float(), torch.from_numpy(ds.labels).long()


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float((pred.cpu() == y).float().mean())


@torch.no_grad()
def _logits(net: nn.Module, x: torch.Tensor, device: str) -> torch.Tensor:
    return torch.cat([net(x[s : s + 1024].to(device)).cpu() for s in range(0, len(x), 1024)])


def build_defense(config: MygdalisConfig, name: str, model: nn.Module) -> MSVDDDefense:
    """The unfitted M-SVDD-D of the experiment on ``model`` (zoo architecture ``name``, seeded
    by ``config.seed``)."""
    return MSVDDDefense(
        model, n_projections=PROJECTIONS[name], nu=config.nu, epochs_positive=config.svdd_epochs,
        epochs_both=config.svdd_epochs, finetune_epochs=config.finetune_epochs,
        finetune_hinge=config.finetune_hinge,
        random_state=config.seed, device=config.device,
    )  # fmt: skip


def defense_training_set(
    config: MygdalisConfig, train: Dataset
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images the defense is fitted on: all of ``train``, or ``svdd_train`` of them drawn
    with ``config.seed``."""
    x, y = _tensors(train)
    if config.svdd_train is not None:
        g = torch.Generator().manual_seed(config.seed)
        pick = torch.randperm(len(x), generator=g)[: config.svdd_train]
        x, y = x[pick], y[pick]
    return x, y


def operating_point(
    defense: MSVDDDefense, x: torch.Tensor, y: torch.Tensor, beta: str | float
) -> tuple[float, float]:
    """(accuracy %, % of the images sent to the adversarial class) of ``defense`` at ``beta``."""
    pred = torch.as_tensor(defense.predict(x, beta))
    return _accuracy(pred, y), _accuracy(pred, torch.full_like(y, defense.adversarial_label))


def _fit_defense(
    ctx: RunContext, config: MygdalisConfig, name: str, model: nn.Module, model_key: str,
    train: Dataset,
) -> MSVDDDefense:  # fmt: skip
    """M-SVDD-D on ``model``, fitted once per setting and kept in the artefact cache."""
    defense = build_defense(config, name, model)
    params = {k: v for k, v in defense.get_params().items() if k not in ("device", "model")}
    parts = {"model": model_key, "data": train.sha256, "subset": config.svdd_train,
             "seed": config.seed, **params}  # fmt: skip
    stored = ctx.cache.load("msvdd", parts, DEFENSE_VERSION)
    if stored is not None:
        ctx.log.info("%s: M-SVDD-D loaded from the cache", name)
        return defense.load_state_tensors({k: torch.from_numpy(v) for k, v in stored.items()})
    x, y = defense_training_set(config, train)
    ctx.log.info("%s: fitting M-SVDD-D on %d training images", name, len(x))
    defense.fit(x, y)
    arrays = {k: v.numpy() for k, v in defense.state_tensors().items()}
    ctx.cache.save("msvdd", parts, DEFENSE_VERSION, arrays)
    return defense


def _attack_fn(name: str, net: nn.Module, config: MygdalisConfig) -> Any:
    """``run(x, y, group) -> AttackResult`` for attack ``name`` on ``net``."""
    search: dict[str, Any] = {"doublings": config.doublings, "bisections": config.bisections,
              "max_iter": config.max_iter, "batch_size": config.batch_size}  # fmt: skip
    if name == "lbfgs":
        return lambda x, y, group: LBFGS(net, **search)(x, y)
    if name == "deepfool":
        return lambda x, y, group: DeepFool(net, max_iter=50, overshoot=0.02)(x, y)
    if name == "cw":  # targeted at the label L-BFGS targets: ranked 2nd on the clean image
        cw = CarliniWagnerL2(net, binary_search_steps=config.cw_binary_steps, steps=config.cw_steps,
                             criterion=TargetedMisclassification())  # fmt: skip
        second = lambda x: _logits(net, x, config.device).topk(2, dim=1).indices[:, 1]  # noqa: E731
        return lambda x, y, group: cw(x, y, second(x))
    ka3 = KA3(net, K=_anonymity(name), ssim_weight=config.ssim_weight, **search)
    return lambda x, y, group: ka3(x, y, group)


def _anonymity(attack: str) -> int:
    """K of a K-A3 attack name ("5-A3" -> 5); 1 for the baselines (one label pushed above y)."""
    return int(attack.split("-")[0]) if attack.endswith("A3") else 1


def _attack_unit(
    ctx: RunContext, config: MygdalisConfig, key: str, attack: str, net: nn.Module,
    judge: Any, x: torch.Tensor, y: torch.Tensor, group: torch.Tensor,
) -> dict[str, Any]:  # fmt: skip
    """One chunk: craft on ``net``, measure, let ``judge(x_adv)`` add its predictions."""
    from safetensors.torch import save

    result = _attack_fn(attack, net, config)(x, y, group)
    x_adv = result.x_adv.detach().cpu()
    atomic_write_bytes(
        ctx.path(f"adversarial/{key}.safetensors"),
        save({"x": x.contiguous(), "x_adv": x_adv.contiguous(), "y": y.contiguous()}),
    )
    return {
        "ssim": ssim(x, x_adv).tolist(),
        "mse": mse(x, x_adv).tolist(),
        **judge(x_adv, y),
    }


def _undefended_judge(model: nn.Module, device: str, x_adv: torch.Tensor, y: torch.Tensor) -> dict:
    logits = _logits(model, x_adv, device)
    return {"pred": logits.argmax(1).tolist(), "rank": true_label_ranks(logits, y).tolist()}


def _defended_judge(
    defense: MSVDDDefense, betas: dict[str, Any], x_adv: torch.Tensor, y: torch.Tensor
) -> dict:
    return {f"pred_{b}": defense.predict(x_adv, beta).tolist() for b, beta in betas.items()}


def _attack_jobs(
    ctx: RunContext, config: MygdalisConfig, tag: str, net: nn.Module, judge: Any,
    x: torch.Tensor, y: torch.Tensor,
) -> dict[str, partial[dict[str, Any]]]:  # fmt: skip
    """Every attack on (x, y) in chunks of ``chunk_size`` images, one picklable job each (the
    network and the judge travel with it); K-A3's groups are split over all attacked images
    first, then chunked."""
    jobs: dict[str, partial[dict[str, Any]]] = {}
    for attack in config.attacks:
        group = KA3.split_groups(len(x), _anonymity(attack))
        for start in range(0, len(x), config.chunk_size):
            sl = slice(start, start + config.chunk_size)
            key = f"{tag}-{attack}-{start:06d}"
            jobs[key] = partial(_attack_unit, ctx, config, key, attack, net, judge, x[sl], y[sl],
                                group[sl])  # fmt: skip
    return jobs


def _merge_chunks(
    config: MygdalisConfig, tag: str, n: int, done: dict[str, dict[str, Any]]
) -> dict[str, dict[str, list]]:
    """Per attack: its groups and the chunks' lists concatenated in image order."""
    out: dict[str, dict[str, list]] = {}
    for attack in config.attacks:
        merged: dict[str, list] = {"group": KA3.split_groups(n, _anonymity(attack)).tolist()}
        for start in range(0, n, config.chunk_size):
            for name, values in done[f"{tag}-{attack}-{start:06d}"].items():
                merged.setdefault(name, []).extend(values)
        out[attack] = merged
    return out


def _first_correct(net: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int | None, device: str):
    correct = (_logits(net, x, device).argmax(1) == y).nonzero()[:, 0]
    idx = correct if n is None else correct[:n]
    return x[idx], y[idx]


def _model_and_defense(
    ctx: RunContext, config: MygdalisConfig, name: str, train: Dataset, test: Dataset
) -> tuple[nn.Module, MSVDDDefense, str]:
    """The classifier W of ``name`` and its M-SVDD-D, each trained once and kept in the artefact
    cache (by its settings and the data's hash), with the hash of W's weights."""
    epochs, schedule = TRAINING[name]
    epochs = config.train_epochs or epochs
    mean, std = config.input_normalization
    if schedule == "ibp":
        model, weights_sha256 = _certified_model(ctx, config, name, train, epochs)
    else:
        trained = train_classifier(name, train, test, epochs=epochs, seed=config.seed, device=config.device,
                                   cache=ctx.cache, schedule=schedule, mean=mean, std=std)  # fmt: skip
        model, weights_sha256 = trained.model.eval(), trained.weights_sha256
    return model, _fit_defense(ctx, config, name, model, weights_sha256, train), weights_sha256


def _train_unit(ctx: RunContext, config: MygdalisConfig, name: str) -> dict[str, str]:
    """A picklable job: train W and fit M-SVDD-D of ``name`` into the shared cache, where the
    client then finds them, so that the networks train in parallel on the workers."""
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    return {"weights_sha256": _model_and_defense(ctx, config, name, train, test)[2]}


def _run_model(ctx: RunContext, config: MygdalisConfig, name: str) -> dict[str, Any]:
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    ctx.record_dataset(train)
    ctx.record_dataset(test)
    _, schedule = TRAINING[name]
    model, defense, _ = _model_and_defense(ctx, config, name, train, test)  # cached by _train_unit
    linear = defense.linear_model()
    xt, yt = _tensors(test)

    betas: dict[str, float | str] = {
        "1": 1.0,
        f"{PAPER_BETA[name]:g}": PAPER_BETA[name],
        "Od": "defense",
    }

    def table1() -> dict[str, float]:
        """The paper's four accuracies, plus (beyond the paper) accuracy and the share of clean
        test images flagged adversarial at each beta the defended attacks are judged at."""
        row = {
            "W-LC": _accuracy(_logits(model, xt, config.device).argmax(1), yt),
            "W~-LC": _accuracy(_logits(linear, xt, config.device).argmax(1), yt),
            "W~-SVDD-Oc": _accuracy(torch.as_tensor(defense.predict(xt, "classification")), yt),
            "W~-SVDD-Od": _accuracy(torch.as_tensor(defense.predict(xt, "defense")), yt),
        }
        for label, beta in betas.items():
            acc, flagged = operating_point(defense, xt, yt, beta)
            row[f"W~-SVDD-beta{label}"], row[f"clean-flagged-beta{label}"] = acc, flagged
        if schedule == "ibp":  # MNIST-PR: what its certified training bought, as a lower bound
            row[f"W-LC-certified-eps{config.pr_train_eps:g}"] = certified_accuracy(
                model.cpu(), xt, yt, config.pr_train_eps
            )
            model.to(config.device)
        return row

    t1 = ctx.unit(f"{name}-table1", table1)
    ctx.log.info("%s Table 1: %s", name, t1)
    xa, ya = _tensors(train) if config.attack_split == "train" else (xt, yt)
    x_u, y_u = _first_correct(model, xa, ya, config.n_attack, config.device)
    x_d, y_d = _first_correct(linear, xa, ya, config.n_attack, config.device)
    n_sweep = min(config.ssim_sweep_images, len(y_u))
    # weight 0 has no term to place: one unit (key without placement) serves both placements
    sweep_keys = {f"{placement}.w{w:g}": f"{name}-ssim-sweep-{placement if w else 'none'}-w{w:g}"
                  for placement in config.ssim_sweep_placements for w in config.ssim_sweep}  # fmt: skip
    jobs = {
        **_attack_jobs(ctx, config, f"{name}-undefended", model,
                       partial(_undefended_judge, model, config.device), x_u, y_u),
        **_attack_jobs(ctx, config, f"{name}-defended", linear,
                       partial(_defended_judge, defense, betas), x_d, y_d),
    }  # fmt: skip
    for placement in config.ssim_sweep_placements:
        for w in config.ssim_sweep:
            jobs.setdefault(sweep_keys[f"{placement}.w{w:g}"], partial(
                _ssim_sweep_unit, config, model, x_u[:n_sweep], y_u[:n_sweep], w, placement))  # fmt: skip
    done = ctx.units(jobs, desc=f"{name} attacks")
    undefended = _merge_chunks(config, f"{name}-undefended", len(y_u), done)
    defended = _merge_chunks(config, f"{name}-defended", len(y_d), done)
    sweep = {setting: done[key] for setting, key in sweep_keys.items()}
    return {"table1": t1, "undefended": _summarise(undefended, y_u, None), "ssim_sweep": sweep,
            "defended": _summarise(defended, y_d, defense.adversarial_label),
            "paired": _paired_differences(undefended, y_u),
            "n_undefended": len(y_u), "n_defended": len(y_d)}  # fmt: skip


def _certified_model(
    ctx: RunContext, config: MygdalisConfig, name: str, train: Dataset, epochs: int
) -> tuple[nn.Module, str]:
    """MNIST-PR: zoo network ``name`` trained by interval bound propagation
    (``train_certified_classifier``, Gowal et al. 2018) at L-inf ``pr_train_eps`` on the
    training set (or ``pr_train_n`` of it drawn with the seed), eps and the clean-loss weight
    ramped over the first half of the epochs; cached like every classifier. Returns the model
    in eval mode and the hash of its weights."""
    mean, std = config.input_normalization
    ctx.log.info("%s: certified training (IBP, eps %g, %d epochs; cached once trained)", name,
                 config.pr_train_eps, epochs)  # fmt: skip
    trained = train_certified_classifier(name, train, config.pr_train_eps, epochs,
                                         seed=config.seed, device=config.device,
                                         cache=ctx.cache, mean=mean, std=std,
                                         n_train=config.pr_train_n)  # fmt: skip
    return trained.model, trained.weights_sha256


def _ssim_sweep_unit(
    config: MygdalisConfig, model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight: float,
    placement: str,
) -> dict[str, float]:  # fmt: skip
    """1-A3 with CW-SSIM weight ``weight`` entering at ``placement``, the c search keeping the
    example of smallest ||n||_2 + weight (1 - CW-SSIM): SSIM and CW-SSIM (%), MSE x 1e3 and
    L2 over the successful examples, and the success rate (%). weight 0 is L-BFGS's objective
    (with K-A3's rank criterion)."""
    search = {"doublings": config.doublings, "bisections": config.bisections,
              "max_iter": config.max_iter, "batch_size": config.batch_size}  # fmt: skip
    attack = KA3(model, K=1, ssim_weight=weight, ssim_placement=placement, select_by="objective",
                 **search)  # fmt: skip
    result = attack(x, y)
    ok = result.success
    x_adv = result.x_adv.detach()

    def mean(values: torch.Tensor) -> float:
        return float(values[ok].mean()) if bool(ok.any()) else float("nan")

    return {"ssim": 100 * mean(ssim(x, x_adv)), "cw_ssim": 100 * mean(cw_ssim(x, x_adv)),
            "mse_x1e3": 1e3 * mean(mse(x, x_adv)), "l2": mean((x_adv - x).flatten(1).norm(dim=1)),
            "asr": 100 * float(ok.float().mean()), "n": len(y)}  # fmt: skip


def _summarise(
    per_attack: dict[str, dict[str, list]], y: torch.Tensor, adversarial_label: int | None
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for attack, r in per_attack.items():
        row: dict[str, Any] = {"ssim": 100 * float(np.mean(r["ssim"])),
                               "mse_x1e3": 1e3 * float(np.mean(r["mse"]))}  # fmt: skip
        if adversarial_label is None:
            row["asr"] = 100 * attack_success_rate(np.array(r["pred"]), y)  # percent
            pmf = pmf_from_ranks(np.array(r["rank"]), N_CLASSES)
            k_anonymous = k_anonymity_holds(pmf, _anonymity(attack), tol=0.05)
            row.update(rank_pmf=pmf.tolist(), k_anonymous=k_anonymous)
        else:
            for key in r:
                if key.startswith("pred_"):
                    o = defense_outcomes(np.array(r[key]), y, adversarial_label)
                    row[key.removeprefix("pred_")] = {"asr": 100 * o.asr, "F": 100 * o.failed,
                                                      "D": 100 * o.detected}  # percent  # fmt: skip
        out[attack] = row
    return out


def _paired_differences(
    per_attack: dict[str, dict[str, list]], y: torch.Tensor
) -> dict[str, dict[str, dict[str, float]]]:
    """1-A3 against each baseline on the same undefended images (beyond the paper, which
    compares means): per metric (SSIM in points, MSE x 1e3), the mean over the images both
    attacks fooled of (1-A3 - baseline), with the half-width of its 95 % Student-t interval
    and the number of images. An interval that excludes 0 says which attack is more similar
    (SSIM higher) or perturbs less (MSE lower) on these images."""
    if "1-A3" not in per_attack:
        return {}
    labels = y.numpy()
    ka3 = per_attack["1-A3"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for baseline in ("lbfgs", "deepfool", "cw"):
        if baseline not in per_attack:
            continue
        base = per_attack[baseline]
        both = (np.array(ka3["pred"]) != labels) & (np.array(base["pred"]) != labels)
        if both.sum() < 2:
            continue
        out[baseline] = {}
        for metric, scale in (("ssim", 100.0), ("mse", 1e3)):
            diff = scale * (np.array(ka3[metric]) - np.array(base[metric]))[both]
            mean, half = mean_ci(diff, level=0.95)
            out[baseline][metric] = {"mean": float(mean), "ci95": float(half), "n": int(both.sum())}
    return out


def _rows(name: str, res: dict[str, Any]) -> list[dict[str, Any]]:
    """Tidy rows of one model: one per comparison id, each already a statistic over the images
    (a rate or a mean), rounded to 4 digits."""
    mid, rows = MODEL_ID[name], []

    def add(cid: str, ours: float, paper: float | None, unit: str = "%") -> None:
        rows.append(tidy_row(cid, round(float(ours), 4), unit, paper))

    for arch, value in res["table1"].items():
        add(f"table1.{mid}.{arch}", value, PAPER_TABLE1[name].get(arch))
    for attack, r in res["undefended"].items():
        p_ssim, p_mse, p_asr = PAPER_UNDEFENDED[name][attack]
        add(f"table2.{mid}.undefended.ssim.{attack}", r["ssim"], p_ssim)
        add(f"table2.{mid}.undefended.mse.{attack}", r["mse_x1e3"], p_mse, "MSE x 1e3")
        add(f"table2.{mid}.undefended.asr.{attack}", r["asr"], p_asr)
    for setting, r in res.get("ssim_sweep", {}).items():
        for metric in ("ssim", "cw_ssim", "mse_x1e3", "l2", "asr"):
            unit = {"mse_x1e3": "MSE x 1e3", "l2": "L2"}.get(metric, "%")
            add(f"ka3_ssim_weight.{mid}.{setting}.{metric}", r[metric], None, unit)
    for baseline, metrics in res.get("paired", {}).items():
        for metric, d in metrics.items():
            rows.append(tidy_row(
                f"paired.{mid}.undefended.{metric}.1-A3_minus_{baseline}", round(d["mean"], 4),
                "SSIM points" if metric == "ssim" else "MSE x 1e3", None,
                ci95=round(d["ci95"], 4), n=d["n"], n_of="images"))  # fmt: skip
    beta_paper = f"{PAPER_BETA[name]:g}"
    for attack, r in res["defended"].items():
        p_ssim, p_mse, p_beta1, p_beta = PAPER_DEFENDED[name][attack]
        add(f"table2.{mid}.defended.ssim.{attack}", r["ssim"], p_ssim)
        add(f"table2.{mid}.defended.mse.{attack}", r["mse_x1e3"], p_mse, "MSE x 1e3")
        for beta, paper in (("1", p_beta1), (beta_paper, p_beta), ("Od", None)):
            for i, metric in enumerate(("asr", "F", "D")):
                add(f"table2.{mid}.defended.{metric}.{attack}.beta{beta}", r[beta][metric],
                    None if paper is None else paper[i])  # fmt: skip
    return rows


MNIST_TEST_SIZE = 10000  # Table 1's accuracies are over the whole MNIST test set


def _sample_size(results: dict[str, Any], config: dict[str, Any], comparison_id: str) -> int | None:
    """Images behind a rate: the test set for Table 1, the attacked images for Table 2's
    success and detection rates; None for SSIM and MSE (means, not rates)."""
    parts = comparison_id.split(".")
    name = {mid: key for key, mid in MODEL_ID.items()}.get(parts[1]) if len(parts) > 1 else None
    if name is None or name not in results:
        return None
    if parts[0] == "table1":
        return MNIST_TEST_SIZE
    if parts[0] == "table2" and parts[3] in ("asr", "F", "D"):
        return int(results[name][f"n_{parts[2]}"])
    if parts[0] == "ka3_ssim_weight" and parts[-1] == "asr":
        return int(results[name]["ssim_sweep"][".".join(parts[2:-1])]["n"])
    return None


def _flagged(table1: dict[str, float], beta: str) -> str:
    """The clean test images flagged at ``beta`` (Table 1) as ", clean flagged x %", when
    measured."""
    value = table1.get(f"clean-flagged-beta{beta}")
    return "" if value is None else f", clean flagged {value:.1f} %"


def _rates(row: dict[str, float]) -> str:
    return f"{row['asr']:.1f} ({row['F']:.1f}, {row['D']:.1f})"


def _paper_rates(p: tuple[float, float, float]) -> str:
    return f"{p[0]:.1f} ({p[1]:.1f}, {p[2]:.1f})"


def _report_tables(results: dict[str, Any], config: dict[str, Any]) -> list[Table]:
    """Table 1 and Table 2 per model in the paper's layout, the paper's value in brackets."""
    tables = []
    for name, mid in MODEL_ID.items():
        if name not in results:
            continue
        res, beta = results[name], f"{PAPER_BETA[name]:g}"
        t1 = [[f"`{k}`", f"{v:.2f}", "-" if PAPER_TABLE1[name].get(k) is None
               else f"{PAPER_TABLE1[name][k]:.2f}"] for k, v in res["table1"].items()]  # fmt: skip
        tables.append(Table(f"MNIST-{mid}: Table 1 (accuracy in %, {MNIST_TEST_SIZE} test images)",
                            ("Table 1", "ours", "paper"), t1))  # fmt: skip
        t2 = []
        for attack, u in res["undefended"].items():
            d = res["defended"][attack]
            p_ssim, p_mse, p_asr = PAPER_UNDEFENDED[name][attack]
            q_ssim, q_mse, q1, qb = PAPER_DEFENDED[name][attack]
            t2.append([attack, f"{u['ssim']:.1f} [{p_ssim}]", f"{u['mse_x1e3']:.2f} [{p_mse:.2f}]",
                       f"{u['asr']:.1f} [{p_asr}]", f"{d['ssim']:.1f} [{q_ssim}]",
                       f"{d['mse_x1e3']:.2f} [{q_mse:.2f}]", f"{_rates(d['1'])} [{_paper_rates(q1)}]",
                       f"{_rates(d[beta])} [{_paper_rates(qb)}]", _rates(d["Od"])])  # fmt: skip
        tables.append(Table(
            f"MNIST-{mid}: Table 2 (n = {res['n_undefended']} undefended / {res['n_defended']} "
            "defended images; %, MSE x 1e3; [paper])",
            ("attack", "undefended SSIM", "MSE x1e3", "ASR", "defended SSIM", "MSE x1e3",
             *(f"ASR (F, D) beta = {label}{_flagged(res['table1'], key)}"
               for label, key in (("1", "1"), (beta, beta), ("O_d", "Od")))),
            t2, align=("l",) + ("r",) * 8,
            note="F: sent to a wrong class, D: detected (sent to the adversarial class); "
            "clean flagged: share of clean test images the same beta flags (Table 1), against "
            "which D is read. Wilson 95 % intervals of every rate are in the comparisons below.",
        ))  # fmt: skip
        paired = res.get("paired") or {}
        if paired:
            body = [[f"`paired.{mid}.undefended.*.1-A3_minus_{b}`",
                     *(f"{d[m]['mean']:+.2f} ± {d[m]['ci95']:.2f}" for m in ("ssim", "mse")),
                     str(d["ssim"]["n"])] for b, d in paired.items()]  # fmt: skip
            tables.append(Table(
                f"MNIST-{mid}: 1-A3 minus each baseline on the same undefended images (beyond "
                "the paper)", ("ids", "SSIM points", "MSE x1e3", "images"), body,
                note="Mean of the per-image difference over the images both attacks fooled, "
                "± the half-width of its 95 % t interval: SSIM > 0 means 1-A3's examples are "
                "more similar, MSE < 0 that it perturbs less.",
            ))  # fmt: skip
        sweep = res.get("ssim_sweep") or {}
        if sweep:
            body = [[f"`ka3_ssim_weight.{mid}.{setting}`", f"{r['ssim']:.1f}", f"{r['cw_ssim']:.1f}",
                     f"{r['mse_x1e3']:.2f}", f"{r['l2']:.3f}", f"{r['asr']:.1f}"]
                    for setting, r in sweep.items()]  # fmt: skip
            n = next(iter(sweep.values()))["n"]
            tables.append(Table(
                f"MNIST-{mid}: 1-A3 against the weight of its CW-SSIM term ({n} images; "
                "means over successful examples)",
                ("placement.weight", "SSIM %", "CW-SSIM %", "MSE x1e3", "L2", "ASR %"), body,
                note="distortion = c (||n|| + w (1 - CW-SSIM)) as eq. (7); separate = c ||n|| + "
                "w (1 - CW-SSIM); w0 = L-BFGS's objective. The c search keeps the example of "
                "smallest ||n|| + w (1 - CW-SSIM).",
            ))  # fmt: skip
    return tables


# the paper profile: every setting at the paper's value where the paper gives one (Sec. 5.2:
# 15 fine-tuning epochs with the SVDD layer); its models are the default three


def _sweep_settings(config: MygdalisConfig) -> int:
    """Distinct SSIM-sweep units per model: weight 0 once, every other weight per placement."""
    weights = set(config.ssim_sweep)
    return (0 in weights) + len(weights - {0}) * len(config.ssim_sweep_placements)


def _passes_per_image(config: MygdalisConfig, attack: str, batch: int) -> int:
    """The pass budget of one image under ``attack`` in a batch of ``batch`` (``advlab plan``):
    L-BFGS / K-A3: ``advlab.experiments.planning.lbfgs_pass_budget``; C&W: binary steps x Adam
    steps (abort_early only shortens it); DeepFool: its 50 linearisations."""
    if attack == "cw":
        return config.cw_binary_steps * config.cw_steps
    if attack == "deepfool":
        return 50
    return lbfgs_pass_budget(config.doublings, config.bisections, config.max_iter, batch)


def _plan(config: MygdalisConfig) -> dict[str, Any]:
    """Units and attack work of a run (``advlab plan``): per model its training unit, Table 1,
    the attack chunks ((undefended, defended) x attack x chunks of ``chunk_size``) and the
    SSIM-sweep settings; image-steps per attack from ``_passes_per_image`` on the
    ``n_attack`` images (the whole split when unset: an upper bound), the training of W and of
    M-SVDD-D counted as one image-step per image and epoch (three for IBP: the clean pass and
    the interval bounds)."""
    n_split = len(load_dataset("mnist", config.attack_split))
    n_train = len(load_dataset("mnist", "train"))
    n = min(config.n_attack or n_split, n_split)
    n_sweep = min(config.ssim_sweep_images, n)
    chunks = -(-n // config.chunk_size)
    batch = min(config.batch_size, config.chunk_size, n)
    shape = [1, 28, 28]
    units: dict[str, int] = {}
    attacks: list[dict[str, Any]] = []
    for name in config.models:
        epochs, schedule = TRAINING[name]
        epochs = config.train_epochs or epochs
        units[f"{name}: network + M-SVDD-D"] = 1
        units[f"{name}: Table 1"] = 1
        units[f"{name}: attack chunks (2 x attacks x {config.chunk_size} images)"] = (
            2 * len(config.attacks) * chunks
        )
        settings = _sweep_settings(config)
        if settings:
            units[f"{name}: SSIM-weight sweep settings"] = settings
        n_fit = min(config.svdd_train or n_train, n_train)
        w_images = min(config.pr_train_n or n_train, n_train) if schedule == "ibp" else n_train
        attacks.append({"what": f"{name}: training W ({epochs} epochs{', IBP' if schedule == 'ibp' else ''})",
                        "model": name, "shape": shape, "images": w_images,
                        "steps": epochs * (3 if schedule == "ibp" else 1), "units": 1})  # fmt: skip
        attacks.append({"what": f"{name}: fitting M-SVDD-D", "model": name, "shape": shape,
                        "images": n_fit, "units": 1,
                        "steps": 2 * config.svdd_epochs + config.finetune_epochs})  # fmt: skip
        for attack in config.attacks:
            kind = "ka3" if attack.endswith("A3") else attack
            attacks.append({"what": f"{name}: {attack} (undefended + defended)", "model": name,
                            "shape": shape, "images": 2 * n, "attack": kind, "batch": batch,
                            "steps": _passes_per_image(config, kind, batch),
                            "units": 2 * chunks})  # fmt: skip
        if not settings:
            continue
        attacks.append({"what": f"{name}: SSIM-weight sweep ({settings} x {n_sweep} images)",
                        "model": name, "shape": shape, "images": settings * n_sweep,
                        "attack": "ka3", "batch": min(config.batch_size, n_sweep),
                        "steps": _passes_per_image(config, "ka3", min(config.batch_size, n_sweep)),
                        "units": settings})  # fmt: skip
    notes = [
        "Budgets, not forecasts: L-BFGS / K-A3 as if every L-BFGS-B solve used all its",
        "iterations (and one line search failed), C&W as if no binary-search step aborted early;",
        "in practice many solves and steps stop early. The attacked images are the first",
        "n_attack the network classifies correctly. Table 1, the examples figure and Fig. 4",
        "come on top (seconds). Training of W and M-SVDD-D is counted at the I-FGSM rate,",
        "which leaves out its evaluations and the SVDD's own work (an underestimate).",
        "N workers each attack at the rate above.",
    ]
    return {"units": units, "attacks": attacks, "notes": notes}


@register("mygdalis2020", MygdalisConfig, tables=_report_tables, sample_size=_sample_size, plan=_plan, description="Mygdalis et al.: K-A3, L-BFGS/DeepFool/C&W vs M-SVDD-D; Tables 1-2, Fig. 4")  # fmt: skip
def run_mygdalis(config: MygdalisConfig, ctx: RunContext) -> dict[str, Any]:
    results: dict[str, Any] = {}
    comparisons: list[dict[str, Any]] = []
    panels = []
    # every network and its defense first, in parallel where the executor has workers
    ctx.units({f"{name}-trained": partial(_train_unit, ctx, config, name) for name in config.models},
              desc="mygdalis2020 networks")  # fmt: skip
    for name in config.models:
        res = _run_model(ctx, config, name)
        results[name] = res
        comparisons += aggregate(_rows(name, res))
        panels.append({"title": f"MNIST-{MODEL_ID[name]} (n = {res['n_undefended']})",
                       "pmfs": {a: r["rank_pmf"] for a, r in res["undefended"].items()}})  # fmt: skip
        if config.n_examples:
            _examples_figure(ctx, config, name)
    if panels:
        plot_rank_pmfs(panels, ctx.path("fig4"), "Fig. 4: P(r(j) = y), undefended attacks")
    return {**results, "comparisons": comparisons}


def _examples_figure(ctx: RunContext, config: MygdalisConfig, name: str) -> None:
    """Clean images and their adversarial versions per attack (undefended), from the saved
    first chunk of every attack."""
    from safetensors.torch import load_file

    rows: dict[str, np.ndarray] = {}
    for attack in config.attacks:
        path = ctx.path(f"adversarial/{name}-undefended-{attack}-000000.safetensors")
        stored = load_file(str(path))
        rows["clean"] = stored["x"][: config.n_examples].numpy()
        rows[attack] = stored["x_adv"][: config.n_examples].numpy()
    if rows:
        title = f"MNIST-{MODEL_ID[name]}: clean images and undefended adversarial versions"
        plot_adversarial_examples(rows, ctx.path(f"examples_{name}"), title)
