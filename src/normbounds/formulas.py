"""The paper's bound and four prior bounds as pure functions, and the BOUNDS registry.

Each bound is one function of scalar ingredients, exactly as docs/bounds.md
states it; `BOUNDS` lists them once with their label and colour, and everything
else (evaluation, metrics, reports, figures, studies, DVC plot template, tests)
reads that list. Products of norms are kept in log space: they overflow for deep
or wide networks long before the bounds themselves stop being meaningful.

Notation: L conv layers, D = L + 1 weight layers (the head is layer D), m
training samples, C classes, gamma the margin, delta the confidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LOG2 = math.log(2.0)


def _log_plus(log_x: float, c: float) -> float:
    """log(x + c) from log x, for c > 0 (no overflow when x is huge)."""
    return float(np.logaddexp(log_x, math.log(c)))


def _logsum(logs: Sequence[float]) -> float:
    return float(np.logaddexp.reduce(np.asarray(logs, dtype=np.float64)))


def _exp(x: float) -> float:
    """exp that gives inf past the float64 range instead of raising OverflowError."""
    return math.exp(x) if x < 709.0 else math.inf


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _margin_term(log_rho: float, m: int, delta: float) -> float:
    """3 sqrt(log(2 (rho + 2)^2 / delta) / (2 m)): the union bound over the rho scale."""
    return 3.0 * math.sqrt((LOG2 + 2.0 * _log_plus(log_rho, 2.0) - math.log(delta)) / (2.0 * m))


def _confidence_term(m: int, delta: float) -> float:
    """3 sqrt(log(2 / delta) / (2 m)): the margin bound's deviation term."""
    return 3.0 * math.sqrt(math.log(2.0 / delta) / (2.0 * m))


def ours(log_rho: float, depth_d: int, degs: Sequence[int], preds: Sequence[int],
         num_classes: int, P: float, m: int, gamma: float, delta: float) -> float:
    """Galanti, Xu, Galanti, Poggio (NeurIPS 2023): bound on err_P - err_S^gamma.

        2 sqrt(2) (rho + 1) / (gamma m) * (1 + sqrt(2 (D log 2 + sum_l log deg_l + log C)))
          * sqrt(prod_l pred_l * P) + 3 sqrt(log(2 (rho + 2)^2 / delta) / (2 m))

    rho = prod of the D layers' Frobenius norms (passed as log rho); degs and
    preds run over the L conv layers (a fully connected layer has 1 and 1).
    Covers compositionally sparse networks: conv layers without padding or
    bias, ReLU, a linear head.
    """
    complexity = 1.0 + math.sqrt(2.0 * (depth_d * LOG2 + sum(math.log(d) for d in degs)
                                        + math.log(num_classes)))
    log_first = (math.log(2.0 * math.sqrt(2.0)) + _log_plus(log_rho, 1.0) - math.log(gamma * m)
                 + math.log(complexity)
                 + 0.5 * (sum(math.log(p) for p in preds) + math.log(P)))
    return _exp(log_first) + _margin_term(log_rho, m, delta)


def golowich(log_rho_g: float, depth_d: int, num_classes: int, S: float, m: int,
             gamma: float, delta: float) -> float:
    """Golowich, Rakhlin, Shamir (COLT 2018 / IMA 2020): Frobenius norms of full linear maps.

        2 sqrt(2) (rho_G + 1) / (gamma m) * (1 + sqrt(2 (D log 2 + log C))) * S
          + 3 sqrt(log(2 (rho_G + 2)^2 / delta) / (2 m))

    rho_G = prod_l (||W_l||_F sqrt(O_l)) * ||W_D||_F, the product of the Toeplitz
    (full-map) Frobenius norms: each kernel entry is applied at all O_l = n_l^2
    output positions. Covers any ReLU network of linear layers.
    """
    complexity = 1.0 + math.sqrt(2.0 * (depth_d * LOG2 + math.log(num_classes)))
    log_first = (math.log(2.0 * math.sqrt(2.0)) + _log_plus(log_rho_g, 1.0) - math.log(gamma * m)
                 + math.log(complexity) + math.log(S))
    return _exp(log_first) + _margin_term(log_rho_g, m, delta)


def long_sedghi(sigmas: Sequence[float], n_params: int, m: int, delta: float) -> float:
    """Long and Sedghi (ICLR 2020), as the original study instantiated it.

        D (prod_l sigma_l)^(1/D) sqrt(N / m) + sqrt(log(1 / delta) / m)

    sigma_l: Lipschitz constants of all D layers; N: the number of weights.
    A parameter-counting bound for conv networks (no authoritative evaluation
    code exists; this is the original study's reading).
    """
    d = len(sigmas)
    geo_mean = _exp(sum(_log(s) for s in sigmas) / d)
    return d * geo_mean * math.sqrt(n_params / m) + math.sqrt(math.log(1.0 / delta) / m)


def graf(sigmas: Sequence[float], l21_dists: Sequence[float], S: float, m: int, n_max: int,
         gamma: float, delta: float) -> float:
    """Graf, Zeng, Rieck, Niethammer, Kwitt (NeurIPS 2022), Theorem 3.5, first bound.

        C_l = (4 / gamma) (S / sqrt(m)) (prod_j sigma_j) ||W_l - M_l||_{2,1} / sigma_l
        R = 4/m + 12 log(m) / sqrt(m) * sqrt(log(2 N_max)) * (sum_l C_l^(2/3))^(3/2)
        graf = 2 R + 3 sqrt(log(2 / delta) / (2 m))

    l21_dists: ||W_l - M_l||_{2,1} per layer (M_l the reference weights).
    """
    log_sigmas = [_log(s) for s in sigmas]
    base = math.log(4.0 / gamma) + math.log(S) - 0.5 * math.log(m)
    # prod_j sigma_j / sigma_l as the product over j != l: defined when sigma_l = 0
    log_c = [base + sum(log_sigmas[:i] + log_sigmas[i + 1:]) + _log(a)
             for i, a in enumerate(l21_dists)]
    log_sum = 1.5 * _logsum([2.0 / 3.0 * lc for lc in log_c])
    scale = 12.0 * math.log(m) / math.sqrt(m) * math.sqrt(math.log(2.0 * n_max))
    return 2.0 * (4.0 / m + scale * _exp(log_sum)) + _confidence_term(m, delta)


def ledent(sigmas: Sequence[float], a: Sequence[float], b: Sequence[float],
           sides_in: Sequence[int], positions: Sequence[int], out_channels: Sequence[int],
           m: int, gamma: float, delta: float) -> float:
    """Ledent, Mustafa, Lei, Kloft (AAAI 2021), main conv bound, as Graf et al. (2022) evaluate it.

    Per layer l = 1..D (the head has input side 1 and one position):
        rho_{l+} = max_{i=l+1..D} (prod_{j=l+1..i} sigma_j) / b_{i+1} * d_{l+1},  rho_{D+} = 1/gamma
        r_l = b_l rho_{l+} a_l,  with b_{D+1} = gamma
        R = (sum_l r_l^(2/3))^(3/2),  Gamma = max_l r_l O_l m_l,  Wbar = max_l O_l m_l
        R_ledent = 4/m + 768 R sqrt(log2(32 Gamma m^2 + 7 Wbar m)) log(m) / sqrt(m)
        ledent = 2 R_ledent + 3 sqrt(log(2 / delta) / (2 m))

    a_l: sum over output filters of ||W_l[o] - M_l[o]||_F (the head: ||W_D - M_D||_F);
    b_l: the largest l2 norm of an input patch of layer l over the training set;
    d_l: the spatial side of layer l's input; O_l: positions; m_l: output channels.
    """
    d = len(sigmas)
    if min(b) <= 0.0:  # rho_{l+} divides by b_{i+1}: undefined when a layer's input is all 0
        return math.nan
    log_s = [_log(s) for s in sigmas]
    log_b = [_log(v) for v in b] + [math.log(gamma)]  # b_1..b_D, b_{D+1} = gamma
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
        log_r.append(log_b[k] + log_rho_plus + _log(a[k]))
        log_load.append(math.log(positions[k] * out_channels[k]))
    log_big_r = 1.5 * _logsum([2.0 / 3.0 * lr for lr in log_r])
    log_gamma_max = max(lr + ll for lr, ll in zip(log_r, log_load, strict=True))
    w_bar = max(p * c for p, c in zip(positions, out_channels, strict=True))
    log_inner = float(np.logaddexp(math.log(32.0) + log_gamma_max + 2.0 * math.log(m),
                                   math.log(7.0 * w_bar * m)))
    scale = 768.0 * math.sqrt(log_inner / LOG2) * math.log(m) / math.sqrt(m)
    return 2.0 * (4.0 / m + scale * _exp(log_big_r)) + _confidence_term(m, delta)


@dataclass(frozen=True)
class Ingredients:
    """Everything the five bounds read, extracted from a network by `bounds.compute`.
    Per-layer sequences run over the D weight layers unless said otherwise."""

    log_rho: float  # log prod_l ||W_l||_F
    log_rho_g: float  # log of Golowich's product of Toeplitz Frobenius norms
    depth_d: int
    degs: Sequence[int]  # per conv layer (L of them)
    preds: Sequence[int]  # per conv layer (L of them)
    num_classes: int
    P: float
    S: float
    m: int
    gamma: float
    delta: float
    sigmas: Sequence[float]  # the Lipschitz constants bound.lipschitz chose
    n_params: int
    n_max: int
    l21s: Sequence[float]  # ||W_l - M_l||_{2,1}
    a: Sequence[float]  # Ledent's a_l
    b: Sequence[float]  # Ledent's b_l (largest input-patch norms)
    sides_in: Sequence[int]
    positions: Sequence[int]
    out_channels: Sequence[int]


@dataclass(frozen=True)
class Bound:
    """One bound: its results column, its label and colour in every figure, its formula."""

    name: str
    label: str
    colour: str  # hex, for matplotlib and the DVC (Vega-Lite) plot template alike
    formula: Callable[[Ingredients], float]


BOUNDS: tuple[Bound, ...] = (
    Bound("ours", "Our bound", "#d62728", lambda q: ours(
        q.log_rho, q.depth_d, q.degs, q.preds, q.num_classes, q.P, q.m, q.gamma, q.delta)),
    Bound("golowich", "Golowich et al. 2020", "#1f77b4", lambda q: golowich(
        q.log_rho_g, q.depth_d, q.num_classes, q.S, q.m, q.gamma, q.delta)),
    Bound("long_sedghi", "Long & Sedghi 2020", "#2ca02c", lambda q: long_sedghi(
        q.sigmas, q.n_params, q.m, q.delta)),
    Bound("graf", "Graf et al. 2022", "#9467bd", lambda q: graf(
        q.sigmas, q.l21s, q.S, q.m, q.n_max, q.gamma, q.delta)),
    Bound("ledent", "Ledent et al. 2021", "#8c564b", lambda q: ledent(
        q.sigmas, q.a, q.b, q.sides_in, q.positions, q.out_channels, q.m, q.gamma, q.delta)),
)
BOUND_NAMES: tuple[str, ...] = tuple(b.name for b in BOUNDS)

# The measured curves drawn beside the bounds: name -> (label, colour).
MEASURED: dict[str, tuple[str, str]] = {
    "train_error": ("Train error", "#000000"),
    "test_error": ("Test error", "#7f7f7f"),
    "gap": ("Generalization gap", "#ff7f0e"),
    "margin_error": ("Margin error", "#e377c2"),
}
# The DVC metrics of an entry: what review reads (at most 12 numbers). Per-layer
# ingredients and solver counters stay in the results CSVs.
HEADLINE: tuple[str, ...] = ("train_error", "test_error", "gap", "margin_error",
                             *BOUND_NAMES, "certificate")


def label(name: str) -> str:
    """The legend label of a bound or a measured curve."""
    return {b.name: b.label for b in BOUNDS}.get(name) or MEASURED[name][0]


def colour(name: str) -> str:
    """The colour of a bound or a measured curve, the same in every figure."""
    return {b.name: b.colour for b in BOUNDS}.get(name) or MEASURED[name][1]
