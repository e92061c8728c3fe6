"""The prior bounds the paper compares against: Long & Sedghi, Graf et al., Ledent et al.

Pure functions of scalar ingredients, exactly as docs/bounds.md states them
(sections 3 to 5); formulas.BOUNDS registers them with their status.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from normbounds.measure.logspace import LOG2, confidence_term, exp, log, logsum

# graf's union bound: every constraint lies on the grid {GRID_RATIO^k : k in Z} and the
# index k has prior weight 2 / (3 (|k| + 1) (|k| + 2)), which sums to 1 over Z
GRID_RATIO = 1.0 + 1.0 / 64.0
_LOG_RATIO = math.log(GRID_RATIO)


def long_sedghi(sigmas: Sequence[float], n_params: int, m: int, delta: float) -> float:
    """Long and Sedghi (ICLR 2020), as the original study instantiated it (a proxy: their
    unspecified constant set to 1).

        D (prod_l sigma_l)^(1/D) sqrt(N / m) + sqrt(log(1 / delta) / m)
    """
    d = len(sigmas)
    geo_mean = exp(sum(log(s) for s in sigmas) / d)
    return d * geo_mean * math.sqrt(n_params / m) + math.sqrt(math.log(1.0 / delta) / m)


@lru_cache(maxsize=64)
def harmonic(n: int) -> float:
    """H_n = sum_{k=1..n} 1/k (H_0 = 0), summed exactly rounded."""
    return math.fsum(1.0 / k for k in range(1, n + 1))


def grid_index(value: float) -> int:
    """The smallest k with GRID_RATIO^k >= value; 0 for a value of 0 (the grid has no 0, and
    the constraint 1 holds)."""
    if value <= 0.0:
        return 0
    k = math.ceil(math.log(value) / _LOG_RATIO)
    while GRID_RATIO ** k < value:  # the division may round just below an integer
        k += 1
    while GRID_RATIO ** (k - 1) >= value:
        k -= 1
    return k


def grid_cost(k: int) -> float:
    """log(1 / w_k) of the prior weight w_k = 2 / (3 (|k| + 1) (|k| + 2))."""
    return math.log(1.5 * (abs(k) + 1) * (abs(k) + 2))


def graf(sigmas: Sequence[float], l21_dists: Sequence[float], S: float, m: int, n_max: int,
         gamma: float, delta: float) -> float:
    """Graf, Zeng, Rieck, Niethammer, Kwitt (NeurIPS 2022), Theorem 3.5 (first bound) as
    they state it, made post hoc by a union bound over a geometric grid of constraints.

        s_l, b_l = sigma_l and ||W_l - M_l||_{2,1} rounded up to the grid GRID_RATIO^k
        C_l = (4 / gamma) (S / sqrt(m)) (prod_j s_j) b_l / s_l
        R = 4/m + 12 H_{m-1} / sqrt(m) * sqrt(log(2 N_max)) * (sum_l ceil(C_l^(2/3)))^(3/2)
        graf = 2 R + 3 sqrt((log(2 / delta) + sum_l (log 1/w(s_l) + log 1/w(b_l))) / (2 m))
    """
    k_s = [grid_index(s) for s in sigmas]
    k_b = [grid_index(a) for a in l21_dists]
    log_s, log_b = [k * _LOG_RATIO for k in k_s], [k * _LOG_RATIO for k in k_b]
    base = math.log(4.0 / gamma) + math.log(S) - 0.5 * math.log(m)
    # prod_j s_j / s_l as the product over j != l
    log_c = [base + sum(log_s[:i] + log_s[i + 1:]) + lb for i, lb in enumerate(log_b)]
    ceilings = sum(_ceil_exp(2.0 / 3.0 * lc) for lc in log_c)
    scale = 12.0 * harmonic(m - 1) / math.sqrt(m) * math.sqrt(math.log(2.0 * n_max))
    rademacher = 4.0 / m + scale * ceilings ** 1.5
    cost = sum(grid_cost(k) for k in k_s) + sum(grid_cost(k) for k in k_b)
    return 2.0 * rademacher + confidence_term(m, delta, cost)


def _ceil_exp(x: float) -> float:
    """ceil(exp(x)), inf past the float64 range (floats above 2^52 are integers)."""
    value = exp(x)
    return float(math.ceil(value)) if math.isfinite(value) else math.inf


def ledent(sigmas: Sequence[float], a: Sequence[float], b: Sequence[float],
           sides_in: Sequence[int], positions: Sequence[int], out_channels: Sequence[int],
           m: int, gamma: float, delta: float) -> float:
    """Ledent, Mustafa, Lei, Kloft (AAAI 2021), main conv bound, as Graf et al. (2022) evaluate
    it (constraints fixed in advance, evaluated at the network's own values).

    Per layer l = 1..D (the head has input side 1 and one position):
        rho_{l+} = max_{i=l+1..D} (prod_{j=l+1..i} sigma_j) / b_{i+1} * d_{l+1},  rho_{D+} = 1/gamma
        r_l = b_l rho_{l+} a_l,  with b_{D+1} = gamma
        R = (sum_l r_l^(2/3))^(3/2),  Gamma = max_l r_l O_l m_l,  Wbar = max_l O_l m_l
        R_ledent = 4/m + 768 R sqrt(log2(32 Gamma m^2 + 7 Wbar m)) log(m) / sqrt(m)
        ledent = 2 R_ledent + 3 sqrt(log(2 / delta) / (2 m))

    a_l: sum over the filters (conv output channels, dense rows) of ||W_l[o] - M_l[o]||_F
    (the head: ||W_D - M_D||_F); b_l: the largest l2 norm of an input patch of layer l over
    the training set; d_l: the spatial side of layer l's input; O_l: positions; m_l: outputs.
    """
    d = len(sigmas)
    if min(b) <= 0.0:  # rho_{l+} divides by b_{i+1}: undefined when a layer's input is all 0
        return math.nan
    log_s = [log(s) for s in sigmas]
    log_b = [log(v) for v in b] + [math.log(gamma)]  # b_1..b_D, b_{D+1} = gamma
    log_r, log_load = [], []
    for k in range(d):  # 0-based: layer k + 1 of the spec
        if k == d - 1:
            log_rho_plus = -math.log(gamma)
        else:
            partial, best = 0.0, -math.inf
            for i in range(k + 1, d):
                partial += log_s[i]
                best = max(best, partial - log_b[i + 1])
            log_rho_plus = best + math.log(sides_in[k + 1])
        log_r.append(log_b[k] + log_rho_plus + log(a[k]))
        log_load.append(math.log(positions[k] * out_channels[k]))
    log_big_r = 1.5 * logsum([2.0 / 3.0 * lr for lr in log_r])
    log_gamma_max = max(lr + ll for lr, ll in zip(log_r, log_load, strict=True))
    w_bar = max(p * c for p, c in zip(positions, out_channels, strict=True))
    log_inner = float(np.logaddexp(math.log(32.0) + log_gamma_max + 2.0 * math.log(m),
                                   math.log(7.0 * w_bar * m)))
    scale = 768.0 * math.sqrt(log_inner / LOG2) * math.log(m) / math.sqrt(m)
    return 2.0 * (4.0 / m + scale * exp(log_big_r)) + confidence_term(m, delta)
