"""The weight layers of a network as the bounds see them, and their norms.

A `LayerSpec` is one bias-free linear layer of the theorem's form (effective
weight in float64, input shape, kernel, stride, zero padding); network.py
reads any model into a list of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from normbounds.measure.geometry import conv_side


@dataclass(frozen=True)
class LayerSpec:
    """One weight layer: a k x k conv ('conv'), a dense hidden layer ('fc') or the head.

    A dense layer is a single node applied at one position: pred = deg = n^2 when it
    reads an n x n feature map (map_side = n), else 1 (a first dense layer reads the
    whole image as one position with c n^2 channels). The head's map_side is the side
    n_L of the map it reads (1 after a dense layer).
    """

    index: int  # 1-based, as in the spec
    kind: str  # "conv", "fc" or "head"
    weight: torch.Tensor  # float64; conv (H, c, k, k), fc (H, d), head (C, d)
    in_shape: tuple[int, ...]  # conv (c, n, n); fc and head (d,)
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    map_side: int = 1  # dense layers: the side of the feature map they read

    @property
    def out_side(self) -> int:
        """n_l = floor((n_{l-1} + 2 p - k) / s) + 1 for a conv layer, 1 for the head."""
        if self.kind != "conv":
            return 1
        return conv_side(self.in_shape[1], self.kernel, self.stride, self.padding)

    @property
    def side_in(self) -> int:
        """d_l of Ledent's bound: the spatial side of the zero-padded input (1 for a dense
        layer), as for the same conv on an explicitly padded input."""
        return self.in_shape[1] + 2 * self.padding if self.kind == "conv" else 1

    @property
    def positions(self) -> int:
        """O_l: where the layer is applied (n_l^2 for a conv, 1 for the head)."""
        return self.out_side ** 2

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def pred(self) -> int:
        """pred_l = k^2, the spatial size of a patch (a dense layer: its map's n^2)."""
        return self.kernel ** 2 if self.kind == "conv" else self.map_side ** 2

    @property
    def deg(self) -> int:
        """deg_l = max_j |pred(l, j)| (the paper's in-degree of a node of layer l) = pred_l."""
        return self.pred

    @property
    def n_inputs(self) -> int:
        return math.prod(self.in_shape)


def frobenius(w: torch.Tensor) -> float:
    """||W||_F of the whole tensor."""
    return torch.linalg.vector_norm(w).item()


def l21(w: torch.Tensor) -> float:
    """||W||_{2,1}: kernel (H, c, k, k): sum over (o, row, col) of the l2 norm across
    input channels; head (C, d): sum of the row norms."""
    return torch.linalg.vector_norm(w, dim=1).sum().item()


def filter_norm_sum(w: torch.Tensor, kind: str) -> float:
    """Ledent's a_l: sum over the filters of ||W[o]||_F: a conv's output channels, a dense
    hidden layer's rows; the head: ||W||_F."""
    if kind == "head":
        return frobenius(w)
    return block_norm(w.flatten(1), 1)


def block_norm(w: torch.Tensor, positions: int) -> float:
    """||W||_blk = sum over (row r, position j) of ||W[r, :, j]||_2 for a dense map (rows, c
    positions) read in torch's flatten order c * positions + j (positions = 1: the sum of
    the row norms). The head's norm in the corrected bounds."""
    return torch.linalg.vector_norm(w.view(w.shape[0], -1, positions), dim=1).sum().item()


def max_patch_norm_sq(x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    """Largest squared l2 norm of an input patch of the layer over a batch.

    Conv: the c x k x k window at every position the layer is applied, x (B, c, n, n);
    fc and head: the whole flattened input, x (B, d). Returns a 0-dim tensor.
    """
    if spec.kind != "conv":
        return x.pow(2).sum(dim=1).max()
    pixel_sq = x.pow(2).sum(dim=1, keepdim=True)  # (B, 1, n, n)
    box = torch.ones(1, 1, spec.kernel, spec.kernel, dtype=x.dtype, device=x.device)
    # window sums over the zero-padded input (B, 1, n_l, n_l)
    return F.conv2d(pixel_sq, box, stride=spec.stride, padding=spec.padding).max()


def toeplitz_log_factor(spec: LayerSpec) -> float:
    """log(||T_l||_F / ||W_l||_F) for Golowich's bound, T_l the layer's full linear map:
    each kernel tap (a, b) appears once per output position at which it reads a real
    (not padding) pixel. Without padding every tap reads one at all O_l positions:
    0.5 log O_l (and 0 for a dense layer, O_l = 1)."""
    tap_sq = spec.weight.pow(2).sum((0, 1)) if spec.kind == "conv" else None
    if spec.kind != "conv" or spec.padding == 0 or not tap_sq.any():
        return 0.5 * math.log(spec.positions)
    n, p, s = spec.in_shape[1], spec.padding, spec.stride
    tops = torch.arange(spec.out_side) * s - p  # first input row of every window
    reads = torch.tensor([float(((tops + a >= 0) & (tops + a < n)).sum()) for a in
                          range(spec.kernel)], dtype=torch.float64)  # (k,) per tap row
    ratio = (tap_sq * reads[:, None] * reads[None, :]).sum() / tap_sq.sum()
    return 0.5 * math.log(ratio.item())
