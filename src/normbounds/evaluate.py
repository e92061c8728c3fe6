"""Evaluating saved checkpoints: errors, margins, losses and every bound, one row each.

One inference pass over the training set gives the train error, the margin
error, the train loss and the input-patch norms b_l of Ledent's bound; one
over the test set gives the test error and loss. The data statistics come from
the prepare stage. Every row is a function of its checkpoint alone (Lanczos
starts from the Fourier peak, not from the previous checkpoint), so a partial
or repeated evaluation writes the same bytes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import parametrize

from normbounds import bounds, checkpoints
from normbounds.config import Config
from normbounds.data import Split
from normbounds.errors import ArtifactError
from normbounds.formulas import HEADLINE, certificate
from normbounds.io import write_json, write_text
from normbounds.network import Network, eval_mode, read_network
from normbounds.runtime import progress
from normbounds.train import loss_fn


def margin_errors(logits: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per sample: f(x)_y <= max_{j != y} f(x)_j + gamma (gamma = 0: the 0-1 error, ties
    counting as errors). logits (B, C), y (B,) -> bool (B,)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], -math.inf).amax(dim=1)
    return true <= others + gamma


@dataclass
class PassResult:
    error: float
    loss: float
    margin_error: float = math.nan
    patch_norms: list[float] = field(default_factory=list)


@torch.inference_mode()
def data_pass(network: Network, data: Split, loss_name: str, gamma: float, batch_size: int,
              patches: bool = False) -> PassResult:
    """Error, mean loss and margin error over `data`; with `patches`, also b_l per layer."""
    loss = loss_fn(loss_name, network.num_classes)
    n_err = n_margin = 0
    loss_sum = 0.0
    best = [torch.zeros((), device=data.x.device) for _ in network.specs]
    for start in progress(range(0, len(data), batch_size), desc="errors", unit="batch",
                          leave=False):
        x, y = data.x[start:start + batch_size], data.y[start:start + batch_size]
        with parametrize.cached():  # the weight-norm weights once per batch, not per use
            logits, patch_sq = network.forward_with_patch_norms(x)  # (B, C), b_l^2 per layer
        n_err += margin_errors(logits, y, 0.0).sum().item()
        n_margin += margin_errors(logits, y, gamma).sum().item()
        loss_sum += loss(logits.double(), y).item() * len(y)
        best = [torch.maximum(b, sq) for b, sq in zip(best, patch_sq, strict=True)]
    m = len(data)
    norms = [b.item() ** 0.5 for b in best] if patches else []
    return PassResult(n_err / m, loss_sum / m, n_margin / m, norms)


def evaluate_model(model: nn.Module, stats: dict, cfg: Config, train: Split, test: Split,
                   loss_name: str, reference: nn.Module | None = None,
                   timings: dict | None = None) -> dict:
    """One row: errors, losses, margin error, every bound, the certificate."""
    bc = cfg.bound
    network = read_network(model, tuple(train.x.shape[1:]))
    t0 = time.perf_counter()
    with eval_mode(model):
        batch = network.batch_size(bc.eval_batch_size)
        tr = data_pass(network, train, loss_name, bc.gamma, batch, patches=True)
        te = data_pass(network, test, loss_name, bc.gamma, batch)
    t1 = time.perf_counter()
    values = bounds.compute(model, stats=stats, params=bc, patch_norms=tr.patch_norms,
                            reference=reference, network=network)
    if timings is not None:
        timings["errors"] = timings.get("errors", 0.0) + t1 - t0
        timings["bounds"] = timings.get("bounds", 0.0) + time.perf_counter() - t1
    return {"train_error": tr.error, "test_error": te.error, "gap": te.error - tr.error,
            "train_loss": tr.loss, "test_loss": te.loss, "margin_error": tr.margin_error,
            **certificate(tr.margin_error, values), **values}


def evaluate_run(cfg: Config, folder: Path, stats: dict, train: Split, test: Split,
                 timings: dict | None = None) -> list[dict]:
    """One row per checkpoint in `folder`, in epoch order."""
    found = checkpoints.list_epochs(folder)
    if not found:
        raise ArtifactError(f"{folder}: no checkpoints (run the train stage first)")
    _check_complete(folder, found)
    if len(train) != stats["m"]:
        raise ArtifactError(f"stats.json says m = {stats['m']} but the train split has"
                            f" {len(train)} samples; rerun `dvc repro prepare`")
    device = train.x.device
    reference = None
    if cfg.bound.reference == "init":
        if found[0][0] != 0:
            raise ArtifactError(f"{folder}: bound.reference = init needs epoch_0000.pt")
        reference, _ = checkpoints.load(found[0][1], device)
    rows = []
    for epoch, path in progress(found, desc=f"evaluate {folder.name}", unit="ckpt"):
        model, meta = checkpoints.load(path, device)
        row = evaluate_model(model, stats, cfg, train, test, meta["config"]["train"]["loss"],
                             reference, timings)
        rows.append({"epoch": epoch, **row})
    return rows


def _check_complete(folder: Path, found: list[tuple[int, Path]]) -> None:
    """Every epoch the run's train config saves is there: a missing one is a hole."""
    _, meta = checkpoints.load(found[-1][1])
    expected = checkpoints.expected_epochs(meta["config"])
    missing = sorted(set(expected) - {e for e, _ in found})
    extra = sorted({e for e, _ in found} - set(expected))
    if missing or extra:
        what = (f"epoch(s) {missing} missing" if missing else "") + (
            f"{'; ' if missing else ''}epoch(s) {extra} not part of the run" if extra else "")
        raise ArtifactError(f"{folder}: the run is incomplete ({what}; expected {expected});"
                            " run `dvc repro` to write the missing checkpoints again")


def write_results(rows: list[dict], csv_path: Path, metrics_path: Path) -> None:
    """results/<entry>.csv (every column, one row per checkpoint, full precision) and
    metrics/<entry>.json: the HEADLINE numbers of the last checkpoint, at 6 significant
    digits, so `dvc metrics diff` shows what review needs and no solver noise."""
    write_text(pd.DataFrame(rows).to_csv(index=False, float_format="%.10g"), csv_path)
    write_json({k: headline_value(rows[-1][k]) for k in HEADLINE}, metrics_path)


def headline_value(value: float) -> float | None:
    """A metric at 6 significant digits; None (JSON null) for inf or nan."""
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None
