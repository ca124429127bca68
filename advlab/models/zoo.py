"""Classifiers for images (N, C, H, W) in [0, 1], any channel count and image size.
Normalisation happens inside each model (``(x - mean) / std`` with the constructor's ``mean``
and ``std``: numbers or one value per channel; default none), so attacks work in pixel space
(eps in pixel units, clipping to [0, 1]); the std is exposed as ``input_std`` for standardized
budgets (see ``advlab.models.wrapper``). Each experiment passes its data set's statistics.

- ``mlp``: one hidden layer of 256 ReLU units, any input shape (the 8x8 digits fallback).
- ``small_cnn``: two 3x3 conv layers + two linear layers; the fast CPU default surrogate.
- ``lenet5``: LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling (Mygdalis et al.'s MNIST-LeNet).
- ``fc1``: four fully connected layers with ReLU and a 100-dimensional penultimate
  representation (Mygdalis et al.'s MNIST-FC1): D-512-256-100-C.
- ``resnet18``: ResNet-18 (He et al. 2016) for small images: 3x3 stem, no max-pool
  (Omari et al.'s surrogate). Written here because torchvision is not a dependency.

Every model exposes ``features(x)`` (the penultimate representation) and ``classifier``
(the final linear layer).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

Stat = float | Sequence[float]
ImageShape = tuple[int, ...]


class Normalize(nn.Module):
    """(x - mean) / std with constant buffers (saved with the weights); ``mean`` and ``std``
    are numbers or one value per channel (axis 1 of NCHW). ``input_std`` keeps the std as
    given (Python numbers) for standardized budgets."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Stat = 0.0, std: Stat = 1.0) -> None:
        super().__init__()
        mean_t, std_t = torch.tensor(mean), torch.tensor(std)
        if mean_t.ndim > 1 or std_t.ndim > 1 or not bool((std_t > 0).all()):
            raise ValueError(
                f"mean and std must be numbers or per-channel lists, std > 0; got {mean!r}, {std!r}"
            )
        self.register_buffer("mean", mean_t.reshape(-1, 1, 1) if mean_t.ndim else mean_t)
        self.register_buffer("std", std_t.reshape(-1, 1, 1) if std_t.ndim else std_t)
        self.input_std: float | list[float] = std if isinstance(std, int | float) else list(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """``normalize -> body -> classifier``; ``features`` returns the body's output.

    ``channels_last=True`` (the convolutional models) stores the 4-D weights and runs the body
    on NHWC tensors: oneDNN's CPU convolution and max-pooling are faster in that layout
    (``benchmarks/model_speed.py``). The function is unchanged: inputs, outputs, input
    gradients and the state dict keep PyTorch's default layout.

    Parameters
    ----------
    body : torch.nn.Module
        Feature extractor: normalised inputs to features.
    classifier : torch.nn.Linear
        Features to logits.
    channels_last : bool, default=False
        Run the body in NHWC memory layout (faster convolutions on CPU).
    mean : float or sequence of float, default=0.0
        Input mean subtracted before the body, one value or one per channel.
    std : float or sequence of float, default=1.0
        Input std divided by before the body, one value or one per channel.
    """

    def __init__(
        self,
        body: nn.Module,
        classifier: nn.Linear,
        channels_last: bool = False,
        mean: Stat = 0.0,
        std: Stat = 1.0,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.classifier = classifier
        self.channels_last = channels_last
        if channels_last:
            self.body.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @property
    def input_std(self) -> float | list[float]:
        return self.normalize.input_std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _image_shape(input_shape: ImageShape) -> tuple[int, int, int]:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
    c, h, w = (int(v) for v in input_shape)
    return c, h, w


def _numel(input_shape: ImageShape) -> int:
    n = 1
    for size in input_shape:
        n *= int(size)
    return n


def mlp(n_classes: int, input_shape: ImageShape, mean: Stat = 0.0,
        std: Stat = 1.0) -> Classifier:  # fmt: skip
    """Two-layer perceptron for any input shape (e.g. the 8x8 digits, or tabular (D,))."""
    return Classifier(
        nn.Sequential(nn.Flatten(), nn.Linear(_numel(input_shape), 256), nn.ReLU()),
        nn.Linear(256, n_classes), mean=mean, std=std,
    )  # fmt: skip


# In the convolutional models max-pooling comes before ReLU: ReLU is monotone, so
# relu(maxpool(z)) == maxpool(relu(z)) exactly (values and gradients), and ReLU then runs on a
# quarter of the activations. The layer indices (state-dict keys) are those of conv-ReLU-pool.


def small_cnn(n_classes: int, input_shape: ImageShape, mean: Stat = 0.0,
              std: Stat = 1.0) -> Classifier:  # fmt: skip
    """conv3x3(32) -> pool -> conv3x3(64) -> pool -> 128 -> classes; needs H, W >= 10."""
    c, h, w = _image_shape(input_shape)
    fh, fw = ((h - 2) // 2 - 2) // 2, ((w - 2) // 2 - 2) // 2
    if min(fh, fw) < 1:
        raise ValueError(f"small_cnn needs images of at least 10 x 10, got {h} x {w}")
    body = nn.Sequential(
        nn.Conv2d(c, 32, 3), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(32, 64, 3), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * fh * fw, 128), nn.ReLU(),
    )  # fmt: skip
    return Classifier(body, nn.Linear(128, n_classes), True, mean, std)


def lenet5(n_classes: int, input_shape: ImageShape, mean: Stat = 0.0,
           std: Stat = 1.0) -> Classifier:  # fmt: skip
    """LeNet-5: conv5x5(6, same) -> pool -> conv5x5(16) -> pool -> 120 -> 84; H, W >= 12."""
    c, h, w = _image_shape(input_shape)
    fh, fw = (h // 2 - 4) // 2, (w // 2 - 4) // 2
    if min(fh, fw) < 1:
        raise ValueError(f"lenet5 needs images of at least 12 x 12, got {h} x {w}")
    body = nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(6, 16, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * fh * fw, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
    )  # fmt: skip
    return Classifier(body, nn.Linear(84, n_classes), True, mean, std)


def fc1(n_classes: int, input_shape: ImageShape, mean: Stat = 0.0,
        std: Stat = 1.0) -> Classifier:  # fmt: skip
    body = nn.Sequential(
        nn.Flatten(), nn.Linear(_numel(input_shape), 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
        nn.Linear(256, 100), nn.ReLU(),
    )  # fmt: skip
    return Classifier(body, nn.Linear(100, n_classes), mean=mean, std=std)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(n_classes: int, input_shape: ImageShape, mean: Stat = 0.0,
             std: Stat = 1.0) -> Classifier:  # fmt: skip
    """ResNet-18 with a 3x3 stem and no max-pool (any image size: global average pooling)."""
    c, _, _ = _image_shape(input_shape)
    layers: list[nn.Module] = [nn.Conv2d(c, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    c_in = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), nn.Linear(512, n_classes), True, mean, std)


def textbook_layout(model: Classifier) -> Classifier:
    """A copy of ``model`` laid out the textbook way: conv -> ReLU -> max-pool, NCHW tensors.

    The same weights and the same function as the zoo's layout (pool before ReLU, channels_last);
    used to check that equivalence and to measure what the layout buys
    (``benchmarks/model_speed.py``)."""
    layers: list[nn.Module] = list(copy.deepcopy(model.body))  # type: ignore[call-overload]
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.MaxPool2d) and isinstance(layers[i + 1], nn.ReLU):
            layers[i], layers[i + 1] = layers[i + 1], layers[i]
    body = nn.Sequential(*layers).to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    out = Classifier(body, copy.deepcopy(model.classifier))
    out.normalize = copy.deepcopy(model.normalize)
    return out


def wong_small(n_classes: int, input_shape: ImageShape, mean: Stat = 0.0,
               std: Stat = 1.0) -> Classifier:  # fmt: skip
    """The small convolutional ReLU network of Wong, Schmidt, Metzen & Kolter (2018) for MNIST:
    conv 16 4x4 stride 2, conv 32 4x4 stride 2, dense 100, dense n_classes (no pooling, so
    interval bounds stay tight)."""
    c, h, w = _image_shape(input_shape)

    def half(size: int) -> int:
        return (size + 2 - 4) // 2 + 1

    fh, fw = half(half(h)), half(half(w))
    if min(fh, fw) < 1:
        raise ValueError(f"wong_small needs images of at least 4 x 4, got {h} x {w}")
    body = nn.Sequential(
        nn.Conv2d(c, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * fh * fw, 100), nn.ReLU(),
    )  # fmt: skip
    return Classifier(body, nn.Linear(100, n_classes), False, mean, std)


MODELS: dict[str, Callable[..., Classifier]] = {
    "mlp": mlp,
    "wong_small": wong_small,
    "small_cnn": small_cnn,
    "lenet5": lenet5,
    "fc1": fc1,
    "resnet18": resnet18,
}


def build_model(
    name: str,
    n_classes: int,
    input_shape: ImageShape,
    mean: Stat = 0.0,
    std: Stat = 1.0,
) -> Classifier:
    """A freshly initialised model by name (``mlp``, ``wong_small``, ``small_cnn``, ``lenet5``,
    ``fc1``, ``resnet18``) for ``input_shape`` (C, H, W) (``mlp`` and ``fc1``: any shape), ``n_classes``
    outputs and the normalisation ``(x - mean) / std`` (numbers or per-channel lists).

    Parameters
    ----------
    name : str
        mlp, wong_small, small_cnn, lenet5, fc1 or resnet18.
    n_classes : int
        Number of outputs, >= 2.
    input_shape : (int, int, int)
        (C, H, W) of the inputs (no default: the zoo assumes no data set).
    mean : float or sequence of float, default=0.0
        Input normalisation mean (the caller's data statistics).
    std : float or sequence of float, default=1.0
        Input normalisation std.

    Returns
    -------
    Classifier
        The initialised model (torch's default initialisation under the current RNG).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    shape = tuple(input_shape)
    channels = shape[0]
    for stat_name, stat in (("mean", mean), ("std", std)):
        if not isinstance(stat, int | float) and len(stat) not in (1, channels):
            raise ValueError(
                f"{stat_name} has {len(stat)} values for input_shape {shape} with "
                f"{channels} channel(s): give one number or one per channel"
            )
    return MODELS[name](n_classes, shape, mean, std)
