"""Data sets -> the exact tensors the network trains on, and the bound's data statistics.

The prepare stage runs this once. It saves float32 tensors after all
preprocessing, and computes P, S, X (docs/bounds.md) from exactly
those tensors, so the network and the bound's data term see the same inputs.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from normbounds.errors import ArtifactError, DatasetError
from normbounds.io import load_torch
from normbounds.measure.statistics import data_statistics
from normbounds.pipeline.config import DataConfig
from normbounds.pipeline.datasets import DATASETS, Split, stratified_indices

__all__ = ["DATASETS", "DatasetError", "Split", "load_split", "load_splits",
           "noisy_labels", "prepare", "preprocess", "stratified_indices", "verify_stats"]


def load_splits(cfg: DataConfig) -> tuple[Split, Split]:
    """Raw train and test splits of `data.dataset`, train subset applied."""
    train, test, _ = DATASETS[cfg.dataset].load(cfg)
    return _subset(train, cfg), test


def _subset(train: Split, cfg: DataConfig) -> Split:
    if cfg.train_size is None:
        return train
    if cfg.train_size > len(train):
        raise DatasetError(f"data.train_size = {cfg.train_size} exceeds the {len(train)}"
                           f" training images of {cfg.dataset}")
    return train.take(stratified_indices(train.y, cfg.train_size, cfg.seed))


def preprocess(x: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """uint8 (N, c, n, n) -> float32 in [0, 1] (float images are kept as they are), then
    optionally per-channel standardised."""
    out = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if cfg.standardize and len(cfg.mean) != x.shape[1]:
        raise DatasetError(f"params.yaml: data.mean and data.std need one value per channel"
                           f" ({x.shape[1]} for {cfg.dataset}), got {len(cfg.mean)}")
    if cfg.standardize:
        mean = torch.tensor(cfg.mean).view(1, -1, 1, 1)
        std = torch.tensor(cfg.std).view(1, -1, 1, 1)
        out = (out - mean) / std
    return out


def verify_stats(stats: dict, train: Split, path: Path) -> None:
    """Check stats.json against the prepared train split it claims to describe.

    P, S, X are recomputed (one pass over the data): an edited or stale
    stats.json would otherwise change every bound without any error.
    """
    fresh = {"m": len(train), **data_statistics(train.x)}
    for key, value in fresh.items():
        claimed = stats.get(key)
        if not isinstance(claimed, (int, float)) or not math.isclose(claimed, value,
                                                                     rel_tol=1e-9):
            raise ArtifactError(f"{path}: {key} = {claimed!r} does not match the prepared"
                                f" training data ({value!r}); the file was edited or is stale:"
                                " run `dvc repro -f prepare`")


def noisy_labels(y: torch.Tensor, fraction: float, num_classes: int, seed: int) -> torch.Tensor:
    """A copy of y with exactly round(fraction * m) labels changed, each to a wrong class.

    Which labels change and their new classes (uniform over the other C - 1) come
    from a generator seeded with `seed`, so a fraction f changes exactly f of the
    labels; a plain uniform draw would keep 1/C of them right by chance.
    """
    gen = torch.Generator().manual_seed(seed)
    count = round(fraction * len(y))
    picked = torch.randperm(len(y), generator=gen)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=gen)
    out = y.clone()
    out[picked] = (y[picked] + shift) % num_classes
    return out


def prepare(cfg: DataConfig) -> tuple[Split, Split, dict]:
    """The prepared train/test tensors and stats.json's content (test labels stay true)."""
    raw_train, raw_test, classes = DATASETS[cfg.dataset].load(cfg)
    raw_train = _subset(raw_train, cfg)
    labels = raw_train.y
    if cfg.label_noise > 0:
        labels = noisy_labels(labels, cfg.label_noise, classes, cfg.seed)
    train = Split(preprocess(raw_train.x, cfg), labels)
    test = Split(preprocess(raw_test.x, cfg), raw_test.y)
    channels, side = train.x.shape[1], train.x.shape[2]
    stats = {"dataset": cfg.dataset, "m": len(train), "n_test": len(test),
             "num_classes": classes, "input_shape": [channels, side, side],
             "label_noise": cfg.label_noise,
             "noisy_labels": int((labels != raw_train.y).sum()),
             **data_statistics(train.x)}
    return train, test, stats


def load_split(path: Path) -> Split:
    """A prepared split saved by the prepare stage."""
    blob = load_torch(path)
    if not isinstance(blob, dict) or set(blob) != {"x", "y"}:
        raise ArtifactError(f"{path}: not a prepared split (expected keys x, y);"
                            " rerun `dvc repro prepare`")
    return Split(blob["x"], blob["y"])
