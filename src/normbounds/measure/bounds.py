"""Every bound of docs/bounds.md for a network: ingredients, Lipschitz constants, bounds.

`compute` extracts the ingredients from a network (float64 throughout), evaluates
every bound of the `formulas.BOUNDS` registry and returns everything as one flat
dict. The formulas themselves live in formulas.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from normbounds.errors import ConvergenceError, InputError
from normbounds.measure.certificates import grid_bounds
from normbounds.measure.formulas import BOUND_NAMES, BOUNDS, Ingredients, status_column, statuses
from normbounds.measure.layers import (
    LayerSpec,
    block_norm,
    filter_norm_sum,
    frobenius,
    l21,
    toeplitz_log_factor,
)
from normbounds.measure.lipschitz import (
    Sigma,
    conv_sigma,
    reshaped_norm,
    spectral_norm,
)
from normbounds.measure.logspace import exp, log
from normbounds.measure.network import (
    Network,
    eval_mode,
    image_shape,
    read_network,
    weights_of,
)
from normbounds.measure.options import BoundConfig, bound_config
from normbounds.measure.passes import data_pass
from normbounds.measure.statistics import data_statistics


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


def lipschitz_constants(specs: list[LayerSpec], cfg: BoundConfig) -> list[Sigma]:
    """sigma_lower and sigma_upper of every layer (docs/bounds.md, "Lipschitz constants").

    Conv layers: the certified Fourier-symbol upper bound and the Lanczos estimate
    from below, Lanczos starting from the plane wave at the symbol's peak; dense
    layers and the head: their exact spectral norm (lower = upper).
    """
    out = []
    for spec in specs:
        if spec.kind != "conv":
            exact = spectral_norm(spec.weight)
            out.append(Sigma(exact, exact))
            continue
        sigma, _ = conv_sigma(spec.weight, spec.in_shape, spec.stride, spec.padding,
                              None, cfg.lanczos_tol, cfg.lanczos_max_steps, seed=spec.index)
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


STATS_KEYS = ("m", "P", "S", "input_shape")  # what the bounds read (X is reported only)


def _input_shape(train_x: object, stats: dict | None) -> tuple[int, ...]:
    """The model's input shape (c, n, n), from train_x or from stats."""
    if train_x is not None:
        return image_shape(train_x)
    missing = [k for k in STATS_KEYS if k not in stats]
    if missing:
        raise InputError(f"stats: missing {missing}; pass m, P, S and input_shape as the"
                         " prepare stage writes them (data/prepared/stats.json), or train_x")
    return tuple(stats["input_shape"])


def _inputs(model: nn.Module, train_x: torch.Tensor | None, num_classes: int | None,
            bc: BoundConfig, stats: dict | None, patch_norms: list[float] | None,
            network: Network | None) -> tuple[Network, dict, list[float], int]:
    """compute's arguments checked: the network, the statistics of the inputs it reads
    (augmented), b_l per layer (measured from train_x when not given), C."""
    if train_x is None and (stats is None or patch_norms is None):
        raise InputError("compute needs the training inputs: pass train_x, or stats"
                         " (m, P, S, input_shape) and patch_norms")
    if network is None:
        network = read_network(model, tuple(_input_shape(train_x, stats)))
    inputs = None if train_x is None else network.inputs(train_x)  # checked, model's dtype
    if stats is None:
        stats = {"m": len(train_x), **data_statistics(train_x)}
    n_classes = num_classes or stats.get("num_classes") or network.num_classes
    if n_classes != network.num_classes:
        raise InputError(f"num_classes = {n_classes} but the model has"
                         f" {network.num_classes} logits")
    if patch_norms is None:
        with eval_mode(network.module):
            patch_norms = data_pass(network, inputs,
                                    batch_size=network.batch_size(bc.eval_batch_size)).patch_norms
    elif len(patch_norms) != len(network.specs):
        raise InputError(f"patch_norms: {len(patch_norms)} values for a network of"
                         f" {len(network.specs)} layers; pass one b_l per layer (or train_x)")
    return network, network.data_stats(stats), patch_norms, int(n_classes)


def _per_layer(specs: list[LayerSpec], **columns: list) -> dict[str, float]:
    """The per-layer columns <name>_l<index> (1-based; the head is layer D), and deg and
    pred of the hidden layers."""
    out: dict[str, float] = {}
    for i, s in enumerate(specs):
        out |= {f"{name}_l{s.index}": values[i] for name, values in columns.items()}
        if s.kind != "head":
            out |= {f"deg_l{s.index}": s.deg, f"pred_l{s.index}": s.pred}
    return out


def compute(model: nn.Module, train_x: torch.Tensor | None = None, *,
            num_classes: int | None = None, params: BoundConfig | Mapping | None = None,
            stats: dict | None = None, patch_norms: list[float] | None = None,
            reference: nn.Module | None = None, reference_independent: bool = False,
            network: Network | None = None) -> dict[str, float | str]:
    """Every bound of docs/bounds.md and its ingredients for `model`, as one flat dict.

    model: any nn.Module that network.py can read (conv, pooling, batch norm, Linear,
    biases, zero padding, ReLU). train_x (m, c, n, n): the training inputs, from which
    m, P, S, X and Ledent's patch norms b_l are measured. Instead of train_x, pass
    `stats` (m, P, S, X and input_shape, as the prepare stage writes them) and
    `patch_norms`. num_classes: defaults to the number of logits. params: the `bound`
    section (BoundConfig(); gamma, gammas, delta, lipschitz, ...). reference: the network
    whose weights are M_l for Graf and Ledent (None: M_l = 0); graf stays a theorem with it
    only if `reference_independent` declares it chosen without the training data (an
    initialisation, another data set), else its status is `conditional`. network:
    `read_network(model, ...)` when the caller has it already. Reads no file.
    Per-layer keys end in _l<index>, 1-based; the head is layer D; `status_<bound>` is
    each bound's status under these options; `ours_corrected_gamma<g>` the certificate's
    grid (certificates.py).
    """
    bc = bound_config(params)
    network, stats, patch_norms, n_classes = _inputs(model, train_x, num_classes, bc, stats,
                                                     patch_norms, network)
    specs = network.specs
    m, d = int(stats["m"]), len(specs)
    hidden, head = specs[:-1], specs[-1]  # conv or dense hidden layers, the head
    # a dense first layer (or a head reading the input) sees the whole image as one
    # position: P = S^2 (docs/bounds.md, "Fully connected layers")
    data_p = stats["S"] ** 2 if specs[0].kind != "conv" else stats["P"]
    fro = [frobenius(s.weight) for s in specs]
    log_rho = sum(log(f) for f in fro)  # -inf for a zero layer: rho = 0
    log_hidden = sum(log(f) for f in fro[:-1])  # prod_{l<D} ||W_l||_F
    log_toeplitz = sum(log(f) + toeplitz_log_factor(s)  # prod_{l<D} ||T_l||_F
                       for f, s in zip(fro[:-1], hidden, strict=True))
    # the corrected bounds' heads: blocks (class, position), and the rows
    head_blk, head_rows = block_norm(head.weight, head.pred), block_norm(head.weight, 1)
    log_rho_c = log_hidden + log(head_blk)
    both = lipschitz_constants(specs, bc)
    sigmas = chosen_sigmas(both, specs, bc)
    refs = ([torch.zeros_like(s.weight) for s in specs] if reference is None  # M_l = 0
            else weights_of(network, reference, "reference"))
    diffs = [s.weight - r for s, r in zip(specs, refs, strict=True)]
    l21s = [l21(w) for w in diffs]
    a = [filter_norm_sum(w, s.kind) for w, s in zip(diffs, specs, strict=True)]
    n_params = sum(s.weight.numel() for s in specs)
    n_max = max(s.weight.numel() for s in specs)
    out: dict[str, float] = {
        "m": m, "num_classes": n_classes, "depth_d": d, "n_params": n_params, "n_max": n_max,
        "a_max": max(s.n_inputs for s in specs),  # the head's input is the last conv output
        "data_p": data_p,
        "data_s": stats["S"], "rho": exp(log_rho), "log_rho": log_rho,
        "rho_corrected": exp(log_rho_c), "head_block_norm": head_blk,
        "rho_golowich": exp(log_toeplitz + log(fro[-1])),
        "rho_golowich_corrected": exp(log_toeplitz + log(head_rows))}
    ingredients = Ingredients(
        log_rho=log_rho, log_rho_c=log_rho_c, log_rho_g=log_toeplitz + log(fro[-1]),
        log_rho_gc=log_toeplitz + log(head_rows), depth_d=d, degs=[s.deg for s in hidden],
        preds=[s.pred for s in hidden], head_positions=head.pred, num_classes=n_classes,
        P=data_p, S=stats["S"], m=m,
        gamma=bc.gamma, delta=bc.delta, sigmas=sigmas, n_params=n_params, n_max=n_max,
        l21s=l21s, a=a, b=patch_norms, sides_in=[s.side_in for s in specs],
        positions=[s.positions for s in specs], out_channels=[s.out_channels for s in specs])
    out |= {bound.name: bound.formula(ingredients) for bound in BOUNDS}
    out |= grid_bounds(ingredients, bc.gammas, bc.delta)
    out["notes"] = _notes(out)
    independent = reference is None or reference_independent
    out |= {status_column(n): s for n, s in statuses(bc.lipschitz, independent).items()}
    out |= _per_layer(specs, fro=fro, sigma=sigmas, sigma_lower=[s.lower for s in both],
                      sigma_upper=[s.upper for s in both],
                      lanczos_steps=[s.matvecs for s in both],
                      lanczos_converged=[int(s.converged) for s in both], l21=l21s, a=a,
                      b=patch_norms)
    return out
