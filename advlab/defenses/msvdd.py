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
linear layer re-attached, is :meth:`MSVDDDefense.linear_model`.

Choices the paper leaves open (documented defaults): gamma = 1 / median pairwise squared
feature distance; nu = 0.1; v_p = 0.01; u initialised to 1/M; R^2 initialised to the median
d^2 of the class.
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch
from torch import nn

from advlab.utils.progress import progress
from advlab.utils.validation import check_images

Ties = Literal["adversarial", "max"]


class SVDDLayer(nn.Module):
    """C SVDD units on l-dimensional features: ``forward(z, beta)`` is eq. (10), shape (N, C)."""

    beta: torch.Tensor
    gamma: torch.Tensor

    def __init__(self, n_classes: int, n_features: int, n_projections: int, gamma: float) -> None:
        super().__init__()
        if n_classes < 1 or n_features < 1 or n_projections < 1 or not gamma > 0:
            raise ValueError("need n_classes, n_features, n_projections >= 1 and gamma > 0")
        self.radius = nn.Parameter(torch.ones(n_classes))
        self.u = nn.Parameter(torch.full((n_classes, n_projections), 1.0 / n_projections))
        self.projections = nn.Parameter(torch.randn(n_classes, n_projections, n_features))
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


class SVDDNetwork(nn.Module):
    """Backbone + SVDD layer: ``forward`` returns r = SVDD / R^2 (C scores, differentiable)."""

    beta: torch.Tensor

    def __init__(self, model: nn.Module, svdd: SVDDLayer, beta: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model, self.svdd = model, svdd
        self.register_buffer("beta", svdd.beta.clone() if beta is None else beta.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.svdd.scores(self.model.features(x), self.beta)  # type: ignore[operator]


class MSVDDDefense:
    """M-SVDD-D (scikit-learn style: ``fit`` then fitted attributes with a trailing underscore).

    Args:
        n_projections: M per class (512 for fc1, 256 for lenet5 in the paper).
        nu: soft-boundary weight (c_p = 1 / (nu N_p)).
        gamma: RBF width; ``None`` = median heuristic on the training features.
        epochs_positive, epochs_both: SVDD training epochs with L_p only, then with L_p + L_n.
        finetune_epochs: backbone epochs with the SVDD layer frozen.
        finetune_hinge: weight of mean relu(-r_y) added to the fine-tuning cross-entropy (0, the
            paper, uses cross-entropy alone). Beyond the paper: cross-entropy on r can be lowered
            by pushing features away from every centre, out of their own sphere too; measured
            on MNIST-LeNet (10,000 training images, 20 + 20 SVDD epochs, 3 fine-tune epochs):
            test images verified by their own unit at beta = 1 fell from 81 % to 64 % with 0
            and rose to 85 % with 10.
        v_p, v_a: clamp value and the adversarial class's constant activation (0 < v_a < v_p).
        ties: several verifiers -> ``"adversarial"`` (the paper) or ``"max"``.
        defense_recall: per-class share of validation samples kept verified by O_d.

    Fitted: ``model_`` (fine-tuned backbone with the original head; W~-LC), ``svdd_``
    (:class:`SVDDLayer`), ``beta_classification_`` (O_c) and ``beta_defense_`` (O_d), ``history_``.
    """

    def __init__(
        self,
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
        random_state: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        if (
            n_projections < 1
            or not nu > 0
            or min(epochs_positive, epochs_both, finetune_epochs) < 0
            or finetune_hinge < 0
        ):
            raise ValueError(
                "need n_projections >= 1, nu > 0, epoch counts >= 0 and finetune_hinge >= 0"
            )
        if not 0 < v_a < v_p:
            raise ValueError(f"need 0 < v_a < v_p, got v_a={v_a}, v_p={v_p}")
        if ties not in ("adversarial", "max"):
            raise ValueError(f"ties={ties!r}: use 'adversarial' or 'max'")
        if not 0 < defense_recall <= 1:
            raise ValueError(f"defense_recall must lie in (0, 1], got {defense_recall}")
        self.n_projections, self.nu, self.gamma = n_projections, nu, gamma
        self.epochs_positive, self.epochs_both = epochs_positive, epochs_both
        self.finetune_epochs, self.lr, self.finetune_lr = finetune_epochs, lr, finetune_lr
        self.finetune_hinge = finetune_hinge
        self.batch_size, self.v_p, self.v_a, self.ties = batch_size, v_p, v_a, ties
        self.defense_recall, self.random_state, self.device = defense_recall, random_state, device

    # -- fitting ------------------------------------------------------------------------
    def fit(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        x_val: torch.Tensor | None = None,
        y_val: torch.Tensor | None = None,
    ) -> MSVDDDefense:
        """Train the SVDD layer on ``model``'s features of (x, y), fine-tune the backbone, tune
        beta on (x_val, y_val) (default: the training data). ``model`` is not modified."""
        if not (
            hasattr(model, "features") and isinstance(getattr(model, "classifier", None), nn.Linear)
        ):
            raise ValueError("model must expose features(x) and a final nn.Linear `classifier`")
        x, y = self._check(x, y, "x", "y")
        if x_val is None or y_val is None:
            x_val, y_val = x, y
        x_val, y_val = self._check(x_val, y_val, "x_val", "y_val")
        head = model.classifier
        assert isinstance(head, nn.Linear)
        n_classes = int(head.out_features)
        if int(y.max()) >= n_classes or len(torch.unique(y)) != n_classes:
            raise ValueError(f"y must contain every one of the model's {n_classes} classes")
        torch.manual_seed(self.random_state)
        self.n_classes_ = n_classes
        self.model_ = copy.deepcopy(model).to(self.device).eval()
        self.history_: dict[str, list[float]] = {"svdd_loss": [], "finetune_loss": []}
        z = self._features(x)
        self.svdd_ = self._init_layer(z, y).to(self.device)
        self._train_layer(z.to(self.device), y.to(self.device))
        self._finetune(x, y)
        self._tune_beta(x_val, y_val)
        return self

    def _check(
        self, x: torch.Tensor, y: torch.Tensor, xn: str, yn: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = check_images(x, xn)
        y = torch.as_tensor(y)
        if y.shape != (len(x),) or torch.is_floating_point(y) or int(y.min()) < 0:
            raise ValueError(f"{yn} must hold {len(x)} non-negative integer labels")
        return x, y.long()

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        out = [
            self.model_.features(x[s : s + 1024].to(self.device)).cpu()  # type: ignore[operator]
            for s in range(0, len(x), 1024)
        ]
        return torch.cat(out)

    def _init_layer(self, z: torch.Tensor, y: torch.Tensor) -> SVDDLayer:
        gamma = self.gamma if self.gamma is not None else median_gamma(z, seed=self.random_state)
        layer = SVDDLayer(self.n_classes_, z.shape[1], self.n_projections, gamma)
        g = torch.Generator().manual_seed(self.random_state)
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

    def _train_layer(self, z: torch.Tensor, y: torch.Tensor) -> None:
        opt = torch.optim.Adam(self.svdd_.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(self.random_state)
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

    def _finetune(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.finetune_epochs == 0:
            return
        for p in self.svdd_.parameters():
            p.requires_grad_(False)
        net = SVDDNetwork(self.model_, self.svdd_).train()
        body = [p for n, p in self.model_.named_parameters() if not n.startswith("classifier.")]
        opt = torch.optim.Adam(body, lr=self.finetune_lr)
        g = torch.Generator().manual_seed(self.random_state + 1)
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

    @torch.no_grad()
    def normalized_distances(self, x: torch.Tensor) -> torch.Tensor:
        """s_c(x) = d_c^2(W~(x)) / R_c^2, shape (N, C); unit c verifies x iff beta_c - s_c > v_a."""
        z = self._features(x).to(self.device)
        return (self.svdd_.distance2(z) / self.svdd_.radius**2).cpu()

    def _tune_beta(self, x: torch.Tensor, y: torch.Tensor) -> None:
        s = self.normalized_distances(x)
        # O_d: the smallest beta keeping `defense_recall` of each class verified by its own unit
        self.beta_defense_ = torch.stack(
            [
                torch.quantile(s[y == c, c], self.defense_recall) + self.v_a
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
        """Eq. (13) on normalised distances: r = min(v_p, relu(beta - s)), adversarial class C."""
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
        if not bool((out > 0).all()):
            raise ValueError("beta must be > 0")
        return out

    def predict(
        self, x: torch.Tensor, beta: str | float | torch.Tensor = "classification"
    ) -> torch.Tensor:
        """Labels in 0..C, C being the adversarial class (eq. 13); ``beta``: "classification"
        (O_c), "defense" (O_d), one number for every class, or a tensor of C values."""
        if not hasattr(self, "svdd_"):
            raise RuntimeError("call fit first")
        return self._decide(self.normalized_distances(x), self._beta(beta))

    def linear_model(self) -> nn.Module:
        """W~-LC: the fine-tuned backbone with the original linear layer re-attached."""
        return self.model_

    def svdd_model(self, beta: str | float | torch.Tensor = 1.0) -> nn.Module:
        """The differentiable W~-SVDD network x -> r (before ReLU/clamp), for white-box use."""
        return SVDDNetwork(self.model_, self.svdd_, self._beta(beta).to(self.device)).eval()

    @property
    def adversarial_label(self) -> int:
        return int(self.n_classes_)

    # -- persistence (tensors only, no pickle) ---------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The fitted state as named CPU tensors, for ``safetensors``: the fine-tuned backbone
        (``model.*``), the SVDD layer (``svdd.*``) and the two tuned betas."""
        if not hasattr(self, "svdd_"):
            raise RuntimeError("call fit first")
        state = {f"model.{k}": v for k, v in self.model_.state_dict().items()}
        state.update({f"svdd.{k}": v for k, v in self.svdd_.state_dict().items()})
        state["beta_classification"] = self.beta_classification_
        state["beta_defense"] = self.beta_defense_
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def load_state_tensors(self, model: nn.Module, state: dict[str, torch.Tensor]) -> MSVDDDefense:
        """Restore a fit saved by :meth:`state_tensors` onto a copy of ``model`` (the same
        architecture as the one fitted); ``model`` itself is not modified."""
        expected = {"svdd.radius", "svdd.u", "svdd.projections", "svdd.gamma", "beta_defense",
                    "beta_classification"}  # fmt: skip
        missing = expected - set(state)
        if missing:
            raise ValueError(f"state lacks {sorted(missing)}; was it saved by state_tensors()?")
        n_classes, n_proj, n_feat = state["svdd.projections"].shape
        self.n_classes_ = int(n_classes)
        self.model_ = copy.deepcopy(model).to(self.device).eval()
        self.model_.load_state_dict(
            {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        )
        layer = SVDDLayer(self.n_classes_, int(n_feat), int(n_proj), float(state["svdd.gamma"]))
        layer.load_state_dict(
            {k.removeprefix("svdd."): v for k, v in state.items() if k.startswith("svdd.")}
        )
        self.svdd_ = layer.to(self.device)
        self.beta_classification_ = state["beta_classification"].float()
        self.beta_defense_ = state["beta_defense"].float()
        self.history_ = {"svdd_loss": [], "finetune_loss": []}
        return self
