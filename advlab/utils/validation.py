"""Input checks shared by attacks, defenses and metrics (one place, one wording)."""

from __future__ import annotations

import torch


def check_images(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """A floating-point batch (N, ...) of finite pixels in [0, 1], returned as float32."""
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got {type(x).__name__}"
                         f"{'' if not isinstance(x, torch.Tensor) else ' of dtype ' + str(x.dtype)}")  # fmt: skip
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (N, ...), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1] (pixel space); "
            f"got range [{float(x.min()):.3g}, {float(x.max()):.3g}]"
        )
    return x.float()
