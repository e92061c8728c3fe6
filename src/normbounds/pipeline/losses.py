"""The training losses by name (`train.loss`): the one list params.yaml, training and
evaluation read. Each maps num_classes to loss(logits (B, C), labels (B,)), a batch mean."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _mse(num_classes: int) -> Loss:  # the paper's: squared error against one-hot targets
    return lambda out, y: F.mse_loss(out, F.one_hot(y, num_classes).to(out.dtype))


LOSSES: dict[str, Callable[[int], Loss]] = {
    "mse": _mse,
    "cross_entropy": lambda num_classes: F.cross_entropy,
}
