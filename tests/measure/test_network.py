"""Any nn.Module: each rule of docs/bounds.md ("Networks beyond CONV-L-H") against the
explicit equivalent network built by hand, every bound to 1e-12 relative."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normbounds.errors import UnsupportedLayerError
from normbounds.measure import bounds
from normbounds.measure.formulas import BOUND_NAMES
from normbounds.measure.network import describe, read_network

from helpers import conv_matrix

N = 8  # input side


def _data(m: int = 40, channels: int = 1, side: int = N) -> torch.Tensor:
    return torch.rand(m, channels, side, side, generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)


def _seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        with torch.no_grad():
            p.copy_(torch.randn_like(p) * 0.5)
    return model.double().eval()


def _same(a: dict, b: dict, names=BOUND_NAMES) -> None:
    for name in names:
        assert a[name] == pytest.approx(b[name], rel=1e-12), name


def _head(features: int) -> nn.Linear:
    return nn.Linear(features, 10, bias=False)


def test_conv_then_average_pooling_is_one_conv_with_the_composed_kernel():
    # 3x3 stride-1 conv, then 2x2 average pooling stride 2: one 4x4 conv of stride 2
    model = _seeded(nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.AvgPool2d(2), nn.ReLU(),
                                  nn.Conv2d(4, 4, 2, bias=False), nn.ReLU(), nn.Flatten(),
                                  _head(4 * 2 * 2)))
    w = model[0].weight.detach()
    composed = torch.zeros(4, 1, 4, 4, dtype=torch.float64)
    for di in (0, 1):
        for dj in (0, 1):
            composed[:, :, di:di + 3, dj:dj + 3] += w / 4
    explicit = nn.Sequential(nn.Conv2d(1, 4, 4, stride=2, bias=False), nn.ReLU(),
                             nn.Conv2d(4, 4, 2, bias=False), nn.ReLU(), nn.Flatten(),
                             _head(4 * 2 * 2)).double().eval()
    with torch.no_grad():
        explicit[0].weight.copy_(composed)
        explicit[2].weight.copy_(model[3].weight)
        explicit[5].weight.copy_(model[6].weight)
    x = _data()
    assert torch.allclose(model(x), explicit(x), rtol=1e-12, atol=1e-12)
    spec = describe(model, (1, N, N))[0]
    assert (spec.kernel, spec.stride, spec.deg, spec.pred) == (4, 2, 16, 16)  # deg = pred
    _same(bounds.compute(model, x), bounds.compute(explicit, x))


def test_padding_is_the_conv_on_the_padded_input():
    model = _seeded(nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.ReLU(),
                                  nn.Conv2d(3, 3, 2, bias=False), nn.ReLU(), nn.Flatten(),
                                  _head(3 * 7 * 7)))
    explicit = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), *list(model)[1:]).double().eval()
    with torch.no_grad():
        explicit[0].weight.copy_(model[0].weight)
    x = _data()
    padded = F.pad(x, (1, 1, 1, 1))
    assert torch.allclose(model(x), explicit(padded), rtol=1e-12, atol=1e-12)
    ours, theirs = bounds.compute(model, x), bounds.compute(explicit, padded)
    assert ours["data_p"] == theirs["data_p"] and ours["data_s"] == theirs["data_s"]
    _same(ours, theirs, [n for n in BOUND_NAMES if not n.startswith("golowich")])
    # Golowich reads the full linear maps: the Toeplitz norm of the padded conv counts only
    # taps that read real pixels, so it is the Frobenius norm of the padded conv's matrix
    full = [conv_matrix(model[0].weight.detach(), (1, N, N), 1, padding=1),
            conv_matrix(model[2].weight.detach(), (3, N, N), 1)]
    rho_g = full[0].norm() * full[1].norm() * model[5].weight.detach().norm()
    assert ours["rho_golowich"] == pytest.approx(rho_g.item(), rel=1e-12)
    assert ours["rho_golowich"] < theirs["rho_golowich"]


def _augment_conv(conv: nn.Conv2d, last_channel: bool) -> torch.Tensor:
    """By hand: the bias at tap (p, p) of an extra constant input channel, plus one
    output channel copying that constant."""
    w, b, p = conv.weight.detach(), conv.bias.detach(), conv.padding[0]
    h, c, k, _ = w.shape
    big = torch.zeros(h + 1, c + 1, k, k, dtype=torch.float64)
    big[:h, :c] = w
    big[:h, c, p, p] = b
    big[h, c, p, p] = 1.0 if last_channel else 0.0
    return big


def test_biases_become_the_augmented_constant_channel():
    model = _seeded(nn.Sequential(nn.Conv2d(1, 3, 2), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1),
                                  nn.ReLU(), nn.Flatten(), nn.Linear(3 * 7 * 7, 10)))
    w1, w2 = _augment_conv(model[0], True), _augment_conv(model[2], True)
    head = torch.zeros(10, 4 * 49, dtype=torch.float64)
    head[:, :3 * 49] = model[5].weight.detach()
    head[:, 3 * 49] = model[5].bias.detach()  # on one position of the constant channel
    explicit = nn.Sequential(nn.Conv2d(2, 4, 2, bias=False), nn.ReLU(),
                             nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 49, 10, bias=False)).double().eval()
    with torch.no_grad():
        explicit[0].weight.copy_(w1)
        explicit[2].weight.copy_(w2)
        explicit[5].weight.copy_(head)
    x = _data()
    augmented = torch.cat([x, torch.ones_like(x)], dim=1)
    assert torch.allclose(model(x), explicit(augmented), rtol=1e-12, atol=1e-12)
    ours, theirs = bounds.compute(model, x), bounds.compute(explicit, augmented)
    _same(ours, theirs)
    # P + m, S^2 + m n^2; ||W~||_F^2 = ||W||_F^2 + ||b||^2 + 1
    plain = bounds.compute(model, x, stats={"m": 40, **_stats(x)}, params=None)
    assert ours["data_p"] == pytest.approx(_stats(x)["P"] + 40, rel=1e-12)
    assert ours["data_s"] ** 2 == pytest.approx(_stats(x)["S"] ** 2 + 40 * N * N, rel=1e-12)
    fro_sq = model[0].weight.norm() ** 2 + model[0].bias.norm() ** 2 + 1
    assert ours["fro_l1"] ** 2 == pytest.approx(fro_sq.item(), rel=1e-12)
    assert plain == ours


def test_a_dense_first_layer_with_bias_reads_one_constant_coordinate():
    # the explicit network on x~ = (vec x, 1) as an image of d + 1 channels and one pixel
    # (a first dense layer reads the image as one position): [W b; 0 1], then [W2 b2]
    model = _seeded(nn.Sequential(nn.Flatten(), nn.Linear(2 * N * N, 5), nn.ReLU(),
                                  nn.Linear(5, 10)))
    d = 2 * N * N
    first = torch.zeros(6, d + 1, dtype=torch.float64)
    first[:5, :d], first[:5, d], first[5, d] = model[1].weight.detach(), model[1].bias, 1.0
    head = torch.cat([model[3].weight.detach(), model[3].bias.detach()[:, None]], dim=1)
    explicit = nn.Sequential(nn.Flatten(), nn.Linear(d + 1, 6, bias=False), nn.ReLU(),
                             nn.Linear(6, 10, bias=False)).double().eval()
    with torch.no_grad():
        explicit[1].weight.copy_(first)
        explicit[3].weight.copy_(head)
    x = _data(channels=2)
    tilde = torch.cat([x.flatten(1), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    tilde = tilde[:, :, None, None]  # (m, d + 1, 1, 1)
    assert torch.allclose(model(x), explicit(tilde), rtol=1e-12, atol=1e-12)
    ours, theirs = bounds.compute(model, x), bounds.compute(explicit, tilde)
    _same(ours, theirs)
    # one constant, not n^2 of them: S^2 + m, and P = S^2 (one position)
    assert ours["data_s"] ** 2 == pytest.approx(_stats(x)["S"] ** 2 + 40, rel=1e-12)
    assert ours["data_p"] == pytest.approx(ours["data_s"] ** 2, rel=1e-12)
    assert read_network(model, (2, N, N)).specs[0].weight.shape == (6, d + 1)


def _stats(x: torch.Tensor) -> dict:
    from normbounds.measure.statistics import data_statistics

    return data_statistics(x)


def test_batch_norm_folded_by_hand():
    bn = nn.BatchNorm2d(3)
    model = _seeded(nn.Sequential(nn.Conv2d(1, 3, 2, bias=False), bn, nn.ReLU(),
                                  nn.Conv2d(3, 3, 2, bias=False), nn.ReLU(), nn.Flatten(),
                                  _head(3 * 6 * 6)))
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.5]))
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    folded = nn.Sequential(nn.Conv2d(1, 3, 2), *list(model)[2:]).double().eval()
    with torch.no_grad():
        folded[0].weight.copy_(model[0].weight * scale[:, None, None, None])
        folded[0].bias.copy_(bn.bias - bn.running_mean * scale)
    x = _data()
    assert torch.allclose(model(x), folded(x), rtol=1e-12, atol=1e-12)
    _same(bounds.compute(model, x), bounds.compute(folded, x))


def test_a_dense_layer_after_a_conv_reads_all_positions():
    # Linear on a 7x7 map of 3 channels: pred = deg = 49, like a 7x7 conv of stride 7
    model = _seeded(nn.Sequential(nn.Conv2d(1, 3, 2, bias=False), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(3 * 49, 5, bias=False), nn.ReLU(),
                                  nn.Linear(5, 10, bias=False)))
    explicit = nn.Sequential(nn.Conv2d(1, 3, 2, bias=False), nn.ReLU(),
                             nn.Conv2d(3, 5, 7, stride=7, bias=False), nn.ReLU(), nn.Flatten(),
                             nn.Linear(5, 10, bias=False)).double().eval()
    with torch.no_grad():
        explicit[0].weight.copy_(model[0].weight)
        explicit[2].weight.copy_(model[3].weight.view(5, 3, 7, 7))
        explicit[5].weight.copy_(model[5].weight)
    x = _data()
    assert torch.allclose(model(x), explicit(x), rtol=1e-12, atol=1e-12)
    ours = bounds.compute(model, x)
    assert (ours["pred_l2"], ours["deg_l2"]) == (49, 49)
    _same(ours, bounds.compute(explicit, x), ["ours", "ours_corrected", "golowich",
                                              "golowich_corrected", "long_sedghi"])


def test_global_average_pooling_head_is_a_dense_head():
    model = _seeded(nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), _head(4)))
    head = model[4].weight.detach().repeat_interleave(36, dim=1) / 36  # mean over 6x6
    explicit = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(), nn.Flatten(),
                             _head(4 * 36)).double().eval()
    with torch.no_grad():
        explicit[0].weight.copy_(model[0].weight)
        explicit[3].weight.copy_(head)
    x = _data()
    assert torch.allclose(model(x), explicit(x), rtol=1e-12, atol=1e-12)
    _same(bounds.compute(model, x), bounds.compute(explicit, x))


class _Block(nn.Module):
    """torchvision's BasicBlock in miniature."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class _SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.block = _Block(4)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.pool(F.relu(self.stem(x))))
        x = F.max_pool2d(x, 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_a_small_resnet_is_refused_with_every_piece_listed():
    with pytest.raises(UnsupportedLayerError) as err:
        read_network(_SmallResNet(), (1, N, N))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("_SmallResNet is not covered by the bounds")
    assert message == (
        "_SmallResNet is not covered by the bounds (docs/bounds.md, \"Networks beyond"
        " CONV-L-H\"): max pooling (2 places: pool (MaxPool2d), max_pool2d (max_pool2d()))"
        " - use AvgPool2d instead, which the bounds cover; a residual or skip connection"
        " (1 place: add (add())) - no bound here covers it yet (the theorem is a chain of"
        " linear maps and ReLUs); a branch point (a value used twice, where a skip connection"
        " starts) (1 place: pool (MaxPool2d)) - no bound here covers it yet (the theorem is a"
        " chain of linear maps and ReLUs)")


def test_resnet18_is_refused_with_counts_and_advice():
    torchvision = pytest.importorskip("torchvision", reason="resnet18 is torchvision's")
    with pytest.raises(UnsupportedLayerError) as err:
        read_network(torchvision.models.resnet18(num_classes=10), (3, 32, 32))
    message = str(err.value)
    assert message.count(";") == 2  # three distinct reasons, each once
    assert "max pooling (1 place: maxpool (MaxPool2d)) - use AvgPool2d instead" in message
    assert ("a residual or skip connection (8 places: add (add()), add_1 (add()), add_2"
            " (add()), ...) - no bound here covers it yet") in message
    assert "a branch point (a value used twice, where a skip connection starts) (8 places:" \
        in message


def test_other_refusals_name_the_module_and_the_reason():
    model = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.GELU(),
                          nn.Conv2d(2, 2, 2, groups=2, bias=False), nn.Flatten(), _head(72))
    with pytest.raises(UnsupportedLayerError) as err:
        read_network(model, (1, N, N))
    assert "a nonlinearity other than ReLU (1 place: 1 (GELU)) - use ReLU" in str(err.value)
    assert "grouped or dilated convolution (groups 2, dilation (1, 1)) (1 place: 2 (Conv2d))" \
        " - use groups=1 and dilation=1" in str(err.value)
    reasons = str(err.value).split(": ", 1)[1].split("; ")
    assert len(reasons) == 2 and all(" - " in r for r in reasons)  # each says what to do
    ends_relu = nn.Sequential(nn.Flatten(), _head(64), nn.ReLU())
    with pytest.raises(UnsupportedLayerError, match="ReLU after the last linear layer"):
        read_network(ends_relu, (1, N, N))


def test_one_rule_table_drives_both_readers():
    from normbounds.measure import graph, rules, torchscript

    assert rules.COVERED == ("Conv2d, Linear, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d/2d,"
                             " Flatten, Dropout, Identity, ReLU")
    for rule in rules.RULES:
        for table, keys in ((graph.MODULES, rule.modules), (graph.FUNCTIONS, rule.functions),
                            (torchscript.ATEN, rule.aten)):
            for key in keys:  # covered: the reader's adapter; refused: the rule's reason
                assert callable(table[key]) if rule.refused is None else (
                    table[key] == rule.refused), (rule.name, key)
    sizes = {len(graph.MODULES), len(graph.FUNCTIONS), len(torchscript.ATEN)}
    assert sizes == {sum(len(r.modules) for r in rules.RULES),
                     sum(len(r.functions) for r in rules.RULES),
                     sum(len(r.aten) for r in rules.RULES)}
    with pytest.raises(KeyError, match="Conv2d"):  # a covered rule without an adapter
        rules.dispatch({}, "modules")
