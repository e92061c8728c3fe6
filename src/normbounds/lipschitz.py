"""Lipschitz constants (spectral norms) of conv layers and matrices, in float64.

The operator norm of x -> conv2d(x, W, stride) on the layer's real input
shape comes from power iteration on A^T A, with conv_transpose2d as the exact
adjoint. Power iteration approaches the norm from below, so an unconverged
value would understate every bound that uses it: not converging within the
cap is an error, never a silent number.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


class ConvergenceError(RuntimeError):
    """Power iteration did not reach the requested tolerance within its iteration cap."""


@dataclass(frozen=True)
class PowerResult:
    sigma: float
    vector: torch.Tensor  # (1, c, n, n): the last iterate, to warm-start the next checkpoint
    iterations: int


def spectral_norm(matrix: torch.Tensor) -> float:
    """Largest singular value of a matrix (exact SVD, float64)."""
    return torch.linalg.matrix_norm(matrix.to(torch.float64), ord=2).item()


def reshaped_norm(kernel: torch.Tensor) -> float:
    """The original study's conv 'Lipschitz constant': the spectral norm of the kernel
    reshaped to (H, c k^2). A lower bound of the operator norm (at most k times smaller)."""
    return spectral_norm(kernel.flatten(1))


def _start_vector(shape: tuple[int, ...], warm: torch.Tensor | None, dtype: torch.dtype,
                  device: torch.device, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(1, *shape, generator=gen, dtype=dtype).to(device)
    if warm is not None and warm.shape == v.shape:
        # a warm start plus some noise: the top singular vector may have moved to a
        # direction the old vector barely contains, which power iteration would miss
        v = warm.to(device, dtype) / warm.norm() + 0.1 * v / v.norm()
    return v / v.norm()


def conv_operator_norm(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int,
                       tol: float, max_iter: int, warm: torch.Tensor | None = None,
                       seed: int = 0) -> PowerResult:
    """Spectral norm of x -> conv2d(x, weight, stride), x of shape (1, *in_shape).

    Iterates v <- A^T A v / ||A^T A v|| and estimates sigma = sqrt(||A^T A v||)
    (a lower bound that rises to the norm). It stops when the estimated
    remaining rise, extrapolating the last two increments geometrically, is at
    most tol * sigma. Raises ConvergenceError after max_iter iterations.
    """
    w = weight.to(torch.float64)
    k = w.shape[-1]
    n = in_shape[1]
    n_out = (n - k) // stride + 1
    pad = n - ((n_out - 1) * stride + k)  # columns the conv never reads; adjoint pads them
    v = _start_vector(in_shape, warm, w.dtype, w.device, seed)
    sigma, last_step = 0.0, None
    for it in range(1, max_iter + 1):
        u = F.conv2d(v, w, stride=stride)  # (1, H, n_out, n_out)
        back = F.conv_transpose2d(u, w, stride=stride, output_padding=pad)  # (1, c, n, n)
        norm = back.norm().item()
        if norm == 0.0:
            return PowerResult(0.0, v, it)
        v = back / norm
        new_sigma = norm ** 0.5
        step = new_sigma - sigma
        remaining = step
        if last_step is not None and 0.0 < step < last_step:
            remaining = step / (1.0 - step / last_step)  # geometric tail of the increments
        if it > 1 and abs(remaining) <= tol * new_sigma:
            return PowerResult(new_sigma, v, it)
        sigma, last_step = new_sigma, step
    raise ConvergenceError(
        f"conv operator norm: power iteration on input {tuple(in_shape)} did not reach relative"
        f" tolerance {tol:g} in {max_iter} iterations (estimate {sigma:.8g}, last relative"
        f" change {step / max(sigma, 1e-300):.3g}); raise bound.power_max_iter")
