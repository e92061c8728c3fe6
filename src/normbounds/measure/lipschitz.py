"""Lipschitz constants (operator norms) of conv layers and matrices, in float64.

Two numbers per conv layer (docs/bounds.md, "Lipschitz constants"):

- `sigma_upper`: a certified UPPER bound. The conv on the zero-padded N x N
  input is a row subset of the circular conv on N x N, which the 2-D DFT
  block-diagonalises, so its norm is at most the largest singular value of the
  kernel's Fourier symbol K^(u, v) over the N x N frequency grid (Sedghi, Gupta
  and Long, ICLR 2019). When the stride is at least the kernel, the patches do
  not overlap and the reshaped-kernel norm is the norm itself (without
  padding) or an upper bound of it (with padding).
  `fourier.py` computes it.
- `sigma_lower`: the exact operator norm, converged from below by Lanczos
  (`lanczos.py`) on A^T A, with `conv2d` and `conv_transpose2d` as the
  operator and its exact adjoint. A Krylov space holds a near-degenerate top
  pair at once, where power iteration stalls. Inputs of at most DENSE_DIM
  entries get the explicit A^T A and a dense eigensolver instead.

Dense layers and the head: the largest singular value by SVD (lower = upper).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from normbounds.measure.fourier import FourierPeak, fourier_upper, top_right_vector
from normbounds.measure.geometry import conv_side
from normbounds.measure.lanczos import lanczos_top

DENSE_DIM = 1024  # layer inputs up to this many entries get a dense eigensolver, not Lanczos
DENSE_ENTRIES = 1 << 22  # ... when building A^T A adds at most this many terms


@dataclass(frozen=True)
class Sigma:
    """Both Lipschitz constants of one layer and how the lower one was found."""

    lower: float
    upper: float
    matvecs: int = 0  # products with A^T A that Lanczos used (0: closed form or dense SVD)
    converged: bool = True  # False: `lower` is Lanczos' best value when it hit its cap


def spectral_norm(matrix: torch.Tensor) -> float:
    """Largest singular value of a matrix (exact SVD, float64)."""
    return torch.linalg.matrix_norm(matrix.to(torch.float64), ord=2).item()


def reshaped_norm(kernel: torch.Tensor) -> float:
    """The original study's conv 'Lipschitz constant': the spectral norm of the kernel
    reshaped to (H, c k^2). A lower bound of the operator norm when some patch lies
    inside the input; the norm itself for stride >= k without padding."""
    return spectral_norm(kernel.flatten(1))


def plane_wave_start(weight: torch.Tensor, peak: FourierPeak, in_shape: tuple[int, int, int],
                     padding: int, seed: int) -> torch.Tensor:
    """A start vector close to the top right singular vector: the circular conv's top
    mode (a plane wave at the peak frequency) under a sine envelope that vanishes
    past the border, plus 1% seeded noise so no direction is missed. (c, n, n)."""
    c, n, _ = in_shape
    side = n + 2 * padding
    pos = torch.arange(n, dtype=torch.float64) + padding
    u, v = peak.freq
    wave = torch.polar(torch.ones(n, n, dtype=torch.float64),
                       2.0 * math.pi * (u * pos[:, None] + v * pos[None, :]) / side)
    env = torch.sin(math.pi * (torch.arange(n, dtype=torch.float64) + 1) / (n + 1))
    vector = top_right_vector(weight, side, peak.freq).cpu()  # (c,)
    x = (vector[:, None, None] * wave * (env[:, None] * env[None, :])).real
    if x.norm() == 0:
        x = x + 1.0
    noise = torch.randn(c, n, n, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
    return (x / x.norm() + 0.01 * noise / noise.norm()).to(weight.device)  # same on any device




def conv_adjoint(weight: torch.Tensor, side: int, stride: int,
                 padding: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """u -> A^T u for A = conv2d(., weight, stride, padding) on side x side inputs:
    (B, H, n_out, n_out) -> (B, c, side, side)."""
    k = weight.shape[-1]
    n_out = conv_side(side, k, stride, padding)
    # input rows past the last window (stride leftovers): the adjoint gives them zeros
    extra = side + 2 * padding - ((n_out - 1) * stride + k)
    # stride 1: the adjoint is the conv with the flipped, transposed kernel and
    # padding k - 1 - padding, faster on CPU than conv_transpose2d
    flipped = weight.flip(-1, -2).transpose(0, 1).contiguous()

    def apply(u: torch.Tensor) -> torch.Tensor:
        if stride == 1 and padding < k:
            return F.conv2d(u, flipped, padding=k - 1 - padding)
        return F.conv_transpose2d(u, weight, stride=stride, padding=padding,
                                  output_padding=extra)
    return apply


def _gram_operator(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int,
                   padding: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> A^T A v for A = conv2d(., weight, stride, padding); v flat (c n n,)."""
    adjoint = conv_adjoint(weight, in_shape[1], stride, padding)

    def apply(v: torch.Tensor) -> torch.Tensor:
        u = F.conv2d(v.view(1, *in_shape), weight, stride=stride, padding=padding)
        return adjoint(u).flatten()
    return apply


def dense_gram(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int,
               padding: int, dense_dim: int | None = None) -> torch.Tensor | None:
    """The explicit A^T A (d, d), d = c n n, when d <= dense_dim (default DENSE_DIM;
    else None): a dense eigensolver is then faster than Lanczos (the first layer of
    a network on MNIST).

    A^T A = sum over output positions p of P_p^T R P_p, where P_p picks the patch at
    p and R = W^T W is the (c k^2, c k^2) Gram matrix of the reshaped kernel; taps
    on the zero padding drop out.
    """
    c, n, _ = in_shape
    d, taps = c * n * n, weight[0].numel()
    if d > (DENSE_DIM if dense_dim is None else dense_dim):
        return None
    index = torch.arange(d, dtype=torch.float64).view(1, c, n, n) + 1  # 0 marks padding
    patches = F.unfold(F.pad(index, (padding,) * 4), weight.shape[-1], stride=stride)
    patches = patches[0].T.long()  # (positions, c k^2): input index + 1 of every tap
    if patches.shape[0] * taps * taps > DENSE_ENTRIES:
        return None
    flat = weight.flatten(1).cpu()  # small: built and solved on the CPU on any device
    rows = patches[:, :, None].expand(-1, taps, taps)
    cols = patches[:, None, :].expand(-1, taps, taps)
    gram = torch.zeros(d + 1, d + 1, dtype=torch.float64)
    gram.index_put_((rows.reshape(-1), cols.reshape(-1)),
                    (flat.T @ flat).expand(len(patches), -1, -1).reshape(-1), accumulate=True)
    return gram[1:, 1:]


@dataclass(frozen=True)
class LowerEstimate:
    """sigma_lower of one layer: a singular value from below (the square root of a Ritz
    value of A^T A), its right singular vector (flat), the products used."""

    sigma: float
    vector: torch.Tensor
    matvecs: int
    converged: bool


def sigma_lower(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int,
                padding: int = 0, start: torch.Tensor | None = None, tol: float = 1e-9,
                max_steps: int = 5000) -> LowerEstimate:
    """The operator norm of x -> conv2d(x, weight, stride, padding) on inputs of shape
    in_shape, converged from below by Lanczos on A^T A (float64): `sigma`,
    `vector` the top right singular vector, flat. A seeded random start without `start`.
    """
    w = weight.to(torch.float64)
    if start is None or start.numel() != math.prod(in_shape):
        start = torch.randn(in_shape, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
    ritz = lanczos_top(_gram_operator(w, in_shape, stride, padding), start.to(w.device), tol,
                       max_steps)
    return LowerEstimate(math.sqrt(max(ritz.eigenvalue, 0.0)), ritz.vector, ritz.matvecs,
                         ritz.converged)


def converged_lower(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int,
                    padding: int, peak: FourierPeak | None, start: torch.Tensor | None = None,
                    tol: float = 1e-9, max_steps: int = 5000, seed: int = 0,
                    dense_dim: int | None = None) -> LowerEstimate:
    """sigma_lower of a conv layer (float64 weight): the dense eigensolver on inputs of at
    most dense_dim (default DENSE_DIM) entries, else Lanczos from `start` or, without
    one, from the plane wave at the Fourier symbol's peak (found by the upper bound)."""
    gram = dense_gram(weight, in_shape, stride, padding, dense_dim)
    if gram is not None:  # a small input: the exact top eigenpair of the explicit A^T A
        vals, vecs = torch.linalg.eigh(gram)
        return LowerEstimate(math.sqrt(max(vals[-1].item(), 0.0)),
                             vecs[:, -1].to(weight.device), 0, True)
    if start is None and peak is not None:
        start = plane_wave_start(weight, peak, in_shape, padding, seed)
    return sigma_lower(weight, in_shape, stride, padding, start, tol, max_steps)


def conv_sigma(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int,
               padding: int = 0, start: torch.Tensor | None = None, tol: float = 1e-9,
               max_steps: int = 5000, seed: int = 0,
               dense_dim: int | None = None) -> tuple[Sigma, torch.Tensor | None]:
    """Both Lipschitz constants of a conv layer, and the top right singular vector (to
    warm-start the next checkpoint; None when the norm has a closed form); sigma_lower
    as `converged_lower` finds it."""
    w = weight.to(torch.float64)
    k, n = w.shape[-1], in_shape[1]
    if stride >= k and padding == 0:  # disjoint patches: the reshaped norm is exact
        exact = reshaped_norm(w)
        return Sigma(exact, exact), None
    if stride >= k:  # disjoint patches of a padded input: reshaped norm is an upper bound
        upper, peak = reshaped_norm(w), None
    else:
        peak = fourier_upper(w, n + 2 * padding)
        upper = max(peak.sigma, reshaped_norm(w))
    low = converged_lower(w, in_shape, stride, padding, peak, start, tol, max_steps, seed,
                          dense_dim)
    return Sigma(low.sigma, upper, low.matvecs, low.converged), low.vector
