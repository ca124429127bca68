"""Differentiable complex-wavelet SSIM (Wang & Simoncelli, ICASSP 2005) in torch.

Both images are decomposed by a complex steerable pyramid; for every band b and every local
window w (7 x 7) the index compares the complex coefficients c_x, c_y:

    S_b(w) = (2 |sum_w c_x conj(c_y)| + K) / (sum_w |c_x|^2 + sum_w |c_y|^2 + K),

and CW-SSIM is the mean of S_b(w) over windows and bands (2 scales x 4 orientations by default,
the coarse bands that fit a 28 x 28 image). Because a small shift changes the phase of the
coefficients consistently inside a window but barely their magnitudes, |sum c_x conj(c_y)|
stays close to its maximum: CW-SSIM is insensitive to small translations, unlike pixel SSIM.

The pyramid is written here (about 30 lines) rather than taken from ``plenoptic`` because
only its band filters are needed and the dependency is heavy. It is built in the Fourier
domain and kept undecimated (every band at full resolution, so windows line up across
scales): band (s, o) has the frequency response

    H_s(rho) * G_o(theta),   H_s(rho) = cos(pi/2 * log2(rho / rho_s)) for |log2(rho / rho_s)| < 1,
    G_o(theta) = cos(theta - pi o / O)^(O - 1) on the half plane |theta - pi o / O| < pi/2,

with rho the radial frequency in units of pi, rho_s = 2^-(s+1) (s = 0 the finest band), the
log-cosine radial windows and steerable angular windows of Portilla & Simoncelli (2000),
and the one-sided angular window making each band analytic (complex). Everything is
differentiable, so ``1 - cw_ssim(x, x + n)`` is usable as a loss (the K-A3 attack does).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

_STABILITY = 1e-10


@lru_cache(maxsize=32)
def steerable_bands(
    height: int,
    width: int,
    n_scales: int = 2,
    n_orientations: int = 4,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Frequency responses of the complex pyramid's bands, shape (n_scales * n_orientations, H, W).

    Cached (attacks call it at every objective evaluation): treat the result as read-only."""
    if n_scales < 1 or n_orientations < 1:
        raise ValueError("need n_scales >= 1 and n_orientations >= 1")
    fy = torch.fft.fftfreq(height, device=device, dtype=dtype) * 2
    fx = torch.fft.fftfreq(width, device=device, dtype=dtype) * 2
    fy, fx = torch.meshgrid(fy, fx, indexing="ij")
    rho = torch.sqrt(fx**2 + fy**2).clamp_min(1e-6)
    theta = torch.atan2(fy, fx)
    alpha = (
        2 ** (n_orientations - 1)
        * math.factorial(n_orientations - 1)
        / math.sqrt(n_orientations * math.factorial(2 * (n_orientations - 1)))
    )
    bands = []
    for s in range(n_scales):
        octave = torch.log2(rho / 2 ** -(s + 1))
        radial = torch.where(octave.abs() < 1, torch.cos(math.pi / 2 * octave), 0.0)
        for o in range(n_orientations):
            delta = torch.remainder(theta - math.pi * o / n_orientations + math.pi, 2 * math.pi)
            delta = delta - math.pi  # in [-pi, pi)
            angular = torch.where(
                delta.abs() < math.pi / 2, alpha * torch.cos(delta) ** (n_orientations - 1), 0.0
            )
            bands.append(2 * radial * angular)
    return torch.stack(bands)


@lru_cache(maxsize=32)
def _box_matrix(
    size: int, window: int, device: torch.device | str, dtype: torch.dtype
) -> torch.Tensor:
    """(size, size - window + 1) matrix whose column j averages entries j .. j + window - 1."""
    rows = torch.arange(size, device=device)[:, None]
    cols = torch.arange(size - window + 1, device=device)[None, :]
    return ((rows >= cols) & (rows < cols + window)).to(dtype) / window


def window_mean(t: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over every window x window patch (stride 1, no padding) of (..., H, W) real t.

    Equal to ``F.avg_pool2d(t, window, stride=1)`` up to float rounding, written as two
    matrix products with banded averaging matrices, A_H^T t A_W, each applied from the right
    so that it is one matrix product over the whole batch: on CPU about ten times faster than
    avg_pool2d for 28 x 28 images, whose windows were most of K-A3's objective cost."""
    h, w = t.shape[-2:]
    rows = _box_matrix(h, window, t.device, t.dtype)
    cols = rows if w == h else _box_matrix(w, window, t.device, t.dtype)
    return ((t @ cols).transpose(-1, -2) @ rows).transpose(-1, -2)


def _as_batch(img: torch.Tensor, name: str) -> tuple[torch.Tensor, int]:
    """(H, W), (N, H, W) or (N, C, H, W) as (N * C, H, W) with the channel count C."""
    if img.dim() == 2:
        img = img[None]
    channels = 1
    if img.dim() == 4:
        channels = img.shape[1]
        img = img.reshape(-1, *img.shape[-2:])
    if img.dim() != 3:
        raise ValueError(
            f"{name}: expected (H, W), (N, H, W) or (N, C, H, W), got {tuple(img.shape)}"
        )
    return img, channels


def cw_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    n_scales: int = 2,
    n_orientations: int = 4,
    window: int = 7,
    k: float = 1e-4,
) -> torch.Tensor:
    """Per-image CW-SSIM in [0, 1] (1 for identical images), differentiable in both arguments.

    Parameters
    ----------
    x, y : torch.Tensor
        Images of the same shape, (H, W), (N, H, W) or (N, C, H, W). With C channels the index
        is computed on each channel separately and averaged over the channels (the channels of
        a colour image are compared as C grey images, with equal weight).
    n_scales : int, default=2
        Scales of the complex steerable pyramid.
    n_orientations : int, default=4
        Orientations per scale.
    window : int, default=7
        Side of the square local window in pixels (7 in Wang & Simoncelli).
    k : float, default=1e-4
        The small stabilising constant K (on window means of squared coefficients).

    Returns
    -------
    torch.Tensor of shape (N,)
        CW-SSIM per image.
    """
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    (x, channels), (y, _) = _as_batch(x, "x"), _as_batch(y, "y")
    h, w = x.shape[-2:]
    if window > min(h, w):
        raise ValueError(f"window={window} is larger than the image ({h} x {w})")
    bands = steerable_bands(h, w, n_scales, n_orientations, x.device, x.dtype)
    cx = torch.fft.ifft2(torch.fft.fft2(x)[:, None] * bands)  # (N, B, H, W) complex
    cy = torch.fft.ifft2(torch.fft.fft2(y)[:, None] * bands)
    cross = cx * cy.conj()

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        return window_mean(t, window)

    cross_re, cross_im = local_mean(cross.real), local_mean(cross.imag)
    # |z| smoothed as sqrt(|z|^2 + e^2) - e: exact to e, never above |z|, gradient 0 at z = 0
    cross_abs = torch.sqrt(cross_re**2 + cross_im**2 + _STABILITY**2) - _STABILITY
    energy = local_mean(cx.real**2 + cx.imag**2) + local_mean(cy.real**2 + cy.imag**2)
    index = (2 * cross_abs + k) / (energy + k)
    return index.mean(dim=(1, 2, 3)).reshape(-1, channels).mean(1)
