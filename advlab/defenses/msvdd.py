"""M-SVDD-D, the multiple-SVDD defense of Mygdalis, Tefas & Pitas (2020), sec. 4.

The final linear layer of a trained classifier is replaced by C one-class SVDD units, one per
class, working on the penultimate features z = W(x). Unit c keeps a radius R_c, a
reconstruction vector u_c in R^M and M trainable projection vectors O_c (initialised with
features of class-c training samples) and, with the RBF kernel k(a, b) = exp(-gamma ||a - b||^2)
(so k(z, z) = 1), computes eq. (10):

    SVDD_c(z) = beta_c R_c^2 - d_c^2(z),   d_c^2(z) = 1 - 2 k~^T u_c + u_c^T K~ u_c,

the squared feature-space distance of z to the centre a_c = Phi(O_c) u_c, with k~_m = k(z, o_m)
and K~_mn = k(o_m, o_n). Training minimises the primal soft-boundary SVDD (8) written with the
hinge losses (11) L_p = max(0, d^2 - R^2) on the unit's own class and (12) L_n = max(0, R^2 - d^2)
on the other classes, as R^2 + (mean L_p + mean L_n) / nu (c_p = 1 / (nu N_p), c_n = 1 / (nu N_n));
first with positives only, then with both (the paper's schedule). The backbone is then
fine-tuned with the SVDD layer frozen, by cross-entropy on r_c = SVDD_c / R_c^2.

Defended prediction, eq. (13): r_c is passed through ReLU and clamped at v_p, an adversarial
class C with constant activation v_a (0 < v_a < v_p) is appended, and x is given class c when
unit c is its unique verifier (r_c > v_a); with no verifier x is flagged adversarial (label C).
Several verifiers: adversarial as in the paper's text (``ties="adversarial"``), or the largest
r_c (``ties="max"``). beta is tuned per class afterwards: for classification (O_c, the betas
maximising validation accuracy, searched over quantiles of the class's own scores) and for
defense (O_d, the per-class quantile ``defense_recall`` of verification scores, a stricter
sphere). W~-LC, the fine-tuned backbone with the original
linear layer re-attached, is ``MSVDDDefense.linear_model``.

Choices the paper leaves open (documented defaults): gamma = 1 / median pairwise squared
feature distance; nu = 0.1; v_p = 0.01; u initialised to 1/M; R^2 initialised to the median
d^2 of the class.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from torch import nn

from advlab.models.wrapper import autograd_enabled, eval_mode
from advlab.models.zoo import mlp
from advlab.utils.progress import progress
from advlab.utils.validation import caller_stacklevel, check_device

Ties = Literal["adversarial", "max"]


class SVDDLayer(nn.Module):
    """C SVDD units on l-dimensional features: ``forward(z, beta)`` is eq. (10), shape (N, C).

    Parameters
    ----------
    n_classes : int
        Number of SVDD units C, >= 1.
    n_features : int
        Dimension l of the backbone features, >= 1.
    n_projections : int
        Trainable random projections M per unit, >= 1.
    gamma : float
        Width of the kernel, > 0.
    """

    beta: torch.Tensor
    gamma: torch.Tensor

    def __init__(self, n_classes: int, n_features: int, n_projections: int, gamma: float) -> None:
        super().__init__()
        if n_classes < 1 or n_features < 1 or n_projections < 1 or not gamma > 0:
            raise ValueError("need n_classes, n_features, n_projections >= 1 and gamma > 0")
        self.radius = nn.Parameter(torch.ones(n_classes))
        self.u = nn.Parameter(torch.full((n_classes, n_projections), 1.0 / n_projections))
        self.projections = nn.Parameter(torch.zeros(n_classes, n_projections, n_features))
        self.register_buffer("gamma", torch.tensor(float(gamma)))
        self.register_buffer("beta", torch.ones(n_classes))

    def kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """RBF kernel exp(-gamma ||a - b||^2) between the rows of a (..., N, l) and b (..., M, l)."""
        return torch.exp(-self.gamma * torch.cdist(a, b).pow(2))

    def distance2(self, z: torch.Tensor) -> torch.Tensor:
        """d_c^2(z) = 1 - 2 k~^T u_c + u_c^T K~ u_c for every unit c, shape (N, C)."""
        k_tilde = self.kernel(z[None], self.projections)  # (C, N, M)
        gram = self.kernel(self.projections, self.projections)  # (C, M, M)
        center_norm = torch.einsum("cm,cmn,cn->c", self.u, gram, self.u)
        cross = torch.einsum("cnm,cm->nc", k_tilde, self.u)
        return 1.0 - 2.0 * cross + center_norm[None, :]

    def forward(self, z: torch.Tensor, beta: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. (10): beta_c R_c^2 - d_c^2(z); ``beta`` defaults to the layer's buffer."""
        beta = self.beta if beta is None else beta
        return beta * self.radius**2 - self.distance2(z)

    def scores(self, z: torch.Tensor, beta: torch.Tensor | None = None) -> torch.Tensor:
        """r_c = SVDD_c(z) / R_c^2 in (-inf, beta_c] (sec. 4.2)."""
        return self(z, beta) / self.radius**2

    def hinge_loss(
        self, z: torch.Tensor, y: torch.Tensor, negatives: bool, nu: float
    ) -> torch.Tensor:
        """sum_c R_c^2 + (mean_p L_p + mean_n L_n) / nu with L_p, L_n of eqs. (11)-(12)."""
        d2, r2 = self.distance2(z), self.radius**2
        positive = nn.functional.one_hot(y, d2.shape[1]).bool()
        lp = torch.relu(d2 - r2) * positive
        loss = r2.sum() + (lp.sum(0) / positive.sum(0).clamp_min(1)).sum() / nu
        if negatives:
            ln = torch.relu(r2 - d2) * ~positive
            loss = loss + (ln.sum(0) / (~positive).sum(0).clamp_min(1)).sum() / nu
        return loss


def median_gamma(z: torch.Tensor, max_samples: int = 2000, seed: int = 0) -> float:
    """gamma = 1 / median of pairwise squared distances (the median heuristic)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(z), generator=g)[:max_samples]
    d2 = torch.cdist(z[idx], z[idx]).pow(2)
    med = d2[~torch.eye(len(idx), dtype=torch.bool)].median()
    return float(1.0 / med.clamp_min(1e-12))


FeatureLayer = str | Callable[[nn.Module, torch.Tensor], torch.Tensor] | None


def feature_extractor(
    model: nn.Module, feature_layer: FeatureLayer
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> z``, the representation the SVDD layer works on, flattened to (N, l).

    ``feature_layer``: ``None``, the input of the model's last ``nn.Linear`` (its penultimate
    representation); a module name (as in ``model.named_modules()``), that module's output; or
    a callable ``f(model, x) -> z``. Hooks are attached to ``model`` itself, so the features
    follow its parameters (fine-tuning works through them)."""
    if callable(feature_layer):
        layer_fn = feature_layer
        return lambda x: layer_fn(model, x).flatten(1)
    modules = dict(model.named_modules())
    if feature_layer is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                "the model has no nn.Linear layer; pass feature_layer=NAME or a callable"
            )
        target, take_input = linears[-1], True
    elif feature_layer in modules:
        target, take_input = modules[feature_layer], False
    else:
        names = ", ".join(repr(n) for n in modules if n) or "none"
        raise ValueError(
            f"feature_layer={feature_layer!r} is not a module of the model; modules: {names}"
        )

    def features(x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        if take_input:
            hook = target.register_forward_pre_hook(lambda m, a: captured.append(a[0]))
        else:
            hook = target.register_forward_hook(lambda m, a, out: captured.append(out))
        try:
            model(x)
        finally:
            hook.remove()
        return captured[-1].flatten(1)

    return features


class SVDDNetwork(nn.Module):
    """Backbone features + SVDD layer: ``forward`` returns r = SVDD / R^2 (C scores,
    differentiable).

    Parameters
    ----------
    model : torch.nn.Module
        The backbone classifier.
    svdd : SVDDLayer
        The trained SVDD layer.
    beta : torch.Tensor of shape (C,) or None, default=None
        Per-class radius scale at inference; None uses the layer's.
    feature_layer : None, str or callable, default=None
        Where the features are read (see MSVDDDefense).
    """

    beta: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        svdd: SVDDLayer,
        beta: torch.Tensor | None = None,
        feature_layer: FeatureLayer = None,
    ) -> None:
        super().__init__()
        self.model, self.svdd = model, svdd
        self.features = feature_extractor(model, feature_layer)
        self.register_buffer("beta", svdd.beta.clone() if beta is None else beta.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.svdd.scores(self.features(x), self.beta)


def _as_float_tensor(X: Any) -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().float()
    return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))


class MSVDDDefense(ClassifierMixin, BaseEstimator):
    """M-SVDD-D as a scikit-learn classifier whose predictions include an adversarial class.

    Parameters
    ----------
    model : nn.Module or None, default=None
        The trained classifier to defend (any architecture; it is copied, never modified; the
        copy computes in float32, as the inputs do, whatever the model's own dtype).
        None: an MLP backbone (256 ReLU units, ``advlab.models.zoo.mlp``) is trained on
        (X, y) first, for ``backbone_epochs`` epochs.
    feature_layer : None, str or callable, default=None
        Where the SVDD layer reads the features: None, the input of the model's last
        ``nn.Linear``; a module name; or ``f(model, x) -> z`` (see ``feature_extractor``).
    n_projections : int, default=512
        M per class (512 for fc1, 256 for lenet5 in the paper).
    nu : float, default=0.1
        Soft-boundary weight (c_p = 1 / (nu N_p)).
    gamma : float or None, default=None
        RBF width; None = median heuristic on the training features.
    epochs_positive, epochs_both : int, default=10
        SVDD training epochs with L_p only, then with L_p + L_n.
    finetune_epochs : int, default=2
        Backbone epochs with the SVDD layer frozen.
    lr : float, default=1e-2
        Adam learning rate of the SVDD layer.
    finetune_lr : float, default=1e-4
        Adam learning rate of the fine-tuning.
    finetune_hinge : float, default=0.0
        Weight of mean relu(-r_y) added to the fine-tuning cross-entropy (0, the paper, uses
        cross-entropy alone). Beyond the paper: cross-entropy on r can be lowered by pushing
        features away from every centre, out of their own sphere too; measured on MNIST-LeNet
        (10,000 training images, 20 + 20 SVDD epochs, 3 fine-tune epochs): test images verified
        by their own unit at beta = 1 fell from 81 % to 64 % with 0 and rose to 85 % with 10.
    batch_size : int, default=256
        Samples per batch in every training loop.
    v_p : float, default=0.01
        Clamp value of the verified classes' activations (0 < v_a < v_p).
    v_a : float, default=0.001
        The adversarial class's constant activation.
    ties : {"adversarial", "max"}, default="adversarial"
        Several verifiers -> adversarial (the paper) or the largest r_c.
    defense_recall : float in (0, 1], default=0.95
        Per-class share of validation samples kept verified by O_d.
    backbone_epochs : int, default=30
        Epochs of the MLP backbone trained when ``model`` is None.
    random_state : int, RandomState or None, default=None
        Seeds every draw (local generators; the global torch RNG is not touched); None draws
        fresh randomness.
    device : str, default="cpu"
        Torch device of the defense ("cpu", "cuda", ...).

    Attributes
    ----------
    classes_ : ndarray, the class labels seen in fit
    adversarial_label_ : the label of the adversarial class (max(classes_) + 1 for integer
        labels, the string "adversarial" otherwise); also ``adversarial_label``
    model_ : the fine-tuned backbone with its own head (W~-LC)
    svdd_ : ``SVDDLayer``
    beta_classification_ (O_c), beta_defense_ (O_d) : tensors of C values
    history_ : losses per epoch
    n_features_in_ : int
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "model": [nn.Module, None],
        "feature_layer": [str, callable, None],
        "n_projections": [Interval(Integral, 1, None, closed="left")],
        "nu": [Interval(Real, 0, None, closed="neither")],
        "gamma": [Interval(Real, 0, None, closed="neither"), None],
        "epochs_positive": [Interval(Integral, 0, None, closed="left")],
        "epochs_both": [Interval(Integral, 0, None, closed="left")],
        "finetune_epochs": [Interval(Integral, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "finetune_lr": [Interval(Real, 0, None, closed="neither")],
        "finetune_hinge": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "v_p": [Interval(Real, 0, None, closed="neither")],
        "v_a": [Interval(Real, 0, None, closed="neither")],
        "ties": [StrOptions({"adversarial", "max"})],
        "defense_recall": [Interval(Real, 0, 1, closed="right")],
        "backbone_epochs": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str, torch.device],
    }

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        feature_layer: FeatureLayer = None,
        n_projections: int = 512,
        nu: float = 0.1,
        gamma: float | None = None,
        epochs_positive: int = 10,
        epochs_both: int = 10,
        finetune_epochs: int = 2,
        lr: float = 1e-2,
        finetune_lr: float = 1e-4,
        finetune_hinge: float = 0.0,
        batch_size: int = 256,
        v_p: float = 0.01,
        v_a: float = 0.001,
        ties: Ties = "adversarial",
        defense_recall: float = 0.95,
        backbone_epochs: int = 30,
        random_state: Any = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.model, self.feature_layer = model, feature_layer
        self.n_projections, self.nu, self.gamma = n_projections, nu, gamma
        self.epochs_positive, self.epochs_both = epochs_positive, epochs_both
        self.finetune_epochs, self.lr, self.finetune_lr = finetune_epochs, lr, finetune_lr
        self.finetune_hinge = finetune_hinge
        self.batch_size, self.v_p, self.v_a, self.ties = batch_size, v_p, v_a, ties
        self.defense_recall, self.backbone_epochs = defense_recall, backbone_epochs
        self.random_state, self.device = random_state, device

    # -- fitting ------------------------------------------------------------------------
    def _check_X(self, X: Any, reset: bool) -> torch.Tensor:
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        data = validate_data(self, X, reset=reset, allow_nd=True, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(data))

    @_fit_context(prefer_skip_nested_validation=True)
    @autograd_enabled()  # (the caller may be under torch.no_grad)
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> MSVDDDefense:
        """Train the SVDD layer on the model's features of (X, y), fine-tune the backbone, tune
        beta on (X_val, y_val) (default: the training data). X: (n_samples, ...) inputs of the
        model (images (N, C, H, W), or (N, D) for tabular data); y: class labels."""
        if not 0 < self.v_a < self.v_p:
            raise ValueError(f"need 0 < v_a < v_p, got v_a={self.v_a}, v_p={self.v_p}")
        check_device(self.device)
        if isinstance(y, torch.Tensor):
            y = y.detach().cpu().numpy()
        x = self._check_X(X, reset=True)
        y = column_or_1d(y, warn=True)
        check_consistent_length(x, y)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("M-SVDD-D needs at least 2 classes in y, got one class")
        seed = self._seed()
        yt = torch.from_numpy(y_idx.astype(np.int64))
        if X_val is None or y_val is None:
            x_val, y_val_idx = x, yt
        else:
            x_val = self._check_X(X_val, reset=False)
            y_val = (
                y_val.detach().cpu().numpy()
                if isinstance(y_val, torch.Tensor)
                else np.asarray(y_val)
            )
            if not np.isin(y_val, self.classes_).all():
                raise ValueError("y_val holds labels that y does not")
            y_val_idx = torch.from_numpy(np.searchsorted(self.classes_, y_val).astype(np.int64))
        self.n_classes_ = len(self.classes_)
        self.model_ = self._backbone(x, yt, seed).to(self.device).eval()
        self._check_output(x)
        self.history_: dict[str, list[float]] = {"svdd_loss": [], "finetune_loss": []}
        z = self._features(x)
        self.svdd_ = self._init_layer(z, yt, seed).to(self.device)
        self._train_layer(z.to(self.device), yt.to(self.device), seed)
        self._finetune(x, yt, seed)
        self._tune_beta(x_val, y_val_idx)
        return self

    def _seed(self) -> int:
        if isinstance(self.random_state, Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def _backbone(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
        """A copy of ``model``, or an MLP trained on (x, y) when ``model`` is None."""
        if self.model is not None:  # in float32, the dtype _check_X gives the inputs
            return copy.deepcopy(self.model).float()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = mlp(self.n_classes_, tuple(x.shape[1:]))
        net.to(self.device).train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(seed)
        for _ in range(self.backbone_epochs):
            for idx in torch.randperm(len(x), generator=g).split(self.batch_size):
                opt.zero_grad()
                xb, yb = x[idx].to(self.device), y[idx].to(self.device)
                nn.functional.cross_entropy(net(xb), yb).backward()
                opt.step()
        return net

    def _check_output(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            out = self.model_(x[:1].to(self.device))
        if out.ndim != 2 or out.shape[1] != self.n_classes_:
            raise ValueError(
                f"the model returns {tuple(out.shape[1:])} scores per input but y has "
                f"{self.n_classes_} classes; y must contain every one of the model's classes"
            )

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        features = feature_extractor(self.model_, self.feature_layer)
        with torch.no_grad():
            out = [features(x[s : s + 1024].to(self.device)).cpu() for s in range(0, len(x), 1024)]
        return torch.cat(out)

    def _init_layer(self, z: torch.Tensor, y: torch.Tensor, seed: int) -> SVDDLayer:
        gamma = self.gamma if self.gamma is not None else median_gamma(z, seed=seed)
        layer = SVDDLayer(self.n_classes_, z.shape[1], self.n_projections, gamma)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for c in range(self.n_classes_):
                own = z[y == c]
                pick = torch.randint(len(own), (self.n_projections,), generator=g)
                if len(own) >= self.n_projections:
                    pick = torch.randperm(len(own), generator=g)[: self.n_projections]
                layer.projections[c] = own[pick]
            d2 = layer.distance2(z)
            for c in range(self.n_classes_):
                layer.radius[c] = d2[y == c, c].median().clamp_min(1e-6).sqrt()
        return layer

    def _train_layer(self, z: torch.Tensor, y: torch.Tensor, seed: int) -> None:
        opt = torch.optim.Adam(self.svdd_.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(seed)
        schedule = [False] * self.epochs_positive + [True] * self.epochs_both
        for negatives in progress(schedule, desc="SVDD layer"):
            total = 0.0
            for idx in torch.randperm(len(z), generator=g).split(self.batch_size):
                idx = idx.to(z.device)
                opt.zero_grad()
                loss = self.svdd_.hinge_loss(z[idx], y[idx], negatives, self.nu)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            self.history_["svdd_loss"].append(total / len(z))

    def _finetune(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> None:
        if self.finetune_epochs == 0:
            return
        for p in self.svdd_.parameters():
            p.requires_grad_(False)
        net = SVDDNetwork(self.model_, self.svdd_, feature_layer=self.feature_layer).train()
        with eval_mode(net):  # (one sample, no batch-norm statistics touched)
            depends = net(x[:1].to(self.device)).requires_grad
        if not depends:  # e.g. a linear model, whose features are its input
            warnings.warn(
                "M-SVDD-D: the features do not depend on any parameter of the model (the feature "
                "layer reads the model's input), so there is nothing to fine-tune; "
                "finetune_epochs is ignored",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
            self.model_.eval()
            return
        # every parameter the features depend on; those after the feature layer get no gradient
        opt = torch.optim.Adam(list(self.model_.parameters()), lr=self.finetune_lr)
        g = torch.Generator().manual_seed(seed + 1)
        for _ in progress(range(self.finetune_epochs), desc="fine-tune"):
            total = 0.0
            for idx in torch.randperm(len(x), generator=g).split(self.batch_size):
                xb, yb = x[idx].to(self.device), y[idx].to(self.device)
                opt.zero_grad()
                r = net(xb)
                loss = nn.functional.cross_entropy(r, yb)
                if self.finetune_hinge > 0:  # keep each sample inside its own sphere: eq. (11)
                    own = r.gather(1, yb[:, None])  # r_y = beta_y - d_y^2 / R_y^2
                    loss = loss + self.finetune_hinge * torch.relu(-own).mean()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            self.history_["finetune_loss"].append(total / len(x))
        self.model_.eval()

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        z = self._features(x).to(self.device)
        with torch.no_grad():
            return (self.svdd_.distance2(z) / self.svdd_.radius**2).cpu()

    def normalized_distances(self, X: Any) -> torch.Tensor:
        """s_c(x) = d_c^2(W~(x)) / R_c^2, shape (N, C); unit c verifies x iff beta_c - s_c > v_a."""
        check_is_fitted(self, "svdd_")
        return self._normalized(self._check_X(X, reset=False))

    def _tune_beta(self, x: torch.Tensor, y: torch.Tensor) -> None:
        s = self._normalized(x)
        # O_d: the smallest beta keeping `defense_recall` of each class verified by its own unit
        self.beta_defense_ = torch.stack(
            [
                torch.quantile(s[y == c, c], self.defense_recall) + self.v_a
                if bool((y == c).any())
                else torch.tensor(1.0)
                for c in range(self.n_classes_)
            ]
        )

        # O_c: coordinate ascent maximising validation accuracy, per class over a grid of
        # absolute values around the training beta 1 and of the class's own score quantiles
        # (s is not near 1 for every backbone), from the better of beta = 1 and O_d
        def accuracy(b: torch.Tensor) -> float:
            return float((self._decide(s, b) == y).float().mean())

        ones = torch.ones(self.n_classes_)
        beta = max((ones, self.beta_defense_.clone()), key=accuracy)
        levels, absolute = torch.linspace(0.5, 1.0, 51), torch.linspace(0.5, 2.0, 61)
        for _ in range(2):
            for c in range(self.n_classes_):
                if not bool((y == c).any()):
                    continue
                own = torch.quantile(s[y == c, c], levels) + self.v_a
                grid = torch.cat([absolute, own])
                accs = []
                for value in grid:
                    beta[c] = value
                    accs.append(accuracy(beta))
                beta[c] = grid[int(np.argmax(accs))]
        self.beta_classification_ = beta

    # -- prediction ----------------------------------------------------------------------
    def _decide(self, s: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Eq. (13) on normalised distances: r = min(v_p, relu(beta - s)), adversarial class C
        (class indices 0..C)."""
        r = beta[None, :] - s
        verified = r > self.v_a
        count = verified.sum(1)
        label = torch.full((len(s),), self.n_classes_, dtype=torch.long)
        unique = count == 1
        label[unique] = verified[unique].float().argmax(1)
        if self.ties == "max":
            many = count > 1
            label[many] = r[many].masked_fill(~verified[many], -torch.inf).argmax(1)
        return label

    def _beta(self, beta: str | float | torch.Tensor) -> torch.Tensor:
        if isinstance(beta, str):
            if beta not in ("classification", "defense"):
                raise ValueError(
                    f"beta={beta!r}: use 'classification', 'defense', a number or a tensor"
                )
            return self.beta_classification_ if beta == "classification" else self.beta_defense_
        out = torch.as_tensor(beta, dtype=torch.float32).expand(self.n_classes_).clone()
        if not bool(torch.isfinite(out).all() & (out > 0).all()):
            raise ValueError("beta must be finite and > 0")
        return out

    @property
    def adversarial_label_(self) -> Any:
        check_is_fitted(self, "classes_")
        if np.issubdtype(self.classes_.dtype, np.integer):
            return self.classes_.dtype.type(self.classes_.max() + 1)
        return "adversarial"

    @property
    def adversarial_label(self) -> Any:
        return self.adversarial_label_

    def predict(self, X: Any, beta: str | float | torch.Tensor = "classification") -> np.ndarray:
        """Labels from ``classes_``, or ``adversarial_label_`` for inputs no unit verifies
        (eq. 13); ``beta``: "classification" (O_c), "defense" (O_d), one number for every
        class, or a tensor of C values."""
        check_is_fitted(self, "svdd_")
        index = self._decide(self.normalized_distances(X), self._beta(beta)).numpy()
        if np.issubdtype(self.classes_.dtype, np.integer):
            return np.append(self.classes_, self.adversarial_label_)[index]
        if not (index == self.n_classes_).any():
            return self.classes_[index]
        return np.append(self.classes_.astype(object), self.adversarial_label_)[index]

    def linear_model(self) -> nn.Module:
        """W~-LC: the fine-tuned backbone with its own head."""
        check_is_fitted(self, "model_")
        return self.model_

    def svdd_model(self, beta: str | float | torch.Tensor = 1.0) -> nn.Module:
        """The differentiable W~-SVDD network x -> r (before ReLU/clamp), for white-box use."""
        check_is_fitted(self, "svdd_")
        return SVDDNetwork(self.model_, self.svdd_, self._beta(beta).to(self.device),
                           self.feature_layer).eval()  # fmt: skip

    # -- persistence (tensors only, no pickle) ---------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The fitted state as named CPU tensors, for ``safetensors``: the fine-tuned backbone
        (``model.*``), the SVDD layer (``svdd.*``), the two tuned betas and the (integer)
        classes."""
        check_is_fitted(self, "svdd_")
        if not np.issubdtype(self.classes_.dtype, np.integer):
            raise ValueError("state_tensors stores integer class labels only")
        state = {f"model.{k}": v for k, v in self.model_.state_dict().items()}
        state.update({f"svdd.{k}": v for k, v in self.svdd_.state_dict().items()})
        state["beta_classification"] = self.beta_classification_
        state["beta_defense"] = self.beta_defense_
        state["classes"] = torch.as_tensor(self.classes_.astype(np.int64))
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> MSVDDDefense:
        """Restore a fit saved by ``state_tensors`` onto a copy of this defense's ``model``
        (the same architecture as the one fitted; an MLP backbone is rebuilt from the state)."""
        expected = {"svdd.radius", "svdd.u", "svdd.projections", "svdd.gamma", "beta_defense",
                    "beta_classification", "classes"}  # fmt: skip
        missing = expected - set(state)
        if missing:
            raise ValueError(f"state lacks {sorted(missing)}; was it saved by state_tensors()?")
        n_classes, n_proj, n_feat = state["svdd.projections"].shape
        self.n_classes_ = int(n_classes)
        self.classes_ = state["classes"].numpy()
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        if self.model is None:
            raise ValueError("load_state_tensors needs the defense's model (the architecture)")
        self.model_ = copy.deepcopy(self.model).float().to(self.device).eval()  # as _backbone
        self.model_.load_state_dict(weights)
        layer = SVDDLayer(self.n_classes_, int(n_feat), int(n_proj), float(state["svdd.gamma"]))
        layer.load_state_dict(
            {k.removeprefix("svdd."): v for k, v in state.items() if k.startswith("svdd.")}
        )
        self.svdd_ = layer.to(self.device)
        self.beta_classification_ = state["beta_classification"].float()
        self.beta_defense_ = state["beta_defense"].float()
        self.history_ = {"svdd_loss": [], "finetune_loss": []}
        return self
