"""Classifiers for 1x28x28 images in [0, 1]. Normalisation happens inside each model, so
attacks always work in pixel space (eps in pixel units, clipping to [0, 1]).

- ``mlp``: one hidden layer of 256 ReLU units, any input size (the 8x8 digits fallback).
- ``small_cnn``: two 3x3 conv layers + two linear layers; the fast CPU default surrogate.
- ``lenet5``: LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling (Mygdalis et al.'s MNIST-LeNet).
- ``fc1``: four fully connected layers with ReLU and a 100-dimensional penultimate
  representation (Mygdalis et al.'s MNIST-FC1): 784-512-256-100-10.
- ``resnet18``: ResNet-18 (He et al. 2016) for 28x28 input: 3x3 stem, no max-pool
  (Omari et al.'s surrogate). Written here because torchvision is not a dependency.

Every model exposes ``features(x)`` (the penultimate representation) and ``classifier``
(the final linear layer), which the SVDD defense replaces.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class Normalize(nn.Module):
    """(x - mean) / std with constant buffers (saved with the weights)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """``normalize -> body -> classifier``; ``features`` returns the body's output.

    ``channels_last=True`` (the convolutional models) stores the 4-D weights and runs the body
    on NHWC tensors: oneDNN's CPU convolution and max-pooling are faster in that layout
    (``benchmarks/model_speed.py``). The function is unchanged: inputs, outputs, input
    gradients and the state dict keep PyTorch's default layout."""

    def __init__(self, body: nn.Module, classifier: nn.Linear, channels_last: bool = False) -> None:
        super().__init__()
        self.normalize = Normalize()
        self.body = body
        self.classifier = classifier
        self.channels_last = channels_last
        if channels_last:
            self.body.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def mlp(n_classes: int = 10, input_shape: tuple[int, ...] = (1, 28, 28)) -> Classifier:
    """Two-layer perceptron for any input size (e.g. the 8x8 digits)."""
    n_in = 1
    for size in input_shape:
        n_in *= size
    return Classifier(
        nn.Sequential(nn.Flatten(), nn.Linear(n_in, 256), nn.ReLU()), nn.Linear(256, n_classes)
    )


# In the convolutional models max-pooling comes before ReLU: ReLU is monotone, so
# relu(maxpool(z)) == maxpool(relu(z)) exactly (values and gradients), and ReLU then runs on a
# quarter of the activations. The layer indices (state-dict keys) are those of conv-ReLU-pool.


def small_cnn(n_classes: int = 10) -> Classifier:
    body = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(32, 64, 3), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
    )  # fmt: skip
    return Classifier(body, nn.Linear(128, n_classes), channels_last=True)


def lenet5(n_classes: int = 10) -> Classifier:
    body = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(6, 16, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
    )  # fmt: skip
    return Classifier(body, nn.Linear(84, n_classes), channels_last=True)


def fc1(n_classes: int = 10) -> Classifier:
    body = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
        nn.Linear(256, 100), nn.ReLU(),
    )  # fmt: skip
    return Classifier(body, nn.Linear(100, n_classes))


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


def resnet18(n_classes: int = 10) -> Classifier:
    layers: list[nn.Module] = [nn.Conv2d(1, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    c_in = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), nn.Linear(512, n_classes), channels_last=True)


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
    return Classifier(body, copy.deepcopy(model.classifier))


MODELS: dict[str, Callable[..., Classifier]] = {
    "mlp": mlp,
    "small_cnn": small_cnn,
    "lenet5": lenet5,
    "fc1": fc1,
    "resnet18": resnet18,
}


def build_model(
    name: str, n_classes: int = 10, input_shape: tuple[int, ...] = (1, 28, 28)
) -> Classifier:
    """A freshly initialised model by name (``mlp``, ``small_cnn``, ``lenet5``, ``fc1``,
    ``resnet18``). All but ``mlp`` need 1x28x28 input."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if name == "mlp":
        return mlp(n_classes, input_shape)
    if tuple(input_shape) != (1, 28, 28):
        raise ValueError(
            f"model {name!r} expects input shape (1, 28, 28), got {tuple(input_shape)}; use 'mlp'"
        )
    return MODELS[name](n_classes)
