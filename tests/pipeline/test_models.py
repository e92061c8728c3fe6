"""CONV-L-H: shapes, weight normalisation, the weight-layer list."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from normbounds.measure.network import read_network
from normbounds.pipeline.config import ConfigError
from normbounds.pipeline.models import Arch, GridNet


@pytest.mark.parametrize(
    ("in_shape", "depth", "kernel", "stride", "sides"),
    [
        ((1, 28, 28), 3, 2, 1, [28, 27, 26, 25]),
        ((1, 28, 28), 1, 3, 1, [28, 26]),
        ((1, 28, 28), 4, 2, 2, [28, 14, 7, 3, 1]),
        ((3, 32, 32), 2, 3, 2, [32, 15, 7]),
        ((3, 32, 32), 6, 5, 1, [32, 28, 24, 20, 16, 12, 8]),
    ],
)
def test_shapes_and_sizes(in_shape, depth, kernel, stride, sides):
    width = 5
    net = GridNet(Arch(in_shape, 10, depth, width, kernel, stride))
    assert net.sides == sides
    x = torch.randn(7, *in_shape)
    assert net(x).shape == (7, 10)
    network = read_network(net, in_shape)
    with torch.no_grad():
        logits, patch_sq = network.forward_with_patch_norms(x)
        assert torch.equal(logits, net(x))
        # b_1^2: the largest k x k window sum of squared pixels; b_D^2: the largest squared
        # norm of the head's input (the last feature map, flattened)
        windows = F.conv2d(x.pow(2).sum(1, keepdim=True), torch.ones(1, 1, kernel, kernel),
                           stride=stride)
        assert patch_sq[0] == windows.max()
        h = x
        for conv in net.convs:
            h = torch.relu(conv(h))
        assert patch_sq[-1] == h.flatten(1).pow(2).sum(1).max()
    assert len(patch_sq) == depth + 1 and all(t.dim() == 0 for t in patch_sq)
    specs = network.specs
    assert not network.augmented and [s.kind for s in specs] == ["conv"] * depth + ["head"]
    assert [tuple(s.weight.shape) for s in specs[:-1]] == (
        [(width, in_shape[0], kernel, kernel)] + [(width, width, kernel, kernel)] * (depth - 1))
    assert tuple(specs[-1].weight.shape) == (10, width * sides[-1] ** 2)
    assert [s.out_side for s in specs[:-1]] == sides[1:]


def test_effective_weight_norm_equals_gain():
    torch.manual_seed(0)
    net = GridNet(Arch((1, 12, 12), 10, 2, 4))
    for conv, gain in zip(net.convs, (0.37, 2.5), strict=True):
        params = conv.parametrizations.weight
        assert params.original0.numel() == 1  # one scalar gain for the whole kernel
        with torch.no_grad():
            params.original0.fill_(gain)
            params.original1.mul_(torch.rand_like(params.original1) * 3)  # any direction
        assert torch.linalg.norm(conv.weight).item() == pytest.approx(gain, rel=1e-6)
    assert net.gains() == pytest.approx([0.37, 2.5])
    assert not hasattr(net.head, "parametrizations")  # the head is not normalised


def test_without_weight_norm_layers_are_plain():
    net = GridNet(Arch((1, 12, 12), 10, 2, 4, weight_norm=False))
    assert net.gains() == [] and not hasattr(net.convs[0], "parametrizations")


def test_too_deep_is_a_clear_error():
    with pytest.raises(ConfigError, match="layer 3 would see a 1x1 feature map"):
        GridNet(Arch((1, 4, 4), 10, 3, 2, kernel_size=2, stride=2))
