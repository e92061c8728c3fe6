"""The top eigenpair of a symmetric positive semi-definite operator, by Lanczos.

Used for sigma_lower (docs/bounds.md): the operator is A^T A of a conv layer,
given only as a function v -> A^T A v. Lanczos builds an orthonormal basis of
the Krylov space span{v, Av, A^2 v, ...}; the projected matrix is tridiagonal
and its top eigenvalue (the top Ritz value) rises to the operator's top
eigenvalue from below, never above it. Unlike power iteration, a Krylov space
of dimension >= 2 holds a near-degenerate top pair at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

BASIS_BYTES = 1 << 29  # memory for the stored basis; a full basis restarts Lanczos
MAX_BASIS = 400
CHECK_EVERY = 4  # Lanczos steps between convergence checks


@dataclass(frozen=True)
class Ritz:
    value: float  # the top Ritz value: never above the top eigenvalue
    vector: torch.Tensor  # its Ritz vector (flat, unit norm)
    matvecs: int
    converged: bool


def lanczos_top(apply: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, tol: float,
                max_steps: int, basis: int | None = None) -> Ritz:
    """Top eigenpair of a symmetric positive semi-definite operator by Lanczos.

    The three-term recurrence (no reorthogonalisation: the top Ritz value is
    still bounded by the top eigenvalue, to rounding, and converges first) gives
    the tridiagonal matrix, whose top eigenpair (theta, y) is read every few steps. It
    stops when the residual ||A y - theta y|| = beta_j |s_j| is at most
    tol * theta, or the Krylov space is invariant. A full basis restarts from the
    current Ritz vector. A Krylov space holds a near-degenerate top pair at once,
    where a single-vector power iteration would crawl between them.
    """
    v = start.to(torch.float64).flatten()
    v = v / v.norm()
    if basis is None:  # as many vectors as fit the memory budget, 20 to MAX_BASIS
        basis = max(20, min(MAX_BASIS, BASIS_BYTES // (8 * v.numel())))
    steps = 0
    while True:
        vs = [v]  # grown one vector per step: only what is used is ever allocated
        alpha: list[float] = []
        beta: list[float] = []
        limit, scale = min(basis, max_steps - steps), 0.0
        for j in range(limit):
            w = apply(vs[j])
            steps += 1
            alpha.append(torch.dot(vs[j], w).item())
            w.sub_(vs[j], alpha=alpha[-1])  # in place: no temporaries of the basis' size
            if j:
                w.sub_(vs[j - 1], alpha=beta[-1])
            b = w.norm().item()
            scale = max(scale, abs(alpha[-1]))
            # the tridiagonal eigenproblem every CHECK_EVERY steps, at the end of the basis
            # and on (near) invariance: every step cost a tenth of the products' time
            if (j + 1) % CHECK_EVERY == 0 or j == limit - 1 or b <= 1e-14 * scale:
                theta, s = eigh_tridiagonal(np.array(alpha), np.array(beta),
                                            select="i", select_range=(j, j))
                theta, s = float(theta[0]), torch.from_numpy(s[:, 0])
                if b * abs(s[-1].item()) <= tol * abs(theta) or b <= 1e-14 * abs(theta):
                    return Ritz(theta, _combine(vs, s), steps, True)
            beta.append(b)
            vs.append(w.div_(b))
        v = _combine(vs, s)
        if steps >= max_steps:
            return Ritz(theta, v, steps, False)


def _combine(basis: list[torch.Tensor], coeffs: torch.Tensor) -> torch.Tensor:
    """sum_i coeffs[i] basis[i], normalised (the Ritz vector)."""
    vec = torch.zeros_like(basis[0])
    for vector, coeff in zip(basis, coeffs.tolist(), strict=False):
        vec.add_(vector, alpha=coeff)
    return vec / vec.norm()
