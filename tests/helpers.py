"""Helpers of the tests (and the benchmarks): not part of the library."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def conv_matrix(weight: torch.Tensor, in_shape: tuple[int, int, int], stride: int,
                padding: int = 0) -> torch.Tensor:
    """The explicit matrix of x -> conv2d(x, weight, stride, padding) on inputs of shape
    in_shape, float64 (outputs, inputs). For small layers only."""
    eye = torch.eye(math.prod(in_shape), dtype=torch.float64).view(-1, *in_shape)
    return F.conv2d(eye, weight.to(torch.float64), stride=stride, padding=padding).flatten(1).T


def write_mnist_files(root: Path, train: tuple[np.ndarray, np.ndarray],
                      test: tuple[np.ndarray, np.ndarray], folder: str = "MNIST") -> None:
    """Write two splits, each (images (N, 28, 28), labels (N,)) of uint8, as the four
    uncompressed IDX files that torchvision's MNIST (or FashionMNIST, by `folder`) reads
    from root/<folder>/raw without downloading (the machine that runs the paper
    profile may have no network)."""
    for name, (images, labels) in (("train", train), ("t10k", test)):
        _write_idx(root / folder / "raw" / f"{name}-images-idx3-ubyte", images)
        _write_idx(root / folder / "raw" / f"{name}-labels-idx1-ubyte", labels)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: magic (0x08 = unsigned byte, then the rank), big-endian dims, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = np.array(array.shape, dtype=">u4").tobytes()
    path.write_bytes(bytes([0, 0, 0x08, array.ndim]) + dims + array.astype(np.uint8).tobytes())
