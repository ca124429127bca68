"""Input checks shared by the clustering estimators: done first, before any heavy work."""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def as_float_matrix(
    X: ArrayLike,
    device: str | torch.device = "cpu",
    name: str = "X",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``X`` of shape (N, ...) as a (N, D) tensor of ``dtype`` on ``device``; rejects empty or
    non-finite data."""
    if isinstance(X, torch.Tensor):
        tensor = X.detach()
    elif isinstance(X, np.ndarray) or hasattr(X, "__array__"):
        array = np.asarray(X)
        if array.dtype == object or not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    else:
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(X).__name__}")
    if tensor.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_samples, n_features, ...), got shape {tuple(tensor.shape)}"
        )
    if tensor.shape[0] == 0 or tensor[0].numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)})")
    tensor = tensor.reshape(tensor.shape[0], -1).to(device=device, dtype=dtype)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def check_n_clusters(n_clusters: int, n_samples: int) -> None:
    if not isinstance(n_clusters, int | np.integer) or isinstance(n_clusters, bool):
        raise ValueError(f"n_clusters must be an integer, got {n_clusters!r}")
    if n_clusters < 1:
        raise ValueError(f"n_clusters={n_clusters} must be >= 1")
    if n_clusters > n_samples:
        raise ValueError(f"n_clusters={n_clusters} exceeds n_samples={n_samples}")
