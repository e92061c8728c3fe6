"""P, S, X: the data terms of the bounds (docs/bounds.md), measured on the exact tensors
the network reads. Kept apart from the network code: the prepare stage needs only this."""

from __future__ import annotations

import torch


def data_statistics(x: torch.Tensor, chunk: int = 4096) -> dict[str, float]:
    """P, S, X (docs/bounds.md), in float64, on the tensors the network consumes.

    P = max_j sum_i ||z_j(x_i)||^2 (z_j: all channels at pixel j),
    S = sqrt(sum_i ||x_i||^2), X = max_i ||x_i||.
    """
    per_pixel = torch.zeros(x.shape[2:], dtype=torch.float64, device=x.device)  # (n, n)
    max_norm_sq = 0.0
    for start in range(0, len(x), chunk):
        sq = x[start:start + chunk].double() ** 2  # (b, c, n, n)
        per_pixel += sq.sum(dim=(0, 1))
        max_norm_sq = max(max_norm_sq, sq.flatten(1).sum(1).max().item())
    return {"P": per_pixel.max().item(), "S": per_pixel.sum().sqrt().item(),
            "X": max_norm_sq ** 0.5}
