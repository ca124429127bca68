"""Image similarity between clean and adversarial images: SSIM, CW-SSIM, MSE.

SSIM is pytorch-msssim's (Gaussian window, sigma 1.5, data_range = 1, one channel); MS-SSIM is
not offered because its five scales need images of about 161 px or more, and MNIST is 28 x 28.
CW-SSIM is advlab's own differentiable implementation (``advlab.metrics.cw_ssim``),
re-exported here so that metrics and the K-A3 loss use the same code.
"""

from __future__ import annotations

import torch
from pytorch_msssim import ssim as _ms_ssim

from advlab.metrics.cw_ssim import cw_ssim
from advlab.utils.validation import check_images

__all__ = ["cw_ssim", "mse", "ssim"]


def _as_images(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x).float(), torch.as_tensor(y).float()
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() == 3:
        x, y = x[:, None], y[:, None]
    if x.dim() != 4:
        raise ValueError(f"expected (N, H, W) or (N, C, H, W) images, got {tuple(x.shape)}")
    remedy = "the image metrics take pixels in [0, 1]: divide 8-bit images by 255"
    return check_images(x, "x", remedy=remedy), check_images(y, "y", remedy=remedy)


def ssim(x: torch.Tensor, y: torch.Tensor, win_size: int = 11) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004) in [-1, 1] for images in [0, 1], shape (N,).

    The Gaussian window is shrunk to the largest odd size that fits when the image is smaller
    than ``win_size`` (e.g. 7 on the 8 x 8 digits).

    Parameters
    ----------
    x : torch.Tensor of shape (N, H, W) or (N, C, H, W)
        Images with pixels in [0, 1].
    y : torch.Tensor of shape (N, H, W) or (N, C, H, W)
        Images with pixels in [0, 1].
    win_size : int, default=11
        Side of the Gaussian window in pixels (odd; shrunk on small images).

    Returns
    -------
    torch.Tensor of shape (N,)
        SSIM per image.
    """
    x, y = _as_images(x, y)
    fit = min(win_size, *x.shape[-2:])
    fit -= 1 - fit % 2
    return _ms_ssim(x, y, data_range=1.0, size_average=False, win_size=fit).reshape(-1)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over pixels, shape (N,).

    Parameters
    ----------
    x : torch.Tensor of shape (N, H, W) or (N, C, H, W)
        Images with pixels in [0, 1].
    y : torch.Tensor of shape (N, H, W) or (N, C, H, W)
        Images with pixels in [0, 1].

    Returns
    -------
    torch.Tensor of shape (N,)
        Mean squared pixel difference per image, in [0, 1] pixel units squared.
    """
    x, y = _as_images(x, y)
    return ((x - y) ** 2).flatten(1).mean(1)
