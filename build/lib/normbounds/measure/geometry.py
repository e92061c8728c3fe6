"""Convolution geometry, written once: every module that needs an output side calls this."""

from __future__ import annotations


def conv_side(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """The output side of a k x k, stride-s conv (or pooling) with zero padding p on an
    n x n map: floor((n + 2p - k) / s) + 1 (< 1: no output position)."""
    return (n + 2 * padding - kernel) // stride + 1
