"""Models: the Foolbox-style wrapper (a module + bounds + preprocessing), the model zoo
(small_cnn, lenet5, fc1, resnet18, mlp; any channel count and image size) and cached,
resumable training."""

from advlab.models.train import TrainedModel, accuracy, train_classifier
from advlab.models.wrapper import (
    Model,
    as_model,
    at_least_float32,
    autograd_enabled,
    eval_mode,
    model_dtype,
)
from advlab.models.zoo import MODELS, Classifier, build_model

__all__ = [
    "MODELS",
    "Classifier",
    "Model",
    "TrainedModel",
    "accuracy",
    "as_model",
    "at_least_float32",
    "autograd_enabled",
    "build_model",
    "eval_mode",
    "model_dtype",
    "train_classifier",
]
