"""One model, one flat row: errors, margin error, losses, every bound and the certificate.

The ONE "evaluate a model" flow: the evaluate stage calls it per checkpoint and
`normbounds bounds` calls it once. One inference pass over the training set
gives the train error, the margin error, the train loss and Ledent's patch norms
b_l; one over the test set (when given) the test error and loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import torch
from torch import nn

from normbounds.measure.bounds import compute
from normbounds.measure.certificates import certificate, held_out_bound, margin_key
from normbounds.measure.flatness import (
    SEARCH,
    SearchConfig,
    alpha_search,
    mag_log_ratio,
    sigma_search,
)
from normbounds.measure.formulas import HELD_OUT, HELD_OUT_STATUS, status_column
from normbounds.measure.layers import frobenius
from normbounds.measure.network import (
    Network,
    eval_mode,
    image_shape,
    read_network,
    weights_of,
)
from normbounds.measure.options import BoundConfig, bound_config
from normbounds.measure.passes import Loss, data_pass
from normbounds.measure.statistics import data_statistics


def assess(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, *,
           test: tuple[torch.Tensor, torch.Tensor] | None = None,
           params: BoundConfig | Mapping | None = None, stats: dict | None = None,
           loss: Loss | None = None, reference: nn.Module | None = None,
           reference_independent: bool = False, network: Network | None = None,
           init: nn.Module | None = None, timings: dict | None = None
           ) -> dict[str, float | str]:
    """The row of `model` on its training set (and `test`, optional).

    stats: m, P, S, X as the prepare stage writes them (measured from train_x when
    None). loss: loss(logits, y) for the train_loss/test_loss columns (left out when
    None). reference, reference_independent: as in `compute`. timings: seconds spent in
    the data passes and in the bounds, accumulated. With `test`, the row has the
    held-out bound of the test error beside the certificate (certificates.py).
    """
    bc = bound_config(params)
    network = network or read_network(model, image_shape(train_x))
    x = network.inputs(train_x)  # checked, in the model's dtype
    y = network.labels(train_y, len(x))
    t0 = time.perf_counter()
    with eval_mode(network.module):
        batch = network.batch_size(bc.eval_batch_size)
        tr = data_pass(network, x, y, batch_size=batch, gamma=bc.gamma, gammas=bc.gammas,
                       loss=loss)
        te = None if test is None else _test_pass(network, test, batch, loss)
    t1 = time.perf_counter()
    if stats is None:
        stats = {"m": len(x), **data_statistics(x)}
    values = compute(model, stats=stats, params=bc, patch_norms=tr.patch_norms,
                     reference=reference, reference_independent=reference_independent,
                     network=network)
    if timings is not None:
        timings["errors"] = timings.get("errors", 0.0) + t1 - t0
        timings["bounds"] = timings.get("bounds", 0.0) + time.perf_counter() - t1
    row: dict[str, float] = {"train_error": tr.error}
    if te is not None:
        row |= {"test_error": te.error, "gap": te.error - tr.error, "n_test": len(test[0])}
    if loss is not None:
        row["train_loss"] = tr.loss
        if te is not None:
            row["test_loss"] = te.loss
    row["margin_error"] = tr.margin_error
    row["margin_p10"] = tr.margin_p10
    row |= certificate(tr.margin_errors, values, bc.gammas)
    if te is not None:
        row |= {HELD_OUT: held_out_bound(te.errors, len(test[0]), bc.delta),
                status_column(HELD_OUT): HELD_OUT_STATUS}
    row |= {margin_key(g): e for g, e in zip(bc.gammas, tr.margin_errors, strict=True)}
    if init is not None:
        row |= init_distances(network, init)
    return row | values


def _test_pass(network: Network, test: tuple, batch: int, loss: Loss | None):
    x = network.inputs(test[0], "test_x")
    return data_pass(network, x, network.labels(test[1], len(x), "test_y"), batch_size=batch,
                     loss=loss)


def init_distances(network: Network, init: nn.Module) -> dict[str, float]:
    """dist_init_l<l> = ||W_l - W_l^0||_F per layer, W^0 the initialisation `init` (a
    network of the same layers)."""
    return {f"dist_init_l{s.index}": frobenius(s.weight - w0)
            for s, w0 in zip(network.specs, weights_of(network, init, "initial"), strict=True)}


def controls(model: nn.Module, x: torch.Tensor, y: torch.Tensor, init: nn.Module,
             cfg: SearchConfig = SEARCH) -> dict[str, float]:
    """The positive controls' searches (flatness.py) on the samples (x, y): sigma, sigma'
    and alpha' with their drops and convergence flags, and the weight term of
    pacbayes_mag_init at sigma' (w and w0: every layer's weight, flattened)."""
    network = read_network(model, image_shape(x))
    x, y = network.inputs(x), network.labels(y, len(x))
    w = torch.cat([s.weight.flatten() for s in network.specs])
    w0 = torch.cat([r.flatten() for r in weights_of(network, init, "initial")])
    row: dict[str, float] = {"controls_n": len(x), "controls_mc": cfg.mc_samples}
    found = {"pacbayes_sigma": sigma_search(model, x, y, magnitude=False, cfg=cfg),
             "pacbayes_mag_sigma": sigma_search(model, x, y, magnitude=True, cfg=cfg),
             "sharpness_mag_alpha": alpha_search(model, x, y, cfg=cfg)}
    for name, search in found.items():
        row |= {name: search.value, f"{name}_drop": search.drop,
                f"{name}_converged": search.converged}
    row["pacbayes_mag_log_ratio"] = mag_log_ratio(w, w0, found["pacbayes_mag_sigma"].value,
                                                  cfg.eps)
    return row


def finite_or_none(row: dict) -> dict:
    """The row for JSON, which has no inf or nan: those become null."""
    return {k: v if not isinstance(v, float) or math.isfinite(v) else None
            for k, v in row.items()}
