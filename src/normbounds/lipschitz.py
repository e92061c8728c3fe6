"""Lipschitz constants (operator norms) of conv layers and matrices, in float64.

Two numbers per conv layer (docs/bounds.md, "Lipschitz constants"):

- `sigma_upper`: a certified UPPER bound. The conv on the zero-padded N x N
  input is a row subset of the circular conv on N x N, which the 2-D DFT
  block-diagonalises, so its norm is at most the largest singular value of the
  kernel's Fourier symbol K^(u, v) over the N x N frequency grid (Sedghi, Gupta
  and Long, ICLR 2019). When the stride is at least the kernel, the patches do
  not overlap and the reshaped-kernel norm is the norm itself (without
  padding) or an upper bound of it (with padding).
- `sigma_lower`: the exact operator norm, converged from below by Lanczos
  (`lanczos.py`) on A^T A, with `conv2d` and `conv_transpose2d` as the
  operator and its exact adjoint. A Krylov space holds a near-degenerate top
  pair at once, where power iteration stalls.

Dense layers and the head: the largest singular value by SVD (lower = upper).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from normbounds.lanczos import Ritz, lanczos_top

CHUNK_BYTES = 1 << 28  # Fourier symbols are processed in chunks of about this size
PRUNE_SLACK = 1e-9  # relative margin on every "cannot hold the maximum" comparison
SEEDS = 16  # frequencies solved exactly first, for a high floor to prune against
GRAM_STEPS = 8  # squarings of K^* K used to skip frequencies before the exact solver


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


def _phases(offsets: torch.Tensor, side: int, freqs: slice) -> torch.Tensor:
    """exp(-2 pi i d u / N) for every offset d and frequency u in range(N)[freqs]."""
    u = torch.arange(side, dtype=torch.float64)[freqs]
    angle = -2.0 * math.pi * torch.outer(offsets.to(torch.float64), u) / side
    return torch.polar(torch.ones_like(angle), angle)  # (len(offsets), U)


def fourier_symbol(weight: torch.Tensor, side: int, rows: slice = slice(None)) -> torch.Tensor:
    """K^(u, v) = sum_{a,b} W[:, :, a, b] exp(-2 pi i (a u + b v) / N) for the frequencies
    u in range(N)[rows], v in 0..N//2, N = side. (H, c, k, k) -> (U, N//2 + 1, H, c).

    A real kernel has K^(-u, -v) = conj(K^(u, v)) (same singular values), so the
    half plane v <= N/2 holds every singular value of the full grid.
    """
    taps = torch.arange(weight.shape[-1])
    return torch.einsum("oiab,au,bv->uvoi", weight.to(torch.complex128),
                        _phases(taps, side, rows), _phases(taps, side, slice(side // 2 + 1)))


def symbol_gram(weight: torch.Tensor, side: int, rows: slice = slice(None)) -> torch.Tensor:
    """G(u, v) with the singular values of K^(u, v) squared as eigenvalues, on the grid of
    `fourier_symbol`: (U, N//2 + 1, r, r), r = min(H, c).

    From the kernel's autocorrelation, without forming K^: with W_ab = W[:, :, a, b],
    K^* K = sum_{d, e} R_de exp(-2 pi i (d u + e v) / N) for
    R_de = sum_{a,b} W_ab^T W_{a+d, b+e}, (2k-1)^2 real r x r matrices, which is
    (2k-1)^2 / r times the work of the products K^* K. When H < c the kernel is
    transposed first: K K^* at (-u, -v) has the same eigenvalues.
    """
    w = weight.to(torch.float64)
    if w.shape[1] > w.shape[0]:
        w = w.transpose(0, 1)
    k, r = w.shape[-1], w.shape[1]
    corr = torch.zeros(2 * k - 1, 2 * k - 1, r, r, dtype=torch.float64)
    for a, b, a2, b2 in itertools.product(range(k), repeat=4):
        corr[a2 - a + k - 1, b2 - b + k - 1] += w[:, :, a, b].T @ w[:, :, a2, b2]
    offsets = torch.arange(-(k - 1), k)
    e_u, e_v = _phases(offsets, side, rows), _phases(offsets, side, slice(side // 2 + 1))
    phase = torch.einsum("du,ev->uvde", e_u, e_v)  # (U, V, 2k-1, 2k-1)
    grams = phase.flatten(2) @ corr.flatten(0, 1).flatten(1).to(torch.complex128)  # one GEMM
    return grams.view(*phase.shape[:2], r, r)


@dataclass(frozen=True)
class FourierPeak:
    sigma: float  # max over the frequency grid of the symbol's largest singular value
    freq: tuple[int, int]  # (u, v) where it is attained


def fourier_upper(weight: torch.Tensor, side: int) -> FourierPeak:
    """max_{u,v} ||K^(u, v)||_2 over the side x side grid, computed exactly (float64).

    Most frequencies are skipped with certified inequalities instead of an
    eigensolver: ||K||_2^2 <= tr(K^* K) = ||K||_F^2, and for G = K^* K,
    lambda_max(G) <= ||G^(2^t)||_F^(1/2^t) (Gram iteration). A frequency is skipped
    only when such a bound is below the largest exact value found so far, so the
    result is the maximum over the whole grid.
    """
    r = min(weight.shape[:2])
    per_row = (side // 2 + 1) * r * r * 16 * 3  # Gram + its square + a pruned copy
    chunk = max(1, CHUNK_BYTES // per_row)
    best = FourierPeak(-1.0, (0, 0))  # sigma holds the squared norm until the end
    for start in range(0, side, chunk):
        grams = symbol_gram(weight, side, slice(start, min(side, start + chunk)))
        best = _chunk_peak(grams.reshape(-1, r, r), start, grams.shape[1], best)
    return FourierPeak(math.sqrt(max(best.sigma, 0.0)), best.freq)


def top_right_vector(weight: torch.Tensor, side: int, freq: tuple[int, int]) -> torch.Tensor:
    """The top right singular vector of K^(u, v) at one frequency: (c,) complex."""
    u, v = freq
    k_mat = fourier_symbol(weight, side, slice(u, u + 1))[0, v]  # (H, c)
    return torch.linalg.eigh(k_mat.mH @ k_mat)[1][:, -1]


def _chunk_peak(grams: torch.Tensor, row0: int, n_v: int, best: FourierPeak) -> FourierPeak:
    """Update `best` with a chunk of Gram matrices (F, r, r) whose flat index f is the
    frequency (row0 + f // n_v, f % n_v)."""
    trace = torch.diagonal(grams, dim1=-2, dim2=-1).real.sum(-1)  # ||K||_F^2 >= ||K||_2^2
    if best.sigma < 0:  # seed with the exact values where the Frobenius norm is largest
        best = _exact(grams, torch.argsort(trace, descending=True)[:SEEDS], row0, n_v, best)
    if best.sigma <= 0.0:  # the largest Frobenius norm so far is 0: a zero kernel
        return best
    keep = torch.nonzero(trace * (1 + PRUNE_SLACK) >= best.sigma).flatten()
    if len(keep) > 1:
        keep = _gram_prune(grams[keep], keep, best.sigma)
    return _exact(grams, keep, row0, n_v, best)


def _gram_prune(gram: torch.Tensor, keep: torch.Tensor, floor: float) -> torch.Tensor:
    """The indices `keep` whose Gram matrix G (batched in `gram`) may reach the largest
    lambda_max of them all, which is at least `floor`.

    Gram iteration with M_0 = G: lambda_max(G) <= ||M_t||_F^(1/2^t) for M_t = G^(2^t)
    (an upper bound per frequency), and the Rayleigh quotient of G at the largest
    column of M_t is a lower bound of lambda_max(G), so of the maximum (it raises
    the floor). For Hermitian M, diag(M^2) holds M's squared column norms and its
    trace ||M||_F^2, so each step costs one batched product.
    """
    mat, log_scale = gram, torch.zeros(len(keep), dtype=torch.float64)  # G^(2^t)/exp(scale)
    for t in range(GRAM_STEPS):
        square = mat @ mat
        col_sq = torch.diagonal(square, dim1=-2, dim2=-1).real  # (F, r)
        fro_sq = col_sq.sum(-1)  # ||M_t||_F^2
        x = mat.gather(-1, col_sq.argmax(-1)[:, None, None].expand(-1, mat.shape[-2], 1))[..., 0]
        quotient = torch.einsum("fi,fij,fj->f", x.conj(), gram, x).real / x.abs().pow(2).sum(-1)
        floor = max(floor, quotient.max().item())
        log_bound = (0.5 * fro_sq.log() + log_scale) / 2 ** t  # >= log lambda_max(G)
        alive = log_bound + math.log1p(PRUNE_SLACK) >= math.log(floor)
        pruned = not bool(alive.all())
        if pruned:  # copies of (F, r, r) batches cost as much as a product: only when needed
            keep, gram, square = keep[alive], gram[alive], square[alive]
            fro_sq, log_scale = fro_sq[alive], log_scale[alive]
        # a squaring costs about a quarter of an eigensolve: go on while it may still
        # prune (bounds tighten like r^(1/2^t), so the first steps rarely do)
        if len(keep) <= 1 or t == GRAM_STEPS - 1 or (t >= 4 and not pruned):
            break
        mat = square.div_(fro_sq[:, None, None])
        log_scale = 2 * log_scale + fro_sq.log()
    return keep


def _exact(grams: torch.Tensor, idx: torch.Tensor, row0: int, n_v: int,
           best: FourierPeak) -> FourierPeak:
    """The largest eigenvalue of the Gram matrices idx of a chunk, if above `best`."""
    if len(idx) == 0:
        return best
    vals = torch.linalg.eigvalsh(grams[idx])[:, -1]  # (F',)
    top = int(torch.argmax(vals))
    if vals[top].item() <= best.sigma:
        return best
    pos = int(idx[top])
    return FourierPeak(vals[top].item(), (row0 + pos // n_v, pos % n_v))


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
    vector = top_right_vector(weight, side, peak.freq)  # (c,)
    x = (vector[:, None, None] * wave * (env[:, None] * env[None, :])).real
    if x.norm() == 0:
        x = x + 1.0
    noise = torch.randn(c, n, n, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
    return x / x.norm() + 0.01 * noise / noise.norm()




def conv_matrix(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int,
                padding: int = 0) -> torch.Tensor:
    """The explicit matrix of x -> conv2d(x, weight, stride, padding) on inputs of shape
    in_shape, float64 (outputs, inputs). For tests and small layers only."""
    eye = torch.eye(math.prod(in_shape), dtype=torch.float64).view(-1, *in_shape)
    return F.conv2d(eye, weight.to(torch.float64), stride=stride, padding=padding).flatten(1).T


def conv_adjoint(weight: torch.Tensor, side: int, stride: int,
                 padding: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """u -> A^T u for A = conv2d(., weight, stride, padding) on side x side inputs:
    (B, H, n_out, n_out) -> (B, c, side, side)."""
    k = weight.shape[-1]
    n_out = (side + 2 * padding - k) // stride + 1
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


def sigma_lower(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int,
                padding: int = 0, start: torch.Tensor | None = None, tol: float = 1e-10,
                max_steps: int = 5000) -> Ritz:
    """The operator norm of x -> conv2d(x, weight, stride, padding) on inputs of shape
    in_shape, converged from below by Lanczos on A^T A (float64): `value` is sigma,
    `vector` the top right singular vector, flat. A seeded random start without `start`.
    """
    w = weight.to(torch.float64)
    if start is None or start.numel() != math.prod(in_shape):
        start = torch.randn(in_shape, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
    ritz = lanczos_top(_gram_operator(w, in_shape, stride, padding), start, tol, max_steps)
    return Ritz(math.sqrt(max(ritz.value, 0.0)), ritz.vector, ritz.matvecs, ritz.converged)


def conv_sigma(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int,
               padding: int = 0, start: torch.Tensor | None = None, tol: float = 1e-10,
               max_steps: int = 5000, seed: int = 0) -> tuple[Sigma, torch.Tensor | None]:
    """Both Lipschitz constants of a conv layer, and the top right singular vector (to
    warm-start the next checkpoint; None when the norm has a closed form). Without
    `start`, Lanczos starts from the plane wave at the Fourier symbol's peak, which
    the upper bound finds anyway."""
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
    if start is None and peak is not None:
        start = plane_wave_start(w, peak, in_shape, padding, seed)
    ritz = sigma_lower(w, in_shape, stride, padding, start, tol, max_steps)
    return Sigma(ritz.value, upper, ritz.matvecs, ritz.converged), ritz.vector
