"""The certified upper bound of a conv layer's operator norm (docs/bounds.md, "The
upper bound: the largest singular value of the Fourier symbol"): the largest
singular value of the kernel's Fourier symbol over the N x N frequency grid,
computed exactly in float64, with most frequencies skipped by certified tests
(Frobenius norm, Cholesky) instead of an eigensolver.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

CHUNK_BYTES = 1 << 28  # Fourier symbols are processed in chunks of about this size
PRUNE_SLACK = 1e-9  # relative margin on every "cannot hold the maximum" comparison
SEEDS = 16  # frequencies solved exactly first, for a high floor to prune against


def _phases(offsets: torch.Tensor, side: int, freqs: slice) -> torch.Tensor:
    """exp(-2 pi i d u / N) for every offset d and frequency u in range(N)[freqs]."""
    u = torch.arange(side, dtype=torch.float64, device=offsets.device)[freqs]
    angle = -2.0 * math.pi * torch.outer(offsets.to(torch.float64), u) / side
    return torch.polar(torch.ones_like(angle), angle)  # (len(offsets), U)


def fourier_symbol(weight: torch.Tensor, side: int, rows: slice = slice(None)) -> torch.Tensor:
    """K^(u, v) = sum_{a,b} W[:, :, a, b] exp(-2 pi i (a u + b v) / N) for the frequencies
    u in range(N)[rows], v in 0..N//2, N = side. (H, c, k, k) -> (U, N//2 + 1, H, c).

    A real kernel has K^(-u, -v) = conj(K^(u, v)) (same singular values), so the
    half plane v <= N/2 holds every singular value of the full grid.
    """
    taps = torch.arange(weight.shape[-1], device=weight.device)
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
    corr = w.new_zeros(2 * k - 1, 2 * k - 1, r, r)
    for a, b, a2, b2 in itertools.product(range(k), repeat=4):
        corr[a2 - a + k - 1, b2 - b + k - 1] += w[:, :, a, b].T @ w[:, :, a2, b2]
    offsets = torch.arange(-(k - 1), k, device=w.device)
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
    eigensolver: ||K||_2^2 <= tr(K^* K) = ||K||_F^2, and lambda_max(G) < beta for
    G = K^* K whenever a Cholesky factorisation of beta I - G succeeds. A frequency
    is skipped only when such a test puts it below the largest exact value found
    so far, so the result is the maximum over the whole grid.
    """
    r = min(weight.shape[:2])
    per_row = (side // 2 + 1) * r * r * 16 * 3  # Gram + the shifted copy + its factor
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
    candidates = torch.ones_like(trace, dtype=torch.bool)  # (F,): not yet solved exactly
    if best.sigma < 0:  # seed with the exact values where the Frobenius norm is largest
        seeds = torch.argsort(trace, descending=True)[:SEEDS]
        best = _exact(grams, seeds, row0, n_v, best)
        candidates[seeds] = False  # solved already
    if best.sigma <= 0.0:  # the largest Frobenius norm so far is 0: a zero kernel
        return best
    keep = torch.nonzero(candidates & (trace * (1 + PRUNE_SLACK) >= best.sigma)).flatten()
    keep = keep[~certified_below(grams[keep], best.sigma)]
    return _exact(grams, keep, row0, n_v, best)


def certified_below(gram: torch.Tensor, beta: float) -> torch.Tensor:
    """Which Hermitian PSD matrices of the batch gram (F, r, r) certainly have
    lambda_max < beta: (F,) bool.

    beta' I - G is positive definite exactly when lambda_max(G) < beta', and then
    its Cholesky factorisation exists. In floating point a factorisation that runs
    to the end is the exact one of beta' I - G + E with ||E||_2 <= gamma tr(beta' I - G)
    <= gamma r beta' (Demmel's backward error bound, gamma ~ (r + 1) u), so it proves
    lambda_max(G) <= beta' (1 + gamma r). beta' = beta (1 - margin) with a margin of
    1e-9 plus 4 (r + 1) r u keeps that below beta. One factorisation costs about
    half an eigensolve.
    """
    r = gram.shape[-1]
    if len(gram) == 0:
        return torch.zeros(0, dtype=torch.bool, device=gram.device)
    margin = PRUNE_SLACK + 4 * (r + 1) * r * torch.finfo(torch.float64).eps
    shifted = torch.diag_embed(gram.new_full((r,), beta * (1 - margin))) - gram
    return torch.linalg.cholesky_ex(shifted).info == 0


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
