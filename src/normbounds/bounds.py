"""The paper's bound and four prior bounds, exactly as docs/bounds.md states them.

Each bound is one pure function of scalar ingredients; `compute` extracts the
ingredients from a network (float64 throughout) and returns everything as one
flat dict. Products of norms are kept in log space: they overflow for deep or
wide networks long before the bounds themselves stop being meaningful.

Notation: L conv layers, D = L + 1 weight layers (the head is layer D), m
training samples, C classes, gamma the margin, delta the confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from normbounds.config import BoundConfig, Config
from normbounds.errors import ConvergenceError
from normbounds.layers import (
    LayerSpec,
    describe,
    filter_norm_sum,
    frobenius,
    l21,
    max_patch_norm_sq,
)
from normbounds.lipschitz import (
    Sigma,
    conv_sigma,
    reshaped_norm,
    spectral_norm,
)

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


BOUND_NAMES = ("ours", "golowich", "long_sedghi", "graf", "ledent")


def _notes(out: dict) -> str:
    """Why a bound is not a finite number, for the results' `notes` column ('' if all are).

    The formulas are evaluated in log space, so inf means the true value exceeds
    the float64 range (about 1.8e308); nan means a formula is undefined: Ledent's
    rho_{l+} divides by the patch norms b_l, which are 0 behind a layer of zeros.
    """
    notes = []
    for name in BOUND_NAMES:
        value = out[name]
        if math.isinf(value):
            notes.append(f"{name}: exceeds the float64 range")
        elif math.isnan(value):
            notes.append(f"{name}: undefined (a layer's input patches are all zero)")
    return "; ".join(notes)


def lipschitz_constants(specs: list[LayerSpec], cfg: BoundConfig,
                        warm: dict[int, torch.Tensor] | None = None) -> list[Sigma]:
    """sigma_lower and sigma_upper of every layer (docs/bounds.md, "Lipschitz constants").

    Conv layers: the certified Fourier-symbol upper bound and the Lanczos estimate
    from below; dense layers and the head: their exact spectral norm (lower = upper).
    `warm` (layer index -> top right singular vector) starts Lanczos where the
    previous checkpoint ended; it is read and updated in place. Without it,
    Lanczos starts from the plane wave at the symbol's peak.
    """
    out = []
    for spec in specs:
        if spec.kind != "conv":
            exact = spectral_norm(spec.weight)
            out.append(Sigma(exact, exact))
            continue
        start = None if warm is None else warm.get(spec.index)
        sigma, vector = conv_sigma(spec.weight, spec.in_shape, spec.stride, spec.padding,
                                   start, cfg.lanczos_tol, cfg.lanczos_max_steps,
                                   seed=spec.index)
        if warm is not None and vector is not None:
            warm[spec.index] = vector
        out.append(sigma)
    return out


def chosen_sigmas(sigmas: list[Sigma], specs: list[LayerSpec], cfg: BoundConfig) -> list[float]:
    """The sigma_l every bound uses, by bound.lipschitz: certified -> sigma_upper,
    estimate -> sigma_lower (an unconverged one is an error), reshaped -> the original
    study's reshaped-kernel norm for conv layers."""
    if cfg.lipschitz == "certified":
        return [s.upper for s in sigmas]
    if cfg.lipschitz == "reshaped":
        return [reshaped_norm(sp.weight) if sp.kind == "conv" else s.upper
                for s, sp in zip(sigmas, specs, strict=True)]
    for s, sp in zip(sigmas, specs, strict=True):
        if not s.converged:
            raise ConvergenceError(
                f"bound.lipschitz = estimate: Lanczos did not reach bound.lanczos_tol ="
                f" {cfg.lanczos_tol:g} on layer {sp.index} within bound.lanczos_max_steps ="
                f" {cfg.lanczos_max_steps} products; raise it, or use lipschitz: certified")
    return [s.lower for s in sigmas]


@torch.inference_mode()
def measure_patch_norms(model: nn.Module, x: torch.Tensor, batch_size: int) -> list[float]:
    """b_l: the largest input-patch norm of every weight layer over the inputs x."""
    specs = describe(model)
    best = [0.0] * len(specs)
    for start in range(0, len(x), batch_size):
        _, inputs = model.forward_with_inputs(x[start:start + batch_size])
        for i, (spec, inp) in enumerate(zip(specs, inputs, strict=True)):
            best[i] = max(best[i], max_patch_norm_sq(inp, spec).item())
    return [v ** 0.5 for v in best]


def _default_train_inputs() -> torch.Tensor:
    """The prepared training inputs of the pipeline in the current folder, for notebooks."""
    from normbounds.data import load_split
    from normbounds.paths import Paths

    path = Paths().train_data
    if not path.is_file():
        raise ValueError(f"ledent needs the input-patch norms b_l: pass patch_norms=... or"
                         f" train_x=<the prepared training inputs>, or run from a pipeline"
                         f" folder holding {path}")
    return load_split(path).x


def _reference_weights(specs: list[LayerSpec], reference: nn.Module | None) -> list[torch.Tensor]:
    if reference is None:
        return [torch.zeros_like(s.weight) for s in specs]
    refs = [s.weight for s in describe(reference)]
    if [r.shape for r in refs] != [s.weight.shape for s in specs]:
        raise ValueError("the reference network's layers do not match the network's shapes")
    return [r.to(s.weight.device) for r, s in zip(refs, specs, strict=True)]


def compute(model: nn.Module, stats: dict, cfg: Config | BoundConfig, *,
            train_x: torch.Tensor | None = None, patch_norms: list[float] | None = None,
            reference: nn.Module | None = None,
            warm: dict[int, torch.Tensor] | None = None) -> dict[str, float]:
    """Every bound of the spec and its ingredients for `model`, as one flat dict.

    stats: stats.json of the prepare stage (m, num_classes, P, S). Ledent's b_l
    needs the training inputs: pass `patch_norms` (measured in the error pass)
    or `train_x` (the prepared train tensors) to measure them here; with
    neither, the prepared train split in the current folder is read. `reference`:
    the network whose weights are M_l for Graf and Ledent (None: M_l = 0).
    `warm`: Lanczos start vectors per layer, read and updated in place.
    Per-layer keys end in _l<index>, 1-based; the head is layer D.
    """
    bc = cfg.bound if isinstance(cfg, Config) else cfg
    specs = describe(model)
    if patch_norms is None:
        if train_x is None:
            train_x = _default_train_inputs()
        patch_norms = measure_patch_norms(model, train_x.to(specs[0].weight.device),
                                          bc.eval_batch_size)
    m, n_classes, d = int(stats["m"]), int(stats["num_classes"]), len(specs)
    convs = specs[:-1]  # conv or dense hidden layers
    # a dense first layer sees the whole image as one patch: P = S^2 (spec, FC layers)
    data_p = stats["S"] ** 2 if specs[0].kind == "fc" else stats["P"]
    fro = [frobenius(s.weight) for s in specs]
    log_rho = sum(_log(f) for f in fro)  # -inf for a zero layer: rho = 0
    log_rho_g = log_rho + sum(0.5 * math.log(s.positions) for s in specs)  # Toeplitz norms
    both = lipschitz_constants(specs, bc, warm)
    sigmas = chosen_sigmas(both, specs, bc)
    diffs = [s.weight - r for s, r in zip(specs, _reference_weights(specs, reference), strict=True)]
    l21s = [l21(w) for w in diffs]
    a = [filter_norm_sum(w, s.kind) for w, s in zip(diffs, specs, strict=True)]
    n_params = sum(s.weight.numel() for s in specs)
    n_max = max(s.weight.numel() for s in specs)
    out: dict[str, float] = {
        "m": m, "num_classes": n_classes, "depth_d": d, "n_params": n_params, "n_max": n_max,
        "a_max": max(s.n_inputs for s in specs),  # the head's input is the last conv output
        "data_p": data_p,
        "data_s": stats["S"], "rho": _exp(log_rho), "log_rho": log_rho,
        "rho_golowich": _exp(log_rho_g)}
    gamma, delta = bc.gamma, bc.delta
    out["ours"] = ours(log_rho, d, [s.deg for s in convs], [s.pred for s in convs], n_classes,
                       data_p, m, gamma, delta)
    out["golowich"] = golowich(log_rho_g, d, n_classes, stats["S"], m, gamma, delta)
    out["long_sedghi"] = long_sedghi(sigmas, n_params, m, delta)
    out["graf"] = graf(sigmas, l21s, stats["S"], m, n_max, gamma, delta)
    out["ledent"] = ledent(sigmas, a, patch_norms, [s.side_in for s in specs],
                           [s.positions for s in specs], [s.out_channels for s in specs],
                           m, gamma, delta)
    out["notes"] = _notes(out)
    for i, s in enumerate(specs):
        n = s.index
        out |= {f"fro_l{n}": fro[i], f"sigma_l{n}": sigmas[i],
                f"sigma_lower_l{n}": both[i].lower, f"sigma_upper_l{n}": both[i].upper,
                f"lanczos_steps_l{n}": both[i].matvecs,
                f"lanczos_converged_l{n}": int(both[i].converged),
                f"l21_l{n}": l21s[i], f"a_l{n}": a[i], f"b_l{n}": patch_norms[i]}
        if s.kind != "head":
            out |= {f"deg_l{n}": s.deg, f"pred_l{n}": s.pred}
    return out
