"""Model zoo (small_cnn, lenet5, fc1, resnet18) and cached, resumable training."""

from advlab.models.train import TrainedModel, accuracy, train_classifier
from advlab.models.zoo import MODELS, Classifier, build_model

__all__ = ["MODELS", "Classifier", "TrainedModel", "accuracy", "build_model", "train_classifier"]
