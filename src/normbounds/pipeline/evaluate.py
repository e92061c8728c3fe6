"""Evaluating a run's saved checkpoints: one row each (measure.assessment.assess), then the files.

The data statistics come from the prepare stage. Every row is a function of its
checkpoint alone (Lanczos starts from the Fourier peak, not from the previous
checkpoint), so a partial or repeated evaluation writes the same bytes.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from normbounds.errors import ArtifactError
from normbounds.io import write_json, write_text
from normbounds.measure.assessment import assess, controls
from normbounds.measure.flatness import SEARCH
from normbounds.measure.formulas import HEADLINE
from normbounds.measure.network import eval_mode, image_shape, read_network
from normbounds.measure.passes import data_pass
from normbounds.pipeline import checkpoints
from normbounds.pipeline.config import Config
from normbounds.pipeline.datasets import Split, stratified_indices
from normbounds.pipeline.losses import LOSSES
from normbounds.progress import progress


def evaluate_model(model: nn.Module, stats: dict, cfg: Config, train: Split, test: Split,
                   loss_name: str, reference: nn.Module | None = None,
                   timings: dict | None = None, init: nn.Module | None = None) -> dict:
    """One row (measure.assessment.assess): errors, losses, margin error, every bound, the
    certificate, the distances from `init`; the losses are the run's own training loss."""
    return assess(model, train.x, train.y, test=(test.x, test.y), params=cfg.bound,
                  stats=stats, loss=LOSSES[loss_name](int(stats["num_classes"])),
                  reference=reference, timings=timings, init=init,
                  reference_independent=True)  # the run's initialisation: drawn from its seed


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
    if found[0][0] != 0:  # every run saves it (checkpoints.save_epochs)
        raise ArtifactError(f"{folder}: epoch_0000.pt (the initialisation) is missing; run"
                            " `dvc repro` to train the run again")
    init, _ = checkpoints.load(found[0][1], device)  # the distances from initialisation
    reference = init if cfg.bound.reference == "init" else None
    if cfg.ranking.evaluate == "stopping":
        found = stopping_checkpoints(found, cfg.ranking.stops(), train, device,
                                     cfg.bound.eval_batch_size)
    sample = _controls_sample(train, cfg) if cfg.ranking.controls else None
    rows = []
    for epoch, path in progress(found, desc=f"evaluate {folder.name}", unit="ckpt"):
        model, meta = checkpoints.load(path, device)
        row = evaluate_model(model, stats, cfg, train, test, meta["config"]["train"]["loss"],
                             reference, timings, init)
        if sample is not None:
            row |= controls(model, sample.x, sample.y, init,
                            dataclasses.replace(SEARCH, seed=cfg.ranking.controls_seed))
        rows.append({"epoch": epoch, **row})
    return rows


def train_error(model: nn.Module, train: Split, batch: int | str = "auto") -> float:
    """The 0-1 train error, by the very pass `assess` makes (passes.data_pass)."""
    network = read_network(model, image_shape(train.x))
    with eval_mode(network.module):
        return data_pass(network, network.inputs(train.x), network.labels(train.y, len(train)),
                         batch_size=network.batch_size(batch)).error


def stopping_checkpoints(found: list[tuple[int, Path]], stops: tuple[float, ...],
                         train: Split, device: torch.device, batch: int | str = "auto"
                         ) -> list[tuple[int, Path]]:
    """The checkpoints a ranking study reads: the first with train error <= each of
    `stops`, in epoch order; the last checkpoint alone when none reaches any (so the run
    is listed as one that missed the criterion)."""
    errors = {epoch: train_error(checkpoints.load(path, device)[0], train, batch)
              for epoch, path in progress(found, desc="train errors", unit="ckpt", leave=False)}
    first = {min((e for e, err in errors.items() if err <= t), default=None) for t in stops}
    chosen = sorted(first - {None})
    keep = [(e, p) for e, p in found if e in chosen]
    return keep or found[-1:]


def _controls_sample(train: Split, cfg: Config) -> Split:
    """The controls' fixed, seeded, class-stratified train subset (all of it when small)."""
    k = cfg.ranking.controls_subset
    if k >= len(train):
        return train
    return train.take(stratified_indices(train.y.cpu(), k, cfg.ranking.controls_seed))


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
