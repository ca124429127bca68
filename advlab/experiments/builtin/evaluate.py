"""``evaluate``: the robustness of *your own* classifier on *your own* data, as a report.

Point a YAML config at a torch model (a zoo name, or ``package.module:factory`` with its
weights in a ``.safetensors`` or ``torch.save`` state-dict file), its input bounds and
preprocessing, a data set (a built-in one, or an ``.npz`` file of inputs and labels) and a
list of attacks; ``advlab run`` attacks every image with every attack and writes the same run
directory, ``results.json`` and HTML report as the paper reproductions::

    experiment: evaluate
    data: {path: cifar_test.npz, n: 1000}              # arrays x (N, C, H, W) and y (N,)
    model:
      factory: mypackage.nets:resnet20                  # importable on every worker
      weights: resnet20.safetensors
      preprocessing: {mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26]}
    attacks:
      - {name: pgd, eps: [0.0078, 0.0157, 0.0314], params: {max_iter: 20}}
      - {name: deepfool}
      - {name: cw, params: {steps: 200}}

What is measured, per image i of the n attacked (all in the input's units):

- ``correct_i``: the clean input is classified as its label;
- a *budgeted* attack (FGSM, BIM, PGD) at budget eps: ``success_i(eps)``, and robust accuracy
  ``100 * mean(correct_i and not success_i(eps))``;
- a *minimisation* attack (DeepFool, C&W-L2, L-BFGS): the size ``d_i`` of the smallest
  adversarial example it found (inf where it failed); robust accuracy at eps is then
  ``100 * mean(correct_i and d_i > eps)`` (``advlab.metrics.robust_accuracy_curve``), an upper
  bound on the truth, as for every attack;
- a torchattacks class named ``torchattacks:CLASS`` (APGD, say) is a budgeted attack too, run
  through ``TorchattacksAdapter.build`` (a model on another box than [0, 1] read on [0, 1]);
- the *worst case* per norm: per image, the smallest perturbation any attack of that norm found
  (a budgeted attack's success counts at its budget), so an image is robust at eps only if every
  attack failed within eps (the ensemble idea of AutoAttack, Croce & Hein 2020);
- with ``certify: [eps, ...]``, the L-inf *certified* accuracy by interval bound propagation
  (``advlab.defenses.is_certified``, Gowal et al. 2018): the share of images that every input
  of the eps-ball provably leaves correct, a *lower* bound on robust accuracy (the attacks give
  the upper one), for networks made of supported layers and operations (the user's own
  modules are traced with ``torch.fx``; ``advlab.defenses.check_certifiable``);
  ``certify_bounds: [interval, linear]`` adds the certificate of linear (CROWN) bounds
  (``advlab.defenses.is_certified_linear``, Zhang et al. 2018), tighter, on networks of affine
  layers and ReLU, piecewise-linear or smooth activations
  (``advlab.defenses.linear_bound_chain``);
- with ``certify_radius: r``, each image's certified L-inf radius under each
  ``certify_bounds`` method, by bisection up to r (``advlab.defenses.certified_radius``), and
  its median over the correctly classified images, ``<ibp|linear>.linf.median_certified_radius``
  (an image certified at r counts at r); ``radius_but_attacked`` counts the images whose radius
  exceeds the smallest perturbation an L-inf attack found (must be 0);
- with ``smoothing: {sigma, radii}``, randomized smoothing of the model (Cohen et al. 2019,
  ``advlab.defenses.RandomizedSmoothing``: n0 and n noisy copies per image, failure
  probability alpha): the *smoothed* classifier's share of images labelled correctly
  (``smoothing.clean_accuracy``; an abstention counts as wrong), its certified accuracy at each
  L2 radius (``smoothing.l2.eps<e>.certified_accuracy``) and its median certified radius over
  the images it labels correctly (``smoothing.l2.median_certified_radius``). The smoothed
  classifier is not the model: these figures sit beside the model's, not under them;
- with ``certify_norm: l2`` the certificates and radii are L2 ones: interval bounds over the
  L2 ball (``is_certified(..., norm="l2")``, the rows' dual norm at the first affine layer,
  eq. E of ``advlab.defenses.interval_bounds``: any network interval bounds take) and linear
  bounds over it (``is_certified_linear(..., norm="l2")``, eq. C of
  ``advlab.defenses.milp_verification``); ids
  ``<ibp|linear>.l2.eps<e>.certified_accuracy`` and ``<ibp|linear>.l2.median_certified_radius``,
  checked against the L2 attacks (``verify``'s programs stay L-inf).

With ``eps_units: feature_std`` (tabular features in their own units) every budget eps stands
for the weighted ball ||delta / std|| <= eps of the attack's norm, std_d the standard deviation
of feature d over the attacked inputs (0 for a constant feature, which no attack moves): in
L-inf the per-feature box eps * std_d, which the budgeted attacks, the certificates and the
programs take, in L2 the ellipsoid sum_d (delta_d / std_d)^2 <= eps^2 of PGD's ``units``; every
distance, the minimisation attacks' too, is measured in that weighted norm, and a budgeted
attack's eps_step in params counts std units as eps does. Budgeted attacks are then
advlab's own (torchattacks' take one budget for every feature).

Every rate is over n images and carries ``n``: the report draws its Wilson 95 % interval. The
units are (attack, budget, chunk of images) jobs that any executor runs; every worker must be
able to import the model's factory and read the weights and data files.
"""

from __future__ import annotations

import inspect
import math
import time
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from advlab.attacks.evasion import (
    BIM,
    FGSM,
    LBFGS,
    PGD,
    Attack,
    CarliniWagnerL2,
    DeepFool,
    TorchattacksAdapter,
)
from advlab.data import Dataset, load_dataset
from advlab.defenses import (
    ATTACKED,
    ROBUST,
    UNKNOWN,
    RandomizedSmoothing,
    certified_radius,
    check_certifiable,
    check_verifiable,
    is_certified,
    is_certified_linear,
    linear_bound_chain,
    train_certified_classifier,
    train_ibp,
    verify_linf,
)
from advlab.experiments.builtin._user import (
    PER_FEATURE_WORDS,
    BoundsSpec,
    DataSource,
    Strict,
    bounds_record,
    config_errors,
    display_range,
    file_stamp,
    import_object,
    load_source,
    missing_file,
    open_bounds,
    refuse_changed_files,
    resolve_bounds,
    two_numbers,
)
from advlab.experiments.config import ExperimentConfig
from advlab.experiments.planning import inputs_per_second, lbfgs_pass_budget, spread_sample
from advlab.experiments.registry import register
from advlab.experiments.runner import RunContext
from advlab.metrics import robust_accuracy_curve
from advlab.models import MODELS, Model, train_classifier
from advlab.models.train import TrainedModel, state_arrays
from advlab.report.plots import CERTIFIED_LABELS, plot_adversarial_examples, plot_attack_curves
from advlab.report.tables import Table
from advlab.utils.cache import Cache, arrays_sha256
from advlab.utils.io import sha256_bytes
from advlab.utils.validation import check_images, per_feature

# name -> (class, budgeted?); a budgeted attack takes ``eps`` and is run once per budget
ATTACKS: dict[str, tuple[type[Attack], bool]] = {
    "fgsm": (FGSM, True),
    "bim": (BIM, True),
    "pgd": (PGD, True),
    "deepfool": (DeepFool, False),
    "cw": (CarliniWagnerL2, False),
    "lbfgs": (LBFGS, False),
}
TORCHATTACKS = "torchattacks:"  # an attack named torchattacks:CLASS runs through the adapter
# certify_bounds method -> (its ids' prefix, its curve's key; CERTIFIED_LABELS names the curve)
CERTIFICATES = {"interval": ("ibp", "certified"), "linear": ("linear", "certified_linear")}
DENSE_POINTS = 101  # budgets at which the figure draws a minimisation attack's curve
N_EXAMPLES = 8  # inputs shown clean and attacked in the examples figure
CURVE_POINTS = 8  # budgets of a norm's curve when the config gives none and no attack has one
UNITS = {"input": "input units", "feature_std": "multiples of each feature's std"}  # eps_units
NORM_WORDS = {"linf": "L-inf", "l2": "L2"}


class DataSpec(DataSource):
    """Where the attacked inputs come from: ``name`` (a built-in data set) or ``path``.

    Attributes
    ----------
    name : str or None
        A built-in data set (mnist, fashion-mnist, digits, iris, breast-cancer).
    path : str or None
        An ``.npz`` file holding the inputs (``x_key``: (N, ...) floats inside the model's
        bounds) and their integer labels (``y_key``: (N,)), or a ``.csv`` file of rows with a
        header line: its column ``y_key`` the labels, the others the features.
    split : {'train', 'test'}
        Which split of a built-in set is attacked (a zoo model to train uses the other).
    n : int or None
        Attack the first n inputs (None: all).
    x_key, y_key : str
        The arrays' names in the ``.npz`` file.
    """

    split: Literal["train", "test"] = "test"


class CertifiedTrainingSpec(Strict):
    """Certified training of a zoo model trained here: against its interval bounds over the
    ball of radius ``eps`` (``advlab.defenses.train_certified_classifier``, Gowal et al. 2018,
    eq. 12; cached).

    Attributes
    ----------
    eps : float
        Training radius, > 0, in input units (not in ``eps_units``).
    norm : {"linf", "l2"}
        The ball trained against.
    ramp_epochs : int or None
        Epochs over which eps grows from 0 and the clean loss's weight falls to ``kappa_end``;
        None: half of ``train_epochs``.
    kappa_end : float
        Weight of the clean loss after the ramp, in [0, 1].
    """

    eps: float = Field(gt=0, allow_inf_nan=False)
    norm: Literal["linf", "l2"] = "linf"
    ramp_epochs: int | None = Field(None, ge=0)
    kappa_end: float = Field(0.5, ge=0, le=1)


class ModelSpec(Strict):
    """The attacked classifier: ``factory(**kwargs)`` with ``weights`` loaded, wrapped in
    ``advlab.models.Model(module, bounds, preprocessing)``.

    Attributes
    ----------
    factory : str
        A zoo name (small_cnn, lenet5, fc1, resnet18, mlp, wong_small; built for the data's
        shape and classes) or ``package.module:callable`` returning an ``nn.Module``.
    kwargs : dict
        Keyword arguments of the factory (a zoo model: mean, std and, with weights, n_classes;
        by default one class per label value up to the largest label).
    weights : str or None
        A state dict: ``.safetensors``, or a ``torch.save`` file (read with
        ``weights_only=True``, no pickle). None only for a zoo model trained here.
    train_epochs : int or None
        Train the zoo model on the other split of the built-in data set (cached by content).
    train_noise : float
        Std of Gaussian noise added to the training inputs (``train_epochs`` only; the base
        classifier of randomized smoothing); 0: none.
    train_certified : CertifiedTrainingSpec or None
        Train against the model's interval bounds instead (``train_epochs`` only; IBP in
        L-inf or L2); None: plain training.
    bounds : (float, float), (list, list) or "feature_range"
        The range of the model's inputs; attacks stay inside it. null (or -.inf / .inf in
        YAML) leaves a side open: [null, null] for unbounded tabular features. A side given
        as a list holds one number per feature (of the flattened input; null entries open);
        "feature_range" is each feature's minimum and maximum over the inputs the run reads
        (a feature constant there is fixed: no attack moves it).
    preprocessing : dict or None
        ``{mean, std, axis}`` applied inside the model (``Model``'s preprocessing) of a network
        with ``weights``; a zoo model trained here normalises with its kwargs mean and std.
    """

    factory: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = None
    train_epochs: int | None = Field(None, ge=1)
    train_noise: float = Field(0.0, ge=0, allow_inf_nan=False)
    train_certified: CertifiedTrainingSpec | None = None
    bounds: BoundsSpec = (0.0, 1.0)
    preprocessing: dict[str, Any] | None = None

    @field_validator("bounds", mode="before")
    @classmethod
    def _open_bounds(cls, value: Any) -> Any:
        return open_bounds(value)

    @model_validator(mode="after")
    def _weights_or_training(self) -> ModelSpec:
        zoo = self.factory in MODELS
        if not zoo and ":" not in self.factory:
            raise ValueError(
                f"factory {self.factory!r} is neither a zoo model ({', '.join(MODELS)}) nor "
                "'package.module:callable'"
            )
        if self.train_epochs is not None and (not zoo or self.weights is not None):
            raise ValueError("train_epochs trains a zoo model that has no weights file")
        if self.weights is None and self.train_epochs is None:
            raise ValueError("give weights (a state-dict file), or train_epochs for a zoo model")
        if self.train_noise and self.train_epochs is None:
            raise ValueError("train_noise is noise in the training run of train_epochs; a "
                             "network with weights was trained elsewhere")  # fmt: skip
        if self.train_certified is not None and self.train_epochs is None:
            raise ValueError("train_certified is the training run of train_epochs; a network "
                             "with weights was trained elsewhere")  # fmt: skip
        if self.train_certified is not None and self.train_noise:
            raise ValueError("train_certified trains against interval bounds, train_noise with "
                             "Gaussian noise: give one of them")  # fmt: skip
        if self.train_epochs is not None and self.preprocessing is not None:
            # it would wrap a network trained without it: the attacked model is not the trained one
            raise ValueError(
                "preprocessing wraps a network trained elsewhere; a zoo model trained here "
                "(train_epochs) takes its normalisation as kwargs {mean, std}, used in training "
                "and under attack alike"
            )
        allowed = {"mean", "std"} if self.train_epochs is not None else {"mean", "std", "n_classes"}
        if zoo and set(self.kwargs) - allowed:
            raise ValueError(
                f"a zoo model takes kwargs {sorted(allowed)} only (its input shape comes from "
                f"the data), got {sorted(self.kwargs)}"
            )
        return self


class SmoothingSpec(Strict):
    """Randomized smoothing of the model (``advlab.defenses.RandomizedSmoothing``).

    Attributes
    ----------
    sigma : float
        Noise std, > 0, in the inputs' units (in each feature's std with ``feature_std``).
    radii : tuple of float
        L2 radii, > 0, at which the certified accuracy is read.
    n0, n : int
        Noisy copies per image that select the class, and that bound its probability.
    alpha : float
        Failure probability of each certificate, in (0, 1).
    """

    sigma: float = Field(gt=0, allow_inf_nan=False)
    radii: tuple[float, ...]
    n0: int = Field(100, ge=1)
    n: int = Field(1000, ge=1)
    alpha: float = Field(0.001, gt=0, lt=1)

    @field_validator("radii")
    @classmethod
    def _radii(cls, radii: tuple[float, ...]) -> tuple[float, ...]:
        if not radii or any(not (math.isfinite(r) and r > 0) for r in radii):
            raise ValueError(f"radii must hold finite L2 radii > 0, got {list(radii)}")
        return tuple(sorted(set(radii)))


class AttackEntry(Strict):
    """One attack: ``name``, its budgets ``eps`` (budgeted attacks only, input units) and the
    keyword arguments ``params`` of its class (``label`` tells two settings apart).

    Attributes
    ----------
    name : str
        fgsm, bim, pgd (budgeted), deepfool, cw, lbfgs (minimisation), or a torchattacks
        class as ``torchattacks:APGD`` (budgeted; ``params`` are its own, eps and alpha in the
        model's input units, its ``norm`` 'Linf' or 'L2'; a model on another box than
        [0, 1] is read on [0, 1] for it, ``TorchattacksAdapter.build``).
    eps : tuple of float
        Budgets of a budgeted attack, > 0, in the input's units.
    params : dict
        Keyword arguments of the attack's class (e.g. PGD's max_iter and norm; PGD and BIM
        take 10 iterations unless max_iter is given).
    label : str or None
        The name in ids and tables (default: name).
    """

    name: str
    eps: tuple[float, ...] = ()
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$")

    @model_validator(mode="after")
    def _known(self) -> AttackEntry:
        if self.name not in ATTACKS and not self.name.startswith(TORCHATTACKS):
            raise ValueError(
                f"unknown attack {self.name!r}; choose one of {', '.join(ATTACKS)}, or a "
                f"torchattacks class as {TORCHATTACKS}APGD"
            )
        budgeted = self.budgeted
        if budgeted and not self.eps:
            raise ValueError(f"{self.name} is budgeted: give its eps (one or more budgets)")
        if not budgeted and self.eps:
            raise ValueError(f"{self.name} finds the smallest perturbation itself: drop eps")
        if any(not (math.isfinite(e) and e > 0) for e in self.eps):
            raise ValueError(f"eps must be finite and > 0, got {list(self.eps)}")
        taken = {"model", "eps", "criterion", "eps_units", "random_state", "units"}
        if taken & set(self.params):
            raise ValueError(
                f"params {sorted(taken & set(self.params))} are set by evaluate (eps is its own "
                "key, in the config's eps_units; the seed comes from the config's seed)"
            )
        return self

    @property
    def id(self) -> str:
        return self.label or self.name.replace(":", "-")

    @property
    def budgeted(self) -> bool:
        return self.name.startswith(TORCHATTACKS) or ATTACKS[self.name][1]


class EvaluateConfig(ExperimentConfig):
    """Config of ``evaluate`` (see the module docstring).

    Attributes
    ----------
    seed : int
        PGD's random start in the chunk of images starting at index i uses seed + i; a zoo
        model is trained with this seed.
    data : DataSpec
        The attacked inputs.
    model : ModelSpec
        The attacked classifier.
    attacks : tuple of AttackEntry
        At least one attack; their ids (label or name) must differ.
    eps_grid : dict of str to tuple of float
        Budgets per norm ('linf', 'l2') at which minimisation attacks and the worst case are
        read; a norm without one uses its budgeted attacks' eps, else 8 even steps up to the
        largest distance found.
    certify : tuple of float
        L-inf budgets (input units, > 0) at which interval bound propagation certifies each
        image; needs an L-inf attack beside it (the upper bound) and a model that interval
        bounds can follow (``advlab.defenses.check_certifiable``, checked before any work).
    certify_bounds : tuple of {'interval', 'linear'}
        The certificates computed at each ``certify`` budget: 'interval' (interval bound
        propagation, ids ``ibp.linf.eps<e>.certified_accuracy``) and 'linear' (linear bounds,
        ``linear.linf.eps<e>.certified_accuracy``; affine layers and ReLU, piecewise-linear
        or smooth activations: ``advlab.defenses.linear_bound_chain``).
    certify_radius : float or None
        The largest radius (input units, > 0) searched for each image's certified radius under
        each ``certify_bounds`` method; None: no radii.
    certify_norm : {"linf", "l2"}
        The norm of ``certify`` and ``certify_radius``; "l2" takes an L2 attack beside it.
    smoothing : SmoothingSpec or None
        Randomized smoothing of the model and its certified L2 accuracy; None: none.
    verify : tuple of float
        L-inf budgets (input units, > 0) at which each image the attacks did not break (nor
        a certificate proved) is verified exactly by mixed-integer programming
        (``advlab.defenses.verify_linf``; networks of affine layers, ReLUs, max pooling and
        piecewise-linear activations, checked before any work); needs an L-inf attack beside
        it.
    verify_time_limit : float
        Seconds per mixed-integer program; an image whose program hits it stays unknown.
    eps_units : {"input", "feature_std"}
        What every budget and distance counts: the inputs' units, or multiples of each
        feature's standard deviation over the attacked inputs (norms weighted by std: per-feature
        L-inf boxes, L2 ellipsoids).
    chunk_size : int
        Images per unit of work.
    batch_size : int
        Images per forward/backward pass.
    device : str
        Where the model runs.
    """

    data: DataSpec
    model: ModelSpec
    attacks: tuple[AttackEntry, ...]
    eps_grid: dict[Literal["linf", "l2"], tuple[float, ...]] = Field(default_factory=dict)
    certify: tuple[float, ...] = ()
    certify_bounds: tuple[Literal["interval", "linear"], ...] = ("interval",)
    certify_radius: float | None = Field(None, gt=0, allow_inf_nan=False)
    certify_norm: Literal["linf", "l2"] = "linf"
    smoothing: SmoothingSpec | None = None
    verify: tuple[float, ...] = ()
    verify_time_limit: float = Field(30.0, gt=0)
    eps_units: Literal["input", "feature_std"] = "input"
    chunk_size: int = Field(250, ge=1)
    batch_size: int = Field(64, ge=1)
    device: str = "cpu"

    @field_validator("attacks")
    @classmethod
    def _distinct_ids(cls, attacks: tuple[AttackEntry, ...]) -> tuple[AttackEntry, ...]:
        if not attacks:
            raise ValueError("give at least one attack")
        ids = [a.id for a in attacks]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"attacks {twice} appear twice: give each setting its own label")
        return attacks

    @model_validator(mode="after")
    def _per_feature_budgets(self) -> EvaluateConfig:
        if self.eps_units == "input":
            return self
        for entry in self.attacks:
            if entry.name.startswith(TORCHATTACKS):
                raise ValueError(f"eps_units: feature_std gives per-feature budgets, which "
                                 f"{entry.name} does not take: use advlab's fgsm, bim or pgd")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _l2_certificates(self) -> EvaluateConfig:
        if self.certify_norm == "linf":
            return self
        if self.verify:
            raise ValueError("verify's programs are L-inf ones: leave verify out with "
                             "certify_norm: l2")  # fmt: skip
        return self

    @field_validator("certify_bounds")
    @classmethod
    def _distinct_bounds(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        if not methods or len(set(methods)) != len(methods):
            raise ValueError(
                f"certify_bounds must name each of its methods once, got {list(methods)}"
            )
        return methods

    @field_validator("eps_grid")
    @classmethod
    def _grid_budgets(cls, grid: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
        for norm, budgets in grid.items():
            if not budgets or any(not (math.isfinite(e) and e >= 0) for e in budgets):
                raise ValueError(f"eps_grid.{norm} must hold finite budgets >= 0")
        return grid

    @field_validator("certify", "verify")
    @classmethod
    def _certify_budgets(
        cls, budgets: tuple[float, ...], info: ValidationInfo
    ) -> tuple[float, ...]:
        if any(not (math.isfinite(e) and e > 0) for e in budgets):
            raise ValueError(
                f"{info.field_name} must hold finite L-inf budgets > 0, got {list(budgets)}"
            )
        return tuple(sorted(set(budgets)))


# ---- data and model: loaded once per process (the client and each worker) ----


def load_inputs(spec: DataSpec, key: str = "data") -> Dataset:
    """The attacked inputs and labels of ``spec`` as a ``Dataset`` (images kept as given:
    ``images`` holds them for any shape (N, ...), ``data`` the flattened rows).

    Parameters
    ----------
    spec : DataSpec
        Where the inputs come from.
    key : str, default="data"
        The config block ``spec`` is, named in errors.

    Returns
    -------
    Dataset
        Its ``sha256`` is that of the arrays, so a changed file never reuses a result.
    """
    x, y, name = load_source(spec, spec.split, non_negative=True, key=key)
    assert y is not None  # required here
    sha = arrays_sha256({"x": np.ascontiguousarray(x), "y": y})
    classes = [str(i) for i in range(int(y.max()) + 1)]
    return Dataset(name, spec.split, x.reshape(len(x), -1), y, classes, sha, x)


def load_weights(module: nn.Module, path: str) -> None:
    """Load the state dict in ``path`` into ``module`` (strict: every key, every shape).

    ``.safetensors`` is read with ``safetensors.torch.load_model`` (which also restores weights
    that ``save_model`` stored once for tied parameters); any other file with
    ``torch.load(weights_only=True)``, which refuses pickled objects.

    Parameters
    ----------
    module : torch.nn.Module
        The freshly built model.
    path : str
        The weights file.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(missing_file("model.weights", path))
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_model

            load_model(module, str(file))
            return
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors of every kind: name the file and the rule
            raise ValueError(
                f"model.weights {path!r} could not be read with torch.load(weights_only=True) "
                f"(no pickle: a state dict of tensors, or .safetensors): {exc}"
            ) from exc
        if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise ValueError(
                f"model.weights {path!r} holds {type(state).__name__}, not a state dict of "
                "tensors (save model.state_dict())"
            )
        module.load_state_dict(state)
    except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
        raise ValueError(f"model.weights {path!r} do not fit the model: {exc}") from exc


def build_attacked_model(spec: ModelSpec, ds: Dataset, ctx: RunContext, config: Any) -> Model:
    """The classifier of ``spec`` with its weights, in eval mode on ``config.device``.

    Parameters
    ----------
    spec : ModelSpec
        The model config.
    ds : Dataset
        The attacked inputs (their shape and classes build a zoo model).
    ctx : RunContext
        The run (its cache holds a zoo model trained here).
    config : EvaluateConfig
        The whole config (device, data).

    Returns
    -------
    Model
        ``Model(module, bounds, spec.preprocessing)``, the bounds ``spec.bounds`` names for
        the inputs (``resolve_bounds``).
    """
    assert ds.images is not None
    if spec.train_epochs is not None:
        module: nn.Module = _trained_zoo_model(spec, config, ctx)
    else:
        assert spec.weights is not None
        module = fresh_module(spec, tuple(ds.images.shape[1:]), ds.n_classes)
        load_weights(module, spec.weights)
    bounds = resolve_bounds(spec.bounds, [ds.images], "model.bounds")
    return Model(module.eval(), bounds, spec.preprocessing).to(config.device)


def fresh_module(spec: ModelSpec, shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The network of ``spec`` with its initial weights: a zoo model built for ``shape`` and
    ``n_classes`` (unless kwargs give n_classes), or what the factory returns.

    Parameters
    ----------
    spec : ModelSpec
        The model config.
    shape : tuple of int
        The shape of one input.
    n_classes : int
        Classes of the data.

    Returns
    -------
    torch.nn.Module
    """
    if spec.factory in MODELS:
        from advlab.models import build_model

        return build_model(
            spec.factory, input_shape=shape, **{"n_classes": n_classes, **spec.kwargs}
        )
    try:
        module = import_object(spec.factory, "model.factory")(**spec.kwargs)
    except TypeError as exc:
        raise ValueError(f"model.factory {spec.factory!r} with model.kwargs: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"model.factory {spec.factory!r} returned {type(module).__name__}, not a torch "
            "nn.Module"
        )
    return module


def _trained_zoo_model(spec: ModelSpec, config: Any, ctx: RunContext) -> nn.Module:
    if config.data.name is None:
        raise ValueError(
            "model.train_epochs trains on the other split of a built-in data set; for an .npz "
            "file give model.weights"
        )
    other = "train" if config.data.split == "test" else "test"
    train = load_dataset(config.data.name, other)
    if train.images is None:
        raise ValueError(f"{config.data.name} has no images for a zoo model to train on")
    ctx.record_dataset(train)
    return train_zoo_model(spec, train, None, config.seed, config.device, ctx.cache).model


def train_zoo_model(
    spec: ModelSpec,
    train: Dataset,
    test: Dataset | None,
    seed: int,
    device: str,
    cache: Cache,
) -> TrainedModel:
    """The zoo model of ``spec`` trained on ``train`` for its ``train_epochs`` (cached): with
    Adam and cross-entropy (``train_classifier``, Gaussian noise with ``train_noise``), or
    against its interval bounds with ``train_certified`` (``train_certified_classifier``).

    Parameters
    ----------
    spec : ModelSpec
        The model config (``train_epochs`` given).
    train : Dataset
        Training images.
    test : Dataset or None
        Images for the test accuracy; None skips it.
    seed : int
        Seed of the initial weights and the batch order.
    device : str
        Where to train.
    cache : Cache
        The artefact cache.

    Returns
    -------
    TrainedModel
        The model in eval mode, its accuracy and hashes.
    """
    assert spec.train_epochs is not None
    certified = spec.train_certified
    if certified is None:
        return train_classifier(spec.factory, train, test, epochs=spec.train_epochs, seed=seed,
                                device=device, cache=cache, noise_sigma=spec.train_noise,
                                **spec.kwargs)  # fmt: skip
    return train_certified_classifier(
        spec.factory, train, certified.eps, spec.train_epochs, certified.norm,
        certified.ramp_epochs, certified.kappa_end, test, seed, device, cache, **spec.kwargs,
    )  # fmt: skip


_LOADED: dict[str, tuple[Dataset, Model, np.ndarray | None]] = {}


def _data_and_model(ctx: RunContext, config: EvaluateConfig) -> tuple[Dataset, Model]:
    """The attacked inputs and model, loaded once per process, config and file version."""
    ds, model, _ = _loaded(ctx, config)
    return ds, model


def _units(ctx: RunContext, config: EvaluateConfig) -> np.ndarray | None:
    """The budgets' per-feature units (``feature_units``), computed once with the data."""
    return _loaded(ctx, config)[2]


def _loaded(ctx: RunContext, config: EvaluateConfig) -> tuple[Dataset, Model, np.ndarray | None]:
    stamps = f"{file_stamp(config.data.path)}|{file_stamp(config.model.weights)}"
    key = sha256_bytes(f"{ctx.cache.root}|{stamps}|{config.model_dump_json()}".encode())
    if key not in _LOADED:
        ds = load_inputs(config.data)
        model = build_attacked_model(config.model, ds, ctx, config)
        _LOADED[key] = ds, model, feature_units(config.eps_units, ds)
    return _LOADED[key]


def fingerprint(ds: Dataset, model: Model) -> dict[str, str]:
    """SHA-256 of the attacked inputs and of the model's weights (its state dict's tensors),
    recorded in ``results.json``; a resumed run refuses to mix units of other files.

    Parameters
    ----------
    ds : Dataset
        The attacked inputs.
    model : Model
        The attacked model.

    Returns
    -------
    dict
        ``{"data_sha256", "weights_sha256"}``.
    """
    return {"data_sha256": ds.sha256, "weights_sha256": arrays_sha256(state_arrays(model))}


# ---- units ----


def _torchattacks(
    entry: AttackEntry, model: Model, eps: float | torch.Tensor | None, batch: int
) -> Attack:
    """``torchattacks:CLASS`` at ``eps`` through ``TorchattacksAdapter.build`` (the model read
    on [0, 1] where its bounds are another box; eps and alpha in the model's units), its
    distances in the norm its ``norm`` parameter names (torchattacks' default: Linf)."""
    cls = import_object(entry.name, "attacks.name")
    try:
        adapter = TorchattacksAdapter.build(cls, model, batch_size=batch, eps=eps, **entry.params)
    except ValueError as exc:  # per-feature or open bounds
        raise ValueError(f"{entry.name}: {exc}") from exc
    adapter.norm = "l2" if str(entry.params.get("norm", "Linf")).lower() == "l2" else "linf"
    return adapter


def _attack_kwargs(
    entry: AttackEntry, eps: float | torch.Tensor | None, seed: int, batch: int
) -> dict:
    """The arguments advlab's attack class of ``entry`` is built with: its params, the budget,
    PGD's seed, and 10 iterations for BIM and PGD unless params give max_iter."""
    kwargs: dict[str, Any] = {"batch_size": batch, **entry.params}
    if eps is not None:
        kwargs["eps"] = eps
    if entry.name == "pgd":
        kwargs["random_state"] = seed
    if entry.name in ("bim", "pgd"):
        kwargs.setdefault("max_iter", 10)
    return kwargs


def _make_attack(
    entry: AttackEntry,
    model: Model,
    eps: float | None,
    seed: int,
    batch: int,
    units: np.ndarray | None = None,
) -> Attack:
    """``entry``'s attack at the budget ``eps`` (None for a minimisation attack). With
    per-feature ``units`` (``feature_units``) a budgeted attack takes them (eps and any
    eps_step count multiples of them: the box eps * units in L-inf, the ellipsoid
    ||delta / units||_2 <= eps in L2, distances in their weighted norm), and a minimisation
    attack measures its distances in that norm (``Attack.scale``)."""
    if entry.name.startswith(TORCHATTACKS):
        return _torchattacks(entry, model, eps, batch)
    kwargs = _attack_kwargs(entry, eps, seed, batch)
    if units is not None and eps is not None:
        kwargs["units"] = torch.from_numpy(units)
    attack = ATTACKS[entry.name][0](model, **kwargs)
    if units is not None and eps is None:
        attack.scale = torch.from_numpy(units)
    return attack


def _clean_unit(ctx: RunContext, config: EvaluateConfig, start: int) -> dict[str, Any]:
    ds, model = _data_and_model(ctx, config)
    assert ds.images is not None
    x = torch.from_numpy(ds.images[start : start + config.chunk_size]).to(config.device)
    with torch.no_grad():
        pred = torch.cat([model(b).argmax(1) for b in x.split(config.batch_size)])
    return {"pred": pred.cpu().tolist()}


def _attack_unit(
    ctx: RunContext, config: EvaluateConfig, index: int, eps: float | None, start: int
) -> dict[str, Any]:
    """One attack at one budget on one chunk: per image, success and the perturbation's size."""
    ds, model = _data_and_model(ctx, config)
    assert ds.images is not None
    entry = config.attacks[index]
    sl = slice(start, start + config.chunk_size)
    x, y = torch.from_numpy(ds.images[sl]), torch.from_numpy(ds.labels[sl])
    return _attack_outcome(entry, model, eps, config.seed + start, config.batch_size,
                           x.to(config.device), y.to(config.device),
                           _units(ctx, config))  # fmt: skip


def _attack_outcome(
    entry: AttackEntry,
    model: Model,
    eps: float | None,
    seed: int,
    batch: int,
    x: torch.Tensor,
    y: torch.Tensor,
    units: np.ndarray | None = None,
) -> dict[str, Any]:
    """``entry``'s attack at ``eps`` on (x, y): per input, success and the perturbation's
    size, and the attack's norm (an attack unit's result; the plan's too). With per-feature
    ``units`` the budget is eps in their weighted norm, and so is the size (``_make_attack``)."""
    attack = _make_attack(entry, model, eps, seed, batch, units)
    result = attack(x, y)
    assert result.distances is not None
    return {
        "success": result.success.cpu().tolist(),
        "distance": result.distances.double().cpu().tolist(),
        "norm": attack.norm,
    }


def feature_units(eps_units: str, ds: Dataset, which: str = "inputs") -> np.ndarray | None:
    """With ``eps_units: feature_std``, each feature's standard deviation over ``ds`` (float64,
    the shape of one input; 0 for a constant feature); None with ``eps_units: input``.

    Parameters
    ----------
    eps_units : {"input", "feature_std"}
        The config's units of the budgets.
    ds : Dataset
        The inputs the std is taken over (``which`` names them in the error).
    which : str, default="inputs"
        What ``ds`` is, for the error when every feature is constant.

    Returns
    -------
    ndarray or None
        The per-feature units of every budget and distance.
    """
    if eps_units == "input":
        return None
    assert ds.images is not None
    std = ds.images.std(0, dtype=np.float64)
    if not (std > 0).any():
        raise ValueError(f"eps_units: feature_std, but every feature of the {which} is constant "
                         "(std 0): no feature could move")  # fmt: skip
    return std


def distance_unit(norm: str, eps_units: str) -> str:
    """The unit a comparison of sizes or radii names: the norm, with " (feature std)" when
    ``eps_units`` is "feature_std" (sizes weighted by each feature's std).

    Parameters
    ----------
    norm : {"linf", "l2"}
        The norm.
    eps_units : {"input", "feature_std"}
        The config's units of the budgets.

    Returns
    -------
    str
    """
    return norm if eps_units == "input" else f"{norm} (feature std)"


def per_feature_budget(eps: float, units: np.ndarray | None) -> float | torch.Tensor:
    """A budget in the inputs' units: eps itself, or the per-feature box eps * ``units``.

    Parameters
    ----------
    eps : float
        The budget.
    units : ndarray or None
        ``feature_units``.

    Returns
    -------
    float or torch.Tensor
        The budget, float64 per feature.
    """
    return eps if units is None else torch.from_numpy(eps * units)


def _radius_unit(ctx: RunContext, config: EvaluateConfig, start: int) -> dict[str, list[float]]:
    """Per ``certify_bounds`` method and image of one chunk, its certified radius in the
    ``certify_norm`` up to ``certify_radius`` (``certified_radius``, in per-feature units with
    ``feature_std``)."""
    ds, model = _data_and_model(ctx, config)
    assert ds.images is not None and config.certify_radius is not None
    sl = slice(start, start + config.chunk_size)
    x = torch.from_numpy(ds.images[sl]).to(config.device)
    y = torch.from_numpy(ds.labels[sl]).to(config.device)
    units, norm = _units(ctx, config), config.certify_norm
    return {method: certified_radius(model, x, y, config.certify_radius, method, units,
                                     norm=norm).tolist()
            for method in config.certify_bounds}  # fmt: skip


def _smoothing_unit(ctx: RunContext, config: EvaluateConfig, start: int) -> dict[str, Any]:
    """Per image of one chunk, the smoothed classifier's label (-1: abstains) and certified L2
    radius, its noise seeded by the image's index in the data (so any chunking gives the
    same certificates)."""
    ds, model = _data_and_model(ctx, config)
    assert ds.images is not None
    x = torch.from_numpy(ds.images[start : start + config.chunk_size]).to(config.device)
    result = _smoothing(config, model, _units(ctx, config)).certify(
        x, indices=np.arange(start, start + len(x))
    )
    return {"label": result.labels.tolist(), "radius": result.radii.tolist()}


def _smoothing(config: EvaluateConfig, model: Model, units: np.ndarray | None) -> Any:
    """The ``RandomizedSmoothing`` of ``config.smoothing`` on the model (``smoothing_of``)."""
    assert config.smoothing is not None
    return smoothing_of(config.smoothing, model, config.seed, config.batch_size, units)


def smoothing_of(
    spec: SmoothingSpec, model: nn.Module, seed: int, batch_size: int, units: np.ndarray | None
) -> RandomizedSmoothing:
    """The ``RandomizedSmoothing`` of a config's ``smoothing`` block.

    Parameters
    ----------
    spec : SmoothingSpec
        The block: sigma, n0, n, alpha.
    model : torch.nn.Module
        The base classifier (a ``Model``, or a k-means through ``kmeans_model``).
    seed : int
        The config's seed: the noise's ``random_state``.
    batch_size : int
        The config's batch size; noisy copies go through at least 100 per pass.
    units : ndarray or None
        Per-feature units of the noise (``eps_units: feature_std``), or None.

    Returns
    -------
    RandomizedSmoothing
    """
    return RandomizedSmoothing(model, spec.sigma, spec.n0, spec.n, spec.alpha,
                               batch_size=max(batch_size, 100), random_state=seed,
                               units=units)  # fmt: skip


def smoothing_comparisons(
    spec: SmoothingSpec,
    labels: np.ndarray,
    radii: np.ndarray,
    truth: np.ndarray,
    unit: str = "l2",
    prefix: str = "",
) -> list[dict[str, Any]]:
    """The ``<prefix>smoothing.*`` comparisons of a ``smoothing`` block's certificates.

    Parameters
    ----------
    spec : SmoothingSpec
        The block (its ``radii``).
    labels : ndarray of int, shape (n,)
        The smoothed classifier's labels, -1 where it abstains.
    radii : ndarray of float, shape (n,)
        Its certified L2 radii.
    truth : ndarray of int, shape (n,)
        The true labels.
    unit : str, default="l2"
        The radii's unit ("l2", or "l2 (feature std)").
    prefix : str, default=""
        Put before every id.

    Returns
    -------
    list of dict
        The share labelled correctly (abstentions wrong), the share abstained, the certified
        accuracy at each radius and the median certified radius over the inputs labelled
        correctly (0 without any).
    """
    right = labels == truth
    out = [rate_comparison(f"{prefix}smoothing.clean_accuracy", right),
           rate_comparison(f"{prefix}smoothing.abstained", labels < 0)]  # fmt: skip
    out += [rate_comparison(f"{prefix}smoothing.l2.{eps_key(r)}.certified_accuracy",
                            right & (radii > r)) for r in spec.radii]  # fmt: skip
    median = float(np.median(radii[right])) if right.any() else 0.0
    out.append({"id": f"{prefix}smoothing.l2.median_certified_radius", "ours": median,
                "paper": None, "unit": unit})  # fmt: skip
    return out


def _certify_unit(ctx: RunContext, config: EvaluateConfig, start: int) -> dict[str, Any]:
    """Per ``certify_bounds`` method, ``certify`` budget and image of one chunk: certified?"""
    ds, model = _data_and_model(ctx, config)
    assert ds.images is not None
    sl = slice(start, start + config.chunk_size)
    x = torch.from_numpy(ds.images[sl]).to(config.device)
    y = torch.from_numpy(ds.labels[sl]).to(config.device)
    return _certificates(config, model, x, y, config.certify, _units(ctx, config))


def _certificates(
    config: EvaluateConfig,
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    budgets: Any,
    units: np.ndarray | None = None,
) -> dict[str, dict[str, list[bool]]]:
    """Per ``certify_bounds`` method and budget (``eps_key``), which of (x, y) it certifies
    (a certify unit's result; the plan's too); per-feature boxes with ``units``."""

    return {method: {eps_key(eps): _certified(config, model, x, y, method, eps, units).tolist()
                     for eps in budgets}
            for method in config.certify_bounds}  # fmt: skip


def _certified(
    config: EvaluateConfig,
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str,
    eps: float,
    units: np.ndarray | None,
) -> torch.Tensor:
    """Which of (x, y) the ``method``'s certificate (``is_certified_linear`` or
    ``is_certified``) proves at eps in the config's ``certify_norm``: the L-inf box (eps *
    units per feature with ``units``), or the L2 ball (the ellipsoid of ``units``)."""
    norm = config.certify_norm
    if method == "linear":
        return is_certified_linear(model, x, y, eps, norm, units)
    return is_certified(model, x, y, eps, model.bounds, config.batch_size, norm, units).cpu()


def _verify_unit(
    ctx: RunContext, config: EvaluateConfig, eps: float, start: int, decided: list[int]
) -> dict[str, Any]:
    """Per image of one chunk, its status at the L-inf budget ``eps``: ``decided`` (ATTACKED
    where an attack broke it within eps or the model misclassifies it, ROBUST where a
    certificate proves it, UNKNOWN elsewhere), and ``verify_linf`` on the undecided ones."""
    ds, model = _data_and_model(ctx, config)
    assert ds.images is not None
    status = np.asarray(decided, dtype=np.int8)
    todo = np.flatnonzero(status == UNKNOWN)
    if len(todo):
        x = torch.from_numpy(ds.images[start + todo]).to(config.device)
        y = torch.from_numpy(ds.labels[start + todo]).to(config.device)
        box = per_feature_budget(eps, _units(ctx, config))
        status[todo] = verify_linf(model, x, y, box, config.verify_time_limit).status
    return {"status": status.tolist()}


def eps_key(eps: float) -> str:
    """The budget's part of an id: ``eps0.1``.

    Parameters
    ----------
    eps : float
        The budget.

    Returns
    -------
    str
    """
    return f"eps{eps:g}"


# ---- aggregation ----


def rate_comparison(cid: str, hits: np.ndarray) -> dict[str, Any]:
    """The comparison ``cid``: a rate in % over ``hits.size`` inputs, carrying that n (the
    report draws its Wilson interval; NaN and no n over none).

    Parameters
    ----------
    cid : str
        The comparison's id.
    hits : ndarray of bool
        Per input, whether it counts.

    Returns
    -------
    dict
    """
    if not hits.size:
        return {"id": cid, "ours": float("nan"), "paper": None, "unit": "%"}
    return {"id": cid, "ours": 100.0 * float(hits.mean()), "paper": None, "unit": "%",
            "n": int(hits.size)}  # fmt: skip


def _broken_at(outcomes: dict[str, Any], entry: AttackEntry) -> tuple[str, np.ndarray]:
    """(norm, per image the smallest budget at which ``entry`` found an adversarial example):
    a minimisation attack's distance, a budgeted attack's smallest successful budget; inf where
    it found none."""
    if not entry.budgeted:
        found = outcomes[entry.id][None]
        return found["norm"], np.asarray(found["distance"], dtype=np.float64)
    norm = next(iter(outcomes[entry.id].values()))["norm"]
    smallest = np.full(len(next(iter(outcomes[entry.id].values()))["success"]), np.inf)
    for eps in sorted(entry.eps, reverse=True):
        ok = np.asarray(outcomes[entry.id][eps]["success"], dtype=bool)
        smallest[ok] = eps
    return norm, smallest


def _worst(broken: dict[str, tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per norm, per image the smallest budget at which any attack of that norm broke it (the
    worst case over the attacks; inf where none did)."""
    norms = {norm for norm, _ in broken.values()}
    return {norm: np.minimum.reduce([size for n, size in broken.values() if n == norm])
            for norm in norms}  # fmt: skip


def _grids(config: EvaluateConfig, broken: dict[str, tuple[str, np.ndarray]]) -> dict[str, list]:
    """Budgets per norm for the curves and the worst case (see ``EvaluateConfig.eps_grid``)."""
    grids: dict[str, list[float]] = {}
    for entry in config.attacks:
        norm = broken[entry.id][0]
        grids.setdefault(norm, []).extend(entry.eps)
    for norm in grids:
        if norm in config.eps_grid:
            grids[norm] = sorted(set(config.eps_grid[norm]))
        elif grids[norm]:
            grids[norm] = sorted(set(grids[norm]))
        else:
            sizes = np.concatenate([d for n, d in broken.values() if n == norm])
            top = float(sizes[np.isfinite(sizes)].max()) if np.isfinite(sizes).any() else 1.0
            grids[norm] = [float(f"{v:.4g}") for v in np.linspace(0, top, CURVE_POINTS + 1)[1:]]
    return grids


def summarise(
    config: EvaluateConfig,
    correct: np.ndarray,
    outcomes: dict[str, Any],
    certified: dict[str, dict[str, list[bool]]] | None = None,
    verified: dict[str, np.ndarray] | None = None,
    radii: dict[str, np.ndarray] | None = None,
) -> dict:
    """Comparisons (every rate with its n) and the curves of the figure.

    Parameters
    ----------
    config : EvaluateConfig
        The run's config.
    correct : ndarray of bool, shape (n,)
        Whether each clean input is classified as its label.
    outcomes : dict
        attack id -> budget (None for a minimisation attack) -> ``{"success", "distance",
        "norm"}``, one entry per image.
    certified : dict or None, default=None
        ``certify_bounds`` method -> ``eps<e>`` -> per image, certified at the ``certify``
        budget e (None: no ``certify``).
    verified : dict or None, default=None
        ``eps<e>`` -> per image, its ``verify_linf`` status at the ``verify`` budget e.
    radii : dict or None, default=None
        ``certify_bounds`` method -> per image, its certified radius (None: no
        ``certify_radius``).

    Returns
    -------
    dict
        ``comparisons``; per norm, ``curves`` (``eps``, ``worst_case``, ``attacks``, and for
        L-inf with ``certify`` ``certified`` (interval bounds) and ``certified_linear``);
        with ``certify``, ``certified_but_attacked``: per budget (``eps<e>`` for interval
        bounds, ``linear.eps<e>`` for linear ones) the images certified yet broken within it
        by an attack, which must be 0 (more: the certified network is not the attacked one,
        or a margin within rounding); with ``radii``, the medians and ``radius_but_attacked``
        (per method, the images whose radius exceeds the smallest L-inf attack found; 0).
    """
    comparisons = [rate_comparison("clean.accuracy", correct)]
    broken = {e.id: _broken_at(outcomes, e) for e in config.attacks}
    grids = _grids(config, broken)
    curves: dict[str, dict[str, Any]] = {
        norm: {"eps": g, "attacks": {}} for norm, g in grids.items()
    }

    def robust(prefix: str, size: np.ndarray, budgets: list[float]) -> list[float]:
        """Robust accuracy at each budget, ``correct and size > eps`` (each a comparison)."""
        rates = [rate_comparison(f"{prefix}.{eps_key(eps)}.robust_accuracy", correct & (size > eps))
                 for eps in budgets]  # fmt: skip
        comparisons.extend(rates)
        return [r["ours"] for r in rates]

    for entry in config.attacks:
        norm, size = broken[entry.id]
        prefix = f"{entry.id}.{norm}"
        if entry.budgeted:
            budgets, accuracy = sorted(entry.eps), []
            for eps in budgets:  # the attack's own result at each budget
                ok = np.asarray(outcomes[entry.id][eps]["success"], dtype=bool)
                rate = rate_comparison(f"{prefix}.{eps_key(eps)}.robust_accuracy", correct & ~ok)
                comparisons += [
                    rate,
                    rate_comparison(f"{prefix}.{eps_key(eps)}.success_rate", ok[correct]),
                ]
                accuracy.append(rate["ours"])
            curves[norm]["attacks"][entry.id] = {"eps": budgets, "accuracy": accuracy}
            continue
        found = np.isfinite(size) & correct
        comparisons.append(rate_comparison(f"{prefix}.success_rate", found[correct]))
        median = float(np.median(size[found])) if found.any() else float("nan")
        comparisons.append({"id": f"{prefix}.median_distance", "ours": median, "paper": None,
                            "unit": norm})  # fmt: skip
        dense = np.linspace(0, max(grids[norm]), DENSE_POINTS)
        curves[norm]["attacks"][entry.id] = {
            "eps": grids[norm], "accuracy": robust(prefix, size, grids[norm]),
            "dense": {"eps": dense.tolist(),
                      "accuracy": robust_accuracy_curve(correct, size, dense).tolist()},
        }  # fmt: skip
    worst = _worst(broken)
    for norm, grid in grids.items():
        curves[norm]["worst_case"] = robust(f"worst_case.{norm}", worst[norm], grid)
    out: dict[str, Any] = {"comparisons": comparisons, "curves": curves}
    if config.verify:
        assert verified is not None
        out["verified_missed_by_attacks"] = _verified(config, correct, comparisons, curves, worst,
                                                      verified)  # fmt: skip
    norm = config.certify_norm
    if radii is not None:
        unit = distance_unit(norm, config.eps_units)
        out["radius_but_attacked"] = _radii(comparisons, correct, worst[norm], radii, norm, unit)
    if not config.certify:
        return out
    assert certified is not None
    contradicted: dict[str, int] = {}
    for method in config.certify_bounds:
        prefix, curve_key = CERTIFICATES[method]
        hits = {eps: np.asarray(certified[method][eps_key(eps)], dtype=bool)
                for eps in config.certify}  # fmt: skip
        rates = [rate_comparison(f"{prefix}.{norm}.{eps_key(eps)}.certified_accuracy", hits[eps])
                 for eps in config.certify]  # fmt: skip
        comparisons.extend(rates)
        curves[norm][curve_key] = {
            "eps": list(config.certify),
            "accuracy": [r["ours"] for r in rates],
        }
        key = "" if method == "interval" else f"{prefix}."  # interval bounds keep the keys eps<e>
        contradicted |= {f"{key}{eps_key(eps)}": int((hits[eps] & (worst[norm] <= eps)).sum())
                         for eps in config.certify}  # fmt: skip
    return out | {"certified_but_attacked": contradicted}


def _radii(
    comparisons: list[dict],
    correct: np.ndarray,
    worst: np.ndarray,
    radii: dict[str, np.ndarray],
    norm: str = "linf",
    unit: str = "linf",
) -> dict[str, int]:
    """The ``<ibp|linear>.<norm>.median_certified_radius`` comparisons (over the correctly
    classified images, in ``unit``); per method, the images whose radius exceeds the smallest
    perturbation an attack of that ``norm`` found (``worst``), which must be 0."""
    beaten = {}
    for method, radius in radii.items():
        prefix = CERTIFICATES[method][0]
        median = float(np.median(radius[correct])) if correct.any() else float("nan")
        comparisons.append({"id": f"{prefix}.{norm}.median_certified_radius", "ours": median,
                            "paper": None, "unit": unit})  # fmt: skip
        beaten[prefix] = int((radius > worst).sum())
    return beaten


def _verified(
    config: EvaluateConfig,
    correct: np.ndarray,
    comparisons: list[dict],
    curves: dict[str, dict[str, Any]],
    worst: dict[str, np.ndarray],
    verified: dict[str, np.ndarray],
) -> dict[str, int]:
    """The ``milp.linf.eps<e>.*`` rates (robust: proved; unknown: a time limit) and curve; per
    budget, the correctly classified images the program attacked that no attack broke within
    it (the attacks' blind spot; below the smallest budget of every L-inf attack, all of them)."""
    robust, missed = [], {}
    for eps in config.verify:
        status = verified[eps_key(eps)]
        rate = rate_comparison(f"milp.linf.{eps_key(eps)}.robust_accuracy", status == ROBUST)
        comparisons += [
            rate,
            rate_comparison(f"milp.linf.{eps_key(eps)}.unknown", status == UNKNOWN),
        ]
        robust.append(rate["ours"])
        missed[eps_key(eps)] = int(((status == ATTACKED) & correct & (worst["linf"] > eps)).sum())
    curves["linf"]["verified"] = {"eps": list(config.verify), "accuracy": robust}
    return missed


# ---- the experiment ----


def check_classifier(
    model: nn.Module, x: torch.Tensor, labels: np.ndarray, name: str = "the model"
) -> None:
    """Raise ``ValueError`` naming the problem unless ``model`` takes ``x`` (a batch of the
    inputs) and returns one (N, n_classes >= 2) tensor of logits with a class for every label.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier.
    x : torch.Tensor
        A few of its inputs.
    labels : ndarray of int
        Every label of the data.
    name : str, default="the model"
        What the errors call the model.
    """
    try:
        with torch.no_grad():
            logits = model(x)
    except Exception as exc:  # a shape the user's module cannot take: say what was fed
        hint = ""
        if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            hint = " (channels last? store x as (N, C, H, W), e.g. x.transpose(0, 3, 1, 2))"
        raise ValueError(
            f"{name} fails on inputs of shape {tuple(x.shape)}{hint}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(logits, torch.Tensor):  # a tuple or dict of outputs: wrap the module
        raise ValueError(
            f"{name} must return one tensor of logits, got {type(logits).__name__}; wrap it "
            "in a factory whose module returns only the logits"
        )
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"{name} must return (N, n_classes >= 2) logits, got shape {tuple(logits.shape)}"
        )
    if int(labels.max()) >= logits.shape[1]:
        raise ValueError(
            f"labels go up to {int(labels.max())} but {name} has {logits.shape[1]} outputs"
        )


def _check_before_work(ctx: RunContext, config: EvaluateConfig) -> tuple[Dataset, Model]:
    """Load the data and the model and run one batch, so that a missing file, a wrong shape,
    range, class count or attack parameter is one ``ConfigError`` before any attack runs."""
    with config_errors():
        return _checked_data_and_model(ctx, config)


def _checked_data_and_model(ctx: RunContext, config: EvaluateConfig) -> tuple[Dataset, Model]:
    ds, model = _data_and_model(ctx, config)
    assert ds.images is not None
    if per_feature(model.bounds):
        inputs = torch.from_numpy(ds.images)  # (checked in their own dtype: no copy)
        check_images(inputs, "the inputs", model.bounds, inputs.dtype,
                     "set model.bounds to the range the model reads")  # fmt: skip
    lo, hi = display_range(model.bounds)
    if float(ds.images.min()) < lo or float(ds.images.max()) > hi:
        raise ValueError(
            f"the inputs range over [{ds.images.min():.4g}, {ds.images.max():.4g}], outside "
            f"model.bounds [{lo:g}, {hi:g}]: set model.bounds to the range the model reads"
        )
    x = torch.from_numpy(ds.images[: min(len(ds), config.batch_size)]).to(config.device)
    check_classifier(model, x, ds.labels)
    norms = set()
    for entry in config.attacks:
        eps = entry.eps[0] if entry.eps else None
        try:
            norms.add(_make_attack(entry, model, eps, config.seed, config.batch_size).norm)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"attack {entry.id!r}: {exc}") from exc
    unused = sorted(set(config.eps_grid) - norms)
    if unused:
        raise ValueError(
            f"eps_grid has {unused}, a norm no attack measures (they measure {sorted(norms)})"
        )
    for key in ("certify", "certify_radius", "verify"):
        norm = "linf" if key == "verify" else config.certify_norm
        if getattr(config, key) and norm not in norms:
            raise ValueError(
                f"{key} gives a lower bound on {NORM_WORDS[norm]} robust accuracy: add an "
                f"{NORM_WORDS[norm]} attack ({'fgsm, bim, pgd' if norm == 'linf' else 'pgd'}"
                f"{'' if norm == 'linf' else ' with norm l2'}) for the upper bound beside it"
            )
    certifies = bool(config.certify or config.certify_radius)
    if certifies and "interval" in config.certify_bounds:
        check_certifiable(model, x)
    if config.verify:
        check_verifiable(model, x, logits=True)
    elif certifies and "linear" in config.certify_bounds:
        linear_bound_chain(model, x, logits=True)
    return ds, model


def _report_tables(results: dict[str, Any], config: dict[str, Any]) -> list[Table]:
    """Robust accuracy per attack and budget, and the minimisation attacks' distances."""
    by_id = {c["id"]: c for c in results["comparisons"]}
    rows = []
    for norm, curve in results["curves"].items():
        for name, points in curve["attacks"].items():
            for eps, acc in zip(points["eps"], points["accuracy"], strict=True):
                success = by_id.get(f"{name}.{norm}.{eps_key(eps)}.success_rate")
                rows.append([name, norm, f"{eps:g}", f"{acc:.1f}",
                             "" if success is None else f"{success['ours']:.1f}"])  # fmt: skip
        for eps, acc in zip(curve["eps"], curve["worst_case"], strict=True):
            rows.append(["worst case", norm, f"{eps:g}", f"{acc:.1f}", ""])
        for _, curve_key in CERTIFICATES.values():
            certified = curve.get(curve_key, {"eps": [], "accuracy": []})
            for eps, acc in zip(certified["eps"], certified["accuracy"], strict=True):
                rows.append([CERTIFIED_LABELS[curve_key], norm, f"{eps:g}", f"{acc:.1f}", ""])
        verified = curve.get("verified", {"eps": [], "accuracy": []})
        for eps, acc in zip(verified["eps"], verified["accuracy"], strict=True):
            unknown = by_id[f"milp.linf.{eps_key(eps)}.unknown"]["ours"]
            rows.append([f"verified (MILP; unknown {unknown:.1f} %)", norm, f"{eps:g}",
                         f"{acc:.1f}", ""])  # fmt: skip
    n = results["n_images"]
    clean = by_id["clean.accuracy"]["ours"]
    measured = "" if results.get("eps_units") is None else f"; eps in {UNITS[results['eps_units']]}"
    if "bounds" in results:
        measured += f"; {PER_FEATURE_WORDS[results['bounds']]}"
    tables = [Table(f"Robust accuracy (%) of {n} images (clean accuracy {clean:.1f} %; an "
                    f"attack's success rate is over the correctly classified images{measured})",
                    ("attack", "norm", "eps", "robust accuracy", "success rate"), rows)]  # fmt: skip
    distances = [[c["id"].split(".")[0], c["unit"], f"{c['ours']:.4g}",
                  f"{by_id[c['id'].replace('median_distance', 'success_rate')]['ours']:.1f}"]
                 for c in results["comparisons"] if c["id"].endswith(".median_distance")]  # fmt: skip
    if distances:
        tables.append(Table("Minimisation attacks: median size of the adversarial examples found",
                            ("attack", "norm", "median distance", "success rate (%)"), distances))  # fmt: skip
    if "smoothing" in results:
        tables.append(smoothing_table(results["smoothing"], by_id, n))
    return tables


def smoothing_table(
    spec: dict[str, Any], by_id: dict[str, dict], n: int, prefix: str = "", model: str = "the model"
) -> Table:
    """The report table of ``smoothing_comparisons``.

    Parameters
    ----------
    spec : dict
        The ``smoothing`` block as ``results.json`` records it.
    by_id : dict
        The run's comparisons by id.
    n : int
        The number of inputs.
    prefix : str, default=""
        The ids' prefix.
    model : str, default="the model"
        What the smoothed classifier is not, for the title.

    Returns
    -------
    Table
        The smoothed classifier's certified accuracy per L2 radius (radius 0: labelled
        correctly), titled with its settings.
    """
    rows = [["0 (labelled correctly)", f"{by_id[f'{prefix}smoothing.clean_accuracy']['ours']:.1f}"]]
    rows += [[f"{r:g}", f"{by_id[f'{prefix}smoothing.l2.{eps_key(r)}.certified_accuracy']['ours']:.1f}"]
             for r in spec["radii"]]  # fmt: skip
    title = (f"Randomized smoothing (sigma {spec['sigma']:g}, {spec['n0']} + {spec['n']} noisy "
             f"copies, alpha {spec['alpha']:g}): certified accuracy (%) of the smoothed "
             f"classifier, not of {model}, on {n} inputs; abstained on "
             f"{by_id[f'{prefix}smoothing.abstained']['ours']:.1f} %")  # fmt: skip
    return Table(title, ("L2 radius", "certified accuracy"), rows)


# advlab plan: the probe that measures each attack's rate (FGSM, BIM and PGD pass like I-FGSM)
PROBE = {"fgsm": "ifgsm", "bim": "ifgsm", "pgd": "ifgsm", "deepfool": "deepfool", "cw": "cw",
         "lbfgs": "lbfgs"}  # fmt: skip


def _setting(entry: AttackEntry, name: str) -> Any:
    """The value of ``name`` the attack runs with: as ``_attack_kwargs`` builds it, else the
    class default."""
    kwargs = _attack_kwargs(entry, None, 0, 1)
    if name in kwargs:
        return kwargs[name]
    return inspect.signature(ATTACKS[entry.name][0].__init__).parameters[name].default


def _passes_per_image(entry: AttackEntry, batch: int) -> int:
    """Passes of one image at one budget: FGSM 1, BIM / PGD their iterations, DeepFool its
    linearisations, C&W binary steps x Adam steps, L-BFGS its pass budget
    (``advlab.experiments.planning.lbfgs_pass_budget``); budgets, not forecasts (attacks stop
    early)."""
    if entry.name.startswith(TORCHATTACKS):  # torchattacks' steps x restarts, where it has them
        return int(entry.params.get("steps", 10)) * int(entry.params.get("n_restarts", 1))
    if entry.name == "fgsm":
        return 1
    if entry.name in ("bim", "pgd", "deepfool"):
        return int(_setting(entry, "max_iter"))
    if entry.name == "cw":
        return int(_setting(entry, "binary_search_steps")) * int(_setting(entry, "steps"))
    get = partial(_setting, entry)
    return lbfgs_pass_budget(get("doublings"), get("bisections"), get("max_iter"), batch)


def untrained_model(spec: ModelSpec, shape: tuple[int, ...], n_classes: int) -> Model:
    """The model of ``spec`` with its initial weights (as fast as the trained one): what
    ``advlab plan`` measures; per-feature bounds (which need the data) are left open, as the
    timing does not depend on them.

    Parameters
    ----------
    spec : ModelSpec
        The model config.
    shape : tuple of int
        The shape of one input.
    n_classes : int
        Classes of the data.

    Returns
    -------
    Model
    """
    bounds = two_numbers(spec.bounds) or (-math.inf, math.inf)
    return Model(fresh_module(spec, shape, n_classes).eval(), bounds, spec.preprocessing)


def training_entry(
    spec: ModelSpec, name: str, train: Dataset, common: dict[str, Any]
) -> dict[str, Any]:
    """The plan's line for training ``spec``'s zoo model on ``train`` (``train_epochs``
    passes): plain training is timed as the attacks' steps (a forward and backward pass per
    image-step, ``common``'s model); certified training is timed here, two epochs of
    ``train_ibp`` on the model's initial weights over ``spread_sample`` training images after
    a warm-up (its bounds cost more than a plain step).

    Parameters
    ----------
    spec : ModelSpec
        The model config (``train_epochs`` given).
    name : str
        What the line calls the model.
    train : Dataset
        The training images.
    common : dict
        The plan's fields of the model (shape, batch, bounds, and ``module``: a builder of the
        model with its initial weights).

    Returns
    -------
    dict
        The plan entry.
    """
    assert spec.train_epochs is not None and train.images is not None
    certified = spec.train_certified
    entry = {**common, "what": f"training {name} ({spec.train_epochs} epochs)", "units": 1,
             "images": len(train), "steps": spec.train_epochs}  # fmt: skip
    if certified is None:
        return entry
    module = common["module"]()  # (the model's initial weights, as the attacks are timed on)
    pick = spread_sample(len(train))
    x, y = torch.from_numpy(train.images[pick]).float(), torch.from_numpy(train.labels[pick])

    def epochs(count: int, n: int) -> None:  # (batches of 100, as the training's)
        train_ibp(module, x[:n], y[:n], certified.eps, epochs=count, ramp_epochs=0,
                  norm=certified.norm)  # fmt: skip

    epochs(1, min(len(x), 100))  # warm-up: the first steps pay for allocations
    start = time.perf_counter()
    epochs(2, len(x))
    rate = 2 * len(x) / max(time.perf_counter() - start, 1e-9)
    word = NORM_WORDS[certified.norm]
    return entry | {"rate": rate, "what": f"training {name} ({spec.train_epochs} epochs against "
                    f"its interval bounds, {word} eps {certified.eps:g}; timed on 2 epochs of "
                    f"{len(x)} images)"}  # fmt: skip


@config_errors()  # a mistake in the user's files or factory: one line, as in a run
def _plan(config: EvaluateConfig) -> dict[str, Any]:
    """Units and attack work of a run (``advlab plan``): one clean and one attack unit per
    chunk, attack and budget; image-steps per attack from ``_passes_per_image`` on every input,
    each measured on the user's model (its initial weights) at the run's batch size."""
    ds = load_inputs(config.data)
    assert ds.images is not None
    shape = tuple(ds.images.shape[1:])
    # the factory imports and builds here, or the plan stops with one line naming it
    untrained_model(config.model, shape, ds.n_classes)
    chunks = -(-len(ds) // config.chunk_size)
    batch = min(config.batch_size, config.chunk_size, len(ds))
    common = {"model": config.model.factory, "shape": list(shape), "batch": batch,
              "n_classes": ds.n_classes,
              "bounds": list(display_range(resolve_bounds(config.model.bounds, [ds.images]))),
              "module": partial(untrained_model, config.model, shape, ds.n_classes)}  # fmt: skip
    units = {"clean chunks": chunks}
    if config.certify:
        units["certify chunks"] = chunks
    if config.certify_radius:
        units["certified radius chunks"] = chunks
    if config.smoothing is not None:
        units["randomized smoothing chunks"] = chunks
    attacks = []
    if config.model.train_epochs is not None:
        other = "train" if config.data.split == "test" else "test"
        train = load_dataset(config.data.name or "", other)
        attacks.append(training_entry(config.model, config.model.factory, train, common))
    for entry in config.attacks:
        budgets = len(entry.eps) or 1
        units[f"{entry.id} ({'budgets x ' if entry.eps else ''}chunks)"] = budgets * chunks
        attacks.append({**common, "what": f"{entry.id}" + (f" at {budgets} budgets" if entry.eps else ""),
                        "attack": PROBE.get(entry.name, "ifgsm"), "images": budgets * len(ds),
                        "steps": _passes_per_image(entry, batch), "units": budgets * chunks})  # fmt: skip
    notes = [
        "Budgets, not forecasts: DeepFool, C&W and L-BFGS count every iteration they may take,",
        "and stop early on most images; rates are measured on the model's initial weights.",
    ]
    if config.verify:
        units["verify (budgets x chunks)"] = len(config.verify) * chunks
    attacks += _timed_certificates(config, ds, chunks, notes)
    if config.smoothing is not None:
        attacks.append(_timed_smoothing(config, ds, chunks))
    return {"units": units, "attacks": attacks, "notes": notes}


def _timed_smoothing(config: EvaluateConfig, ds: Dataset, chunks: int) -> dict[str, Any]:
    """The plan entry of randomized smoothing: n0 + n forward passes per image, timed on the
    model's initial weights (the cost does not depend on them) over ``spread_sample`` inputs,
    in groups of 4, for about ``SAMPLE_SECONDS``."""
    assert ds.images is not None and config.smoothing is not None
    model = untrained_model(config.model, tuple(ds.images.shape[1:]), ds.n_classes)
    smoothing = _smoothing(config, model, feature_units(config.eps_units, ds))
    pick = spread_sample(len(ds))
    x = torch.from_numpy(ds.images[pick]).to(config.device)
    rate, timed = inputs_per_second(lambda group: smoothing.certify(x[group]),
                                    np.array_split(np.arange(len(x)), -(-len(x) // 4)))  # fmt: skip
    spec = config.smoothing
    return {"what": f"randomized smoothing, sigma {spec.sigma:g} ({spec.n0} + {spec.n} noisy "
            f"copies per input; timed on {timed} inputs)", "images": len(ds), "steps": 1,
            "rate": rate, "units": chunks}  # fmt: skip


def _timed_certificates(
    config: EvaluateConfig, ds: Dataset, chunks: int, notes: list[str]
) -> list[dict[str, Any]]:
    """Plan entries for the certificates whose cost depends on the trained weights: the
    linear certificate (per ``certify`` budget) and ``verify``'s programs (per ``verify``
    budget), timed on the user's weights over ``spread_sample`` inputs of the data (the
    certificate in chunks of ``chunk_size``, the programs one input at a time), for about
    ``SAMPLE_SECONDS`` each. As in the run, ``verify`` gives a program only to the inputs that
    the model classifies correctly, that no L-inf attack of the config breaks within the budget
    and that no certificate at the budget proves (the attacks and certificates run on the
    sample for this): its line counts the data's share of such inputs in the sample, at the
    programs' rate. A model trained in the run has no weights to time yet: the plan says so in
    ``notes``."""
    linear = [e for e in config.certify if "linear" in config.certify_bounds]
    if not linear and not config.verify and not config.certify_radius:
        return []
    if config.model.weights is None:
        notes += [
            "Not counted: the linear certificate, the certified radii and verify's programs;",
            "their cost depends on the trained weights (how many ReLUs each budget leaves unstable), and",
            "this model is trained in the run (give model.weights to have them timed here).",
        ]
        return []
    assert ds.images is not None
    module = fresh_module(config.model, tuple(ds.images.shape[1:]), ds.n_classes)
    load_weights(module, config.model.weights)
    bounds = resolve_bounds(config.model.bounds, [ds.images], "model.bounds")
    model = Model(module.eval(), bounds, config.model.preprocessing)
    pick = spread_sample(len(ds))
    x, y = torch.from_numpy(ds.images[pick]), torch.from_numpy(ds.labels[pick])
    entries, chunked = [], -(-len(x) // config.chunk_size)
    units = feature_units(config.eps_units, ds)
    for eps in linear:

        def check(group: np.ndarray, eps: float = eps) -> None:  # (in chunks, as the run)
            _certified(config, model, x[group], y[group], "linear", eps, units)

        rate, timed = inputs_per_second(check, np.array_split(np.arange(len(x)), chunked))
        entries.append({"what": f"linear certificate at eps {eps:g} (timed on {timed} inputs)",
                        "images": len(ds), "steps": 1, "rate": rate, "units": chunks})  # fmt: skip
    radius = config.certify_radius
    if radius is not None:
        for method in config.certify_bounds:
            check = partial(_radius_inputs, model, x, y, radius, method, units,
                            config.certify_norm)  # fmt: skip
            rate, timed = inputs_per_second(check, np.array_split(np.arange(len(x)), chunked))
            entries.append({"what": f"certified radius ({method} bounds) up to {radius:g} "
                            f"(timed on {timed} inputs)",
                            "images": len(ds), "steps": 1, "rate": rate, "units": chunks})  # fmt: skip
    if config.verify:
        undecided = _undecided(config, model, x, y, units)
        for eps in config.verify:
            todo = np.flatnonzero(undecided[eps])
            if not len(todo):
                notes.append(f"verify at eps {eps:g}: the attacks and certificates decided every "
                             "sampled input (no program timed).")  # fmt: skip
                continue
            check = partial(_verify_inputs, model, x, y, per_feature_budget(eps, units),
                            config.verify_time_limit)  # fmt: skip
            rate, timed = inputs_per_second(check, [todo[i : i + 1] for i in range(len(todo))])
            entries.append({"what": f"verify at eps {eps:g} (programs for {len(todo)} of {len(x)} "
                            f"sampled inputs, {timed} timed)", "images": round(len(ds) * len(todo) / len(x)),
                            "steps": 1, "rate": rate, "units": chunks})  # fmt: skip
    notes += ["The certificates are timed on the given weights (see the lines' sample sizes)."]
    return entries


def _radius_inputs(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_max: float,
    method: str,
    units: np.ndarray | None,
    norm: str,
    group: np.ndarray,
) -> None:
    """The certified radii of the inputs ``group`` in one call, as a run's chunk (timed)."""
    certified_radius(model, x[group], y[group], eps_max, method, units, norm=norm)


def _verify_inputs(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    limit: float,
    group: np.ndarray,
) -> None:
    """``verify_linf`` on the inputs ``group`` (timed)."""
    verify_linf(model, x[group], y[group], eps, limit)


def _undecided(
    config: EvaluateConfig,
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    units: np.ndarray | None = None,
) -> dict[float, np.ndarray]:
    """Per ``verify`` budget, which of the inputs (x, y) the run would give a program: the
    config's attacks and the certificates at the verify budgets run on them (per-feature boxes
    with ``units``), then the run's own ``_decided``."""
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).numpy()
    outcomes = {entry.id: {eps: _attack_outcome(entry, model, eps, config.seed, config.batch_size,
                                                x, y, units)
                           for eps in entry.eps or (None,)}
                for entry in config.attacks}  # fmt: skip
    certified = _certificates(
        config, model, x, y, [e for e in config.verify if e in config.certify], units
    )
    return {eps: status == UNKNOWN
            for eps, status in _decided(config, correct, outcomes, certified).items()}  # fmt: skip


@register(
    "evaluate",
    EvaluateConfig,
    description="robustness of your own torch classifier on your own data: attacks, curves, report",
    tables=_report_tables,
    plan=_plan,
)
def run_evaluate(config: EvaluateConfig, ctx: RunContext) -> dict[str, Any]:
    """Check the data, model and attacks, then classify and attack every chunk of inputs (one
    unit per chunk, attack and budget) and summarise.

    Parameters
    ----------
    config : EvaluateConfig
        The validated config.
    ctx : RunContext
        The run (its executor runs the units).

    Returns
    -------
    dict
        ``n_images``, ``data``, ``comparisons`` and ``curves`` (see ``summarise``); the figures
        ``robustness-<norm>.png/svg`` are written to the run directory.
    """
    ds, model = _check_before_work(ctx, config)
    ctx.record_dataset(ds)
    current = fingerprint(ds, model)
    refuse_changed_files(ctx, current)
    starts = range(0, len(ds), config.chunk_size)
    clean = ctx.units({f"clean-{s:07d}": partial(_clean_unit, ctx, config, s) for s in starts},
                      desc="clean")  # fmt: skip
    pred = np.concatenate([clean[f"clean-{s:07d}"]["pred"] for s in starts])
    correct = pred == ds.labels
    ctx.log.info("clean accuracy %.2f %% on %d inputs", 100 * correct.mean(), len(ds))
    jobs, where = {}, {}
    for index, entry in enumerate(config.attacks):
        for eps in entry.eps or (None,):
            for s in starts:
                key = f"{entry.id}-{'min' if eps is None else eps_key(eps)}-{s:07d}"
                jobs[key] = partial(_attack_unit, ctx, config, index, eps, s)
                where[key] = (entry.id, eps)
    done = ctx.units(jobs, desc="attacks")
    certified: dict[str, dict[str, list[bool]]] | None = None
    if config.certify:
        bounds = ctx.units({f"certify-{s:07d}": partial(_certify_unit, ctx, config, s)
                            for s in starts}, desc="certify")  # fmt: skip
        certified = {method: {eps_key(e): [hit for s in starts
                                           for hit in bounds[f"certify-{s:07d}"][method][eps_key(e)]]
                              for e in config.certify}
                     for method in config.certify_bounds}  # fmt: skip
    outcomes: dict[str, dict[Any, dict[str, Any]]] = {}
    for key, (attack_id, eps) in where.items():
        merged = outcomes.setdefault(attack_id, {}).setdefault(
            eps, {"success": [], "distance": [], "norm": done[key]["norm"]}
        )
        merged["success"] += done[key]["success"]
        merged["distance"] += done[key]["distance"]
    verified = _verify(ctx, config, correct, outcomes, certified) if config.verify else None
    radii: dict[str, np.ndarray] | None = None
    if config.certify_radius:
        found = ctx.units({f"radius-{s:07d}": partial(_radius_unit, ctx, config, s)
                           for s in starts}, desc="certified radii")  # fmt: skip
        radii = {method: np.concatenate([found[f"radius-{s:07d}"][method] for s in starts])
                 for method in config.certify_bounds}  # fmt: skip
    summary = summarise(config, correct, outcomes, certified, verified, radii)
    if config.smoothing is not None:
        smoothed = ctx.units({f"smoothing-{s:07d}": partial(_smoothing_unit, ctx, config, s)
                              for s in starts}, desc="randomized smoothing")  # fmt: skip
        labels = np.concatenate([smoothed[f"smoothing-{s:07d}"]["label"] for s in starts])
        radius = np.concatenate([smoothed[f"smoothing-{s:07d}"]["radius"] for s in starts])
        unit = distance_unit("l2", config.eps_units)
        summary["comparisons"] += smoothing_comparisons(config.smoothing, labels, radius,
                                                        ds.labels, unit)  # fmt: skip
        summary["smoothing"] = config.smoothing.model_dump()
    for key, count in summary.get("certified_but_attacked", {}).items():
        if count:
            ctx.log.warning("%d images certified at %s were broken within it by an attack: the "
                            "certified network is not the attacked one, or a margin within "
                            "rounding", count, key)  # fmt: skip
    for norm, curve in summary["curves"].items():
        plot_attack_curves(curve, norm, ctx.path(f"robustness-{norm}"),
                           f"{config.model.factory} on {ds.name} ({len(ds)} inputs)",
                           units=UNITS[config.eps_units])  # fmt: skip
    if ds.images is not None and ds.images.ndim == 4 and ds.images.shape[1] in (1, 3):
        _examples_figure(ctx, config, ds, model)
    units = {} if config.eps_units == "input" else {"eps_units": config.eps_units}
    return {"n_images": len(ds), "data": ds.name, **current, **units,
            **bounds_record(config.model.bounds), **summary}  # fmt: skip


def _verify(
    ctx: RunContext,
    config: EvaluateConfig,
    correct: np.ndarray,
    outcomes: dict[str, Any],
    certified: dict[str, dict[str, list[bool]]] | None,
) -> dict[str, np.ndarray]:
    """Per ``verify`` budget, every image's status: decided by the attacks (broken within the
    budget, or misclassified) and by the certificates where ``certify`` has the budget, the
    rest by a unit per budget and chunk of ``verify_linf``."""
    starts = range(0, len(correct), config.chunk_size)
    decided = _decided(config, correct, outcomes, certified)
    jobs = {f"verify-{eps_key(eps)}-{s:07d}": partial(_verify_unit, ctx, config, eps, s,
                                                      decided[eps][s : s + config.chunk_size].tolist())
            for eps in config.verify for s in starts}  # fmt: skip
    done = ctx.units(jobs, desc="verify")
    return {eps_key(eps): np.concatenate([done[f"verify-{eps_key(eps)}-{s:07d}"]["status"] for s in starts])
            for eps in config.verify}  # fmt: skip


def _decided(
    config: EvaluateConfig,
    correct: np.ndarray,
    outcomes: dict[str, Any],
    certified: dict[str, dict[str, list[bool]]] | None,
) -> dict[float, np.ndarray]:
    """Per ``verify`` budget, each input's status before any program: ATTACKED where an L-inf
    attack broke it within the budget or the model misclassifies it, ROBUST where a
    certificate at the budget proves it, UNKNOWN (a program's to decide) elsewhere."""
    broken = _worst({e.id: _broken_at(outcomes, e) for e in config.attacks})
    worst = broken.get("linf", np.full(len(correct), np.inf))  # the run refuses none; a plan may
    decided = {}
    for eps in config.verify:
        status = np.full(len(correct), UNKNOWN, dtype=np.int8)
        for by_budget in (certified or {}).values():
            if eps_key(eps) in by_budget:
                status[np.asarray(by_budget[eps_key(eps)], dtype=bool)] = ROBUST
        status[~correct | (worst <= eps)] = ATTACKED
        decided[eps] = status
    return decided


def _examples_figure(ctx: RunContext, config: EvaluateConfig, ds: Dataset, model: Model) -> None:
    """The first inputs, clean and under each attack (budgeted ones at their largest budget),
    each captioned with the model's label; the attacks are rerun on these inputs alone."""
    assert ds.images is not None
    x = torch.from_numpy(ds.images[:N_EXAMPLES]).to(config.device)
    y = torch.from_numpy(ds.labels[:N_EXAMPLES]).to(config.device)
    with torch.no_grad():
        rows, captions = {"clean": x.cpu().numpy()}, {"clean": [
            f"{p} (label {t})" for p, t in zip(model(x).argmax(1).tolist(), y.tolist(), strict=True)]}  # fmt: skip
    for entry in config.attacks:
        eps = max(entry.eps) if entry.eps else None
        attack = _make_attack(entry, model, eps, config.seed, config.batch_size,
                              _units(ctx, config))  # fmt: skip
        result = attack(x, y)
        name = entry.id if eps is None else f"{entry.id} {eps:g}"
        rows[name] = result.x_adv.detach().cpu().numpy()
        captions[name] = [str(p) for p in result.pred.tolist()]
    plot_adversarial_examples(rows, ctx.path("examples"), f"{config.model.factory}: the first "
                              f"{len(x)} inputs and the model's labels, clean and attacked",
                              display_range(model.bounds), captions)  # fmt: skip
