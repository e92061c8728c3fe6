"""The rescaling symmetry: W_l times a and W_{l+1} divided by a compute the same function
(ReLU is positively homogeneous), so a bias-free network's bounds must not move.

ours_corrected, golowich_corrected and ledent are products of per-layer norms (and, for
ledent, of patch norms that scale with the layer below), so they are unchanged;
graf rounds sigma_l and ||W_l||_{2,1} up to its grid, so it moves by at most the
rounding of its D constraints. a = 2 keeps every rescaled weight exact.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from normbounds.measure import bounds
from normbounds.measure.prior_bounds import GRID_RATIO

INVARIANT = ("ours_corrected", "golowich_corrected", "ledent", "ours", "golowich")


def _conv_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(4, 3, 2, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 3 * 3, 5, bias=False)).double().eval()


def _dense_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 6, bias=False), nn.ReLU(),
                         nn.Linear(6, 4, bias=False), nn.ReLU(),
                         nn.Linear(4, 5, bias=False)).double().eval()


def _rescaled(model: nn.Sequential, first: int, second: int, a: float) -> nn.Sequential:
    out = copy.deepcopy(model)
    with torch.no_grad():
        out[first].weight.mul_(a)
        out[second].weight.div_(a)
    return out


@pytest.mark.parametrize(("build", "first", "second"), [
    (_conv_net, 0, 2), (_conv_net, 2, 5), (_dense_net, 1, 3), (_dense_net, 3, 5)])
@pytest.mark.parametrize("a", [2.0, 0.25, 8.0])
def test_rescaling_two_layers_leaves_the_bounds_where_they_were(build, first, second, a):
    model = build(0)
    x = torch.rand(30, 2, 8, 8, generator=torch.Generator().manual_seed(1),
                   dtype=torch.float64)
    scaled = _rescaled(model, first, second, a)
    with torch.no_grad():
        assert torch.allclose(model(x), scaled(x), rtol=1e-13, atol=0)  # the same function
    before, after = bounds.compute(model, x), bounds.compute(scaled, x)
    for name in INVARIANT:
        assert after[name] == pytest.approx(before[name], rel=1e-12), name
    # the norms it reads did move: the invariance is the formula's, not a no-op
    layer = 1 + sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model[:first])
    assert after[f"fro_l{layer}"] == pytest.approx(a * before[f"fro_l{layer}"], rel=1e-12)
    # graf: each of its 2D grid roundings is a factor below GRID_RATIO, so the Rademacher
    # term (C_l^(2/3) summed, to the 3/2: at most one power of each factor) moves by at
    # most GRID_RATIO^(2D) up to the ceilings, and its cost term by the grid's prior weights
    depth = int(before["depth_d"])
    ratio = after["graf"] / before["graf"]
    assert GRID_RATIO ** (-2 * depth) - 0.01 <= ratio <= GRID_RATIO ** (2 * depth) + 0.01
    assert math.isfinite(ratio)
