"""ONE inference pass gives what the bounds and the certificate read from the data:
errors, margin error, mean loss, Ledent's input-patch norms b_l and the margin quantile of
the classic measures (measures.py), together.

Every value is a sum, a maximum or an order statistic over samples, so none depends on
the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.nn.utils import parametrize

from normbounds.measure.network import Network
from normbounds.progress import progress

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits (B, C), y (B,)) -> mean


def margin_parts(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x)_y and max_{j != y} f(x)_j per sample: logits (B, C), y (B,) -> (B,), (B,)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    return true, logits.scatter(1, y[:, None], -math.inf).amax(dim=1)


def margin_errors(logits: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per sample: f(x)_y <= max_{j != y} f(x)_j + gamma (gamma = 0: the 0-1 error, ties
    counting as errors). logits (B, C), y (B,) -> bool (B,)."""
    true, others = margin_parts(logits, y)
    return true <= others + gamma


@dataclass
class PassResult:
    """What one pass measured; error, loss and margin error are nan without labels."""

    error: float = math.nan
    loss: float = math.nan
    margin_error: float = math.nan
    patch_norms: list[float] = field(default_factory=list)  # b_l, one per layer
    errors: int = 0  # the count behind `error` (the held-out bound reads it)
    margin_errors: list[float] = field(default_factory=list)  # at each of `gammas`
    margin_p10: float = math.nan  # |the (m // 10)-th smallest margin| (measures.py)


def margin_quantile(margins: torch.Tensor) -> float:
    """Jiang et al.'s margin gamma: |the k-th smallest margin f(x)_y - max_{j != y} f(x)_j|,
    k = m // 10 (at least 1), as their code computes it (kthvalue, then abs)."""
    k = max(1, len(margins) // 10)
    return abs(margins.double().kthvalue(k).values.item())


@torch.inference_mode()
def data_pass(network: Network, x: torch.Tensor, y: torch.Tensor | None = None, *,
              batch_size: int, gamma: float = 1.0, gammas: Sequence[float] = (),
              loss: Loss | None = None) -> PassResult:
    """One pass of the network's module over x (already `network.inputs`-checked):
    b_l per layer, and with labels y the 0-1 error, the margin error at gamma and at each
    of `gammas`, and (with `loss`) the mean loss in float64. Call it inside `eval_mode`."""
    n_err = n_margin = 0
    n_grid = [0] * len(gammas)
    loss_sum = 0.0
    best = [torch.zeros((), device=x.device) for _ in network.specs]
    margins = []  # f(x)_y - max_{j != y} f(x)_j per sample: m floats, for the quantile
    for start in progress(range(0, len(x), batch_size), desc="data pass", unit="batch",
                          leave=False):
        with parametrize.cached():  # the weight-norm weights once per batch, not per use
            logits, patch_sq = network.forward_with_patch_norms(x[start:start + batch_size])
        best = [torch.maximum(b, sq) for b, sq in zip(best, patch_sq, strict=True)]
        if y is None:
            continue
        yb = y[start:start + batch_size]
        true, others = margin_parts(logits, yb)  # once per batch, for every margin
        margins.append(true - others)
        n_err += (true <= others + 0.0).sum().item()
        n_margin += (true <= others + gamma).sum().item()
        n_grid = [n + (true <= others + g).sum().item()
                  for n, g in zip(n_grid, gammas, strict=True)]
        if loss is not None:
            loss_sum += loss(logits.double(), yb).item() * len(yb)
    out = PassResult(patch_norms=[b.item() ** 0.5 for b in best])
    if y is not None:
        m = len(x)
        out.error, out.margin_error, out.errors = n_err / m, n_margin / m, n_err
        out.margin_errors = [n / m for n in n_grid]
        out.margin_p10 = margin_quantile(torch.cat(margins)) if m else math.nan
        out.loss = loss_sum / m if loss is not None else math.nan
    return out
