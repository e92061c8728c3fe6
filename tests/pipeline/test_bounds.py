"""The bounds against hand-computed values, dense linear algebra, scaling and invariances."""

from __future__ import annotations

import math

import pytest
import torch

from normbounds.errors import ConfigError
from normbounds.measure import bounds, formulas, prior_bounds
from normbounds.measure.batching import CPU_BATCH_BYTES, MAX_EVAL_BATCH
from normbounds.measure.network import read_network
from normbounds.measure.options import BoundConfig
from normbounds.measure.passes import data_pass, margin_errors
from normbounds.pipeline.data import Split
from normbounds.pipeline.evaluate import evaluate_model
from normbounds.pipeline.losses import LOSSES
from normbounds.pipeline.models import Arch, GridNet

from helpers import conv_matrix

SQ2 = math.sqrt(2.0)
# sigma_l = sigma_lower, converged to machine precision: the exact operator norms
TIGHT = BoundConfig(lipschitz="estimate", lanczos_tol=1e-13)


def ones_net() -> GridNet:
    """CONV-2-1 on 1x4x4 inputs, all-ones 2x2 kernels, head rows (1,1,1,1) and (-1,-1,-1,-1)."""
    net = GridNet(Arch((1, 4, 4), 2, depth=2, width=1))
    with torch.no_grad():
        for conv in net.convs:  # W = g V / ||V||_F = 2 * ones / 2 = ones
            conv.parametrizations.weight.original0.fill_(2.0)
            conv.parametrizations.weight.original1.fill_(1.0)
        net.head.weight.copy_(torch.tensor([[1.0, 1, 1, 1], [-1, -1, -1, -1]]))
    return net


# 100 all-ones images: every pixel has sum_i x^2 = 100, so P = 100, S = sqrt(1600) = 40
ONES_STATS = {"m": 100, "num_classes": 2, "P": 100.0, "S": 40.0}


def graf_by_hand(k_s: list[int], k_b: list[int], S: float, m: int, n_max: int,
                 gamma: float = 1.0, delta: float = 1e-3) -> float:
    """graf from its grid indices (s_l = q^k_s, b_l = q^k_b, q = 65/64), term by term:
    2 (4/m + 12 H_{m-1} / sqrt(m) sqrt(log 2 N_max) (sum_l ceil(C_l^(2/3)))^(3/2))
    + 3 sqrt((log(2 / delta) + sum_k log(3/2 (|k| + 1)(|k| + 2))) / (2 m))."""
    q = 65 / 64
    s, b = [q ** k for k in k_s], [q ** k for k in k_b]
    c = [4 / gamma * S / math.sqrt(m) * math.prod(s[:i] + s[i + 1:]) * b[i] for i in range(len(s))]
    harmonic = math.fsum(1 / k for k in range(1, m))
    r = 4 / m + 12 * harmonic / math.sqrt(m) * math.sqrt(math.log(2 * n_max)) * sum(
        math.ceil(v ** (2 / 3)) for v in c) ** 1.5
    cost = sum(math.log(1.5 * (abs(k) + 1) * (abs(k) + 2)) for k in k_s + k_b)
    return 2 * r + 3 * math.sqrt((math.log(2 / delta) + cost) / (2 * m))


def test_hand_computed_example():
    out = bounds.compute(ones_net(), torch.ones(100, 1, 4, 4), stats=ONES_STATS, params=TIGHT)
    # sides 4 -> 3 -> 2; D = 3; Frobenius norms 2, 2, ||head||_F = sqrt(8) = 2 sqrt 2
    assert [out[f"fro_l{i}"] for i in (1, 2, 3)] == pytest.approx([2, 2, 2 * SQ2])
    assert out["rho"] == pytest.approx(8 * SQ2)  # 2 * 2 * 2 sqrt 2
    # an all-ones 2x2 conv has A A^T = T (x) T with T the window-overlap matrix; on 4x4 inputs
    # T = tridiag(1, 2, 1) of size 3 with top eigenvalue 2 + sqrt 2, so sigma_1 = 2 + sqrt 2;
    # on 3x3 inputs T = [[2, 1], [1, 2]], eigenvalue 3, so sigma_2 = 3; the rank-one head:
    # sigma_3 = ||(1,1,1,1)|| * ||(1,-1)|| = 2 sqrt 2
    assert [out[f"sigma_l{i}"] for i in (1, 2, 3)] == pytest.approx([2 + SQ2, 3, 2 * SQ2],
                                                                    rel=1e-10)
    assert [out[f"deg_l{i}"] for i in (1, 2)] == [4, 4] and out["pred_l1"] == 4
    # (2,1) norms: one input channel -> sum of |w| = 4; head: row norms 2 + 2
    assert [out[f"l21_l{i}"] for i in (1, 2, 3)] == pytest.approx([4, 4, 4])
    # b_l: input patches are four ones (norm 2); layer-1 outputs are 4, so patches of
    # layer 2 have norm sqrt(4 * 16) = 8; layer-2 outputs are 16 on 2x2: sqrt(4 * 256) = 32
    assert [out[f"b_l{i}"] for i in (1, 2, 3)] == pytest.approx([2, 8, 32])
    assert (out["n_params"], out["n_max"], out["a_max"]) == (16, 8, 16)
    # rho_G = (2 * 3) * (2 * 2) * 2 sqrt 2 = 48 sqrt 2 (n_1 = 3, n_2 = 2)
    assert out["rho_golowich"] == pytest.approx(48 * SQ2)
    # ours = 2 sqrt2 (8 sqrt2 + 1)/100 * (1 + sqrt(2 (3 log2 + 2 log4 + log2))) * sqrt(16 * 100)
    #        + 3 sqrt(log(2 (8 sqrt2 + 2)^2 / 0.001) / 200) = 56.3866... + 4.6975... = 61.0842
    assert out["ours"] == pytest.approx(61.08418771708542, rel=1e-12)
    # golowich = 2 sqrt2 (48 sqrt2 + 1)/100 * (1 + sqrt(8 log 2)) * 40 + 3 sqrt(log(2 (48 sqrt2
    #            + 2)^2 / 0.001) / 200) = 262.2968
    assert out["golowich"] == pytest.approx(262.29675600549245, rel=1e-12)
    # long_sedghi = 3 ((2 + sqrt2) 3 (2 sqrt2))^(1/3) sqrt(16/100) + sqrt(log(1000)/100)
    assert out["long_sedghi"] == pytest.approx(3.9483584009409016, rel=1e-10)
    # graf: sigma = (2 + sqrt2, 3, 2 sqrt2) rounded up to the grid q^k, q = 65/64: k = (80, 71,
    # 68); the (2,1) norms 4 -> k = 90; C_l = 4 * (40/10) * prod_{j != l} s_j * b_l, N_max = 8
    assert out["graf"] == pytest.approx(graf_by_hand([80, 71, 68], [90] * 3, S=40, m=100,
                                                     n_max=8), rel=1e-12)
    # corrected: the head's blocks (class, position) are scalars, ||W_D||_blk = 8, so
    # rho_c = 8 * 2 * 2 = 32; K = log C + log n_L^2 + log pred_1 + log pred_2 = log 2 + 3 log 4
    #   4 * 33 / 100 * (1 + sqrt(2 (3 log2 + log 2 + 3 log 4))) * sqrt(16 * 100)
    #   + 3 sqrt(log(2 * 34^2 / 0.001) / 200) = 250.2021
    assert (out["head_block_norm"], out["rho_corrected"]) == pytest.approx((8, 32))
    assert out["ours_corrected"] == pytest.approx(250.20214582613792, rel=1e-12)
    # golowich corrected: head rows 2 + 2, rho_Gc = 4 * (2 * 3) * (2 * 2) = 96
    #   4 * 97 / 100 * (1 + sqrt(8 log 2)) * 40 + 3 sqrt(log(2 * 98^2 / 0.001) / 200) = 521.5368
    assert out["rho_golowich_corrected"] == pytest.approx(96)
    assert out["golowich_corrected"] == pytest.approx(521.5367986122617, rel=1e-12)
    # ledent: a = (2, 2, 2 sqrt2), d = (4, 3, 1), b = (2, 8, 32, gamma = 1)
    #   rho_1+ = max(3/32, 3 * 2 sqrt2 / 1) * 3 = 18 sqrt2; rho_2+ = 2 sqrt2 * 1; rho_3+ = 1
    #   r = (2 * 18 sqrt2 * 2, 8 * 2 sqrt2 * 2, 32 * 1 * 2 sqrt2) = (72, 32, 64) sqrt2
    #   Gamma = max(72 sqrt2 * 9, 32 sqrt2 * 4, 64 sqrt2 * 2) = 648 sqrt2, Wbar = 9
    #   2 (4/100 + 768 R sqrt(log2(32 Gamma 100^2 + 7 * 9 * 100)) log(100) / 10) + 3 sqrt(...)
    assert out["ledent"] == pytest.approx(1516171.217341703, rel=1e-10)


def test_hand_computed_example_certified():
    """The same network under the default bound.lipschitz = certified: sigma_l is the
    Fourier-symbol bound. An all-ones 2x2 kernel has K^(u, v) = (1 + w^u)(1 + w^v),
    w = exp(-2 pi i / N), largest at u = v = 0: sigma_upper = 4 for both conv layers
    (N = 4 and N = 3), above the exact 2 + sqrt 2 and 3. The head stays 2 sqrt 2."""
    out = bounds.compute(ones_net(), torch.ones(100, 1, 4, 4), stats=ONES_STATS,
                         params=BoundConfig())
    assert [out[f"sigma_upper_l{i}"] for i in (1, 2, 3)] == pytest.approx([4, 4, 2 * SQ2],
                                                                          rel=1e-12)
    assert [out[f"sigma_lower_l{i}"] for i in (1, 2, 3)] == pytest.approx([2 + SQ2, 3, 2 * SQ2],
                                                                          rel=1e-9)
    assert [out[f"sigma_l{i}"] for i in (1, 2, 3)] == [out[f"sigma_upper_l{i}"] for i in (1, 2, 3)]
    # long_sedghi = 3 (4 * 4 * 2 sqrt2)^(1/3) sqrt(16 / 100) + sqrt(log(1000) / 100)
    ls = 3 * (32 * SQ2) ** (1 / 3) * 0.4 + math.sqrt(math.log(1000) / 100)
    assert out["long_sedghi"] == pytest.approx(ls, rel=1e-12)
    # graf: sigma = (4, 4, 2 sqrt2) on the grid: k = (90, 90, 68); (2,1) norms 4: k = 90
    assert out["graf"] == pytest.approx(graf_by_hand([90, 90, 68], [90] * 3, S=40, m=100,
                                                     n_max=8), rel=1e-12)
    # ledent: rho_1+ = max(4 / 32, 4 * 2 sqrt2 / 1) * 3 = 24 sqrt2, rho_2+ = 2 sqrt2, rho_3+ = 1
    #   r = (2 * 24 sqrt2 * 2, 8 * 2 sqrt2 * 2, 32 * 1 * 2 sqrt2) = (96, 32, 64) sqrt2
    #   Gamma = max(96 sqrt2 * 9, 32 sqrt2 * 4, 64 sqrt2 * 2) = 864 sqrt2, Wbar = 9
    r = [96 * SQ2, 32 * SQ2, 64 * SQ2]
    big_r = sum(v ** (2 / 3) for v in r) ** 1.5
    inner = 32 * 864 * SQ2 * 100 ** 2 + 7 * 9 * 100
    r_led = 4 / 100 + 768 * big_r * math.sqrt(math.log2(inner)) * math.log(100) / 10
    assert out["ledent"] == pytest.approx(2 * r_led + 3 * math.sqrt(math.log(2000) / 200),
                                          rel=1e-12)
    # the paper's bound and Golowich's use no sigma: unchanged by the choice
    assert out["ours"] == pytest.approx(61.08418771708542, rel=1e-12)


def test_golowich_toeplitz_norm_is_the_dense_frobenius_norm():
    """||W||_F * n_l: each kernel entry is applied at all n_l^2 positions, any stride."""
    for kernel, stride, side in [(2, 1, 6), (3, 2, 8), (3, 3, 9), (1, 1, 4)]:
        weight = torch.randn(3, 2, kernel, kernel, generator=torch.Generator().manual_seed(side),
                             dtype=torch.float64)
        dense = conv_matrix(weight, (2, side, side), stride)
        n_out = (side - kernel) // stride + 1
        assert torch.linalg.norm(dense).item() == pytest.approx(weight.norm().item() * n_out)


def _random_net(seed: int = 0, **arch) -> GridNet:
    torch.manual_seed(seed)
    return GridNet(Arch(**{"in_shape": (1, 10, 10), "num_classes": 10, "depth": 2, "width": 4,
                           **arch}))


def test_scaling_one_layer_scales_rho_and_moves_ours_as_the_formula_says():
    x = torch.rand(50, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    stats = {"m": 50, "num_classes": 10, "P": 12.0, "S": 30.0}
    net = _random_net()
    before = bounds.compute(net, x, stats=stats, params=TIGHT)
    t = 3.5
    with torch.no_grad():
        net.convs[1].parametrizations.weight.original0.mul_(t)  # W_2 -> t W_2
    after = bounds.compute(net, x, stats=stats, params=TIGHT)
    # the network's weights are float32: products agree to float32 rounding
    assert after["rho"] == pytest.approx(t * before["rho"], rel=1e-6)
    assert after["fro_l2"] == pytest.approx(t * before["fro_l2"], rel=1e-6)
    assert after["sigma_l2"] == pytest.approx(t * before["sigma_l2"], rel=1e-6)
    assert after["fro_l1"] == before["fro_l1"] and after["sigma_l3"] == before["sigma_l3"]
    expected = formulas.ours(math.log(t * before["rho"]), 3, [4, 4], [4, 4], 10, 12.0, 50, 1.0,
                           0.001)
    assert after["ours"] == pytest.approx(expected, rel=1e-6)
    assert after["ours"] > before["ours"]


def test_values_do_not_depend_on_the_evaluation_batch_size():
    gen = torch.Generator().manual_seed(2)
    train = Split(torch.rand(90, 1, 10, 10, generator=gen), torch.arange(90) % 10)
    test = Split(torch.rand(40, 1, 10, 10, generator=gen), torch.arange(40) % 10)
    stats = {"m": 90, "num_classes": 10, "P": 1.0, "S": 1.0}
    net = _random_net(3)
    rows = []
    for batch in (7, 90, 1000, "auto"):
        cfg = _cfg_with(eval_batch_size=batch)
        rows.append(evaluate_model(net, stats, cfg, train, test, "mse"))
    for key in rows[0]:
        if isinstance(rows[0][key], str):  # notes
            assert rows[1][key] == rows[2][key] == rows[3][key] == rows[0][key]
            continue
        for row in rows[1:]:
            assert row[key] == pytest.approx(rows[0][key], rel=1e-6), key


def test_auto_evaluation_batch_fills_the_cpu_budget():
    """CONV-2-4 on 1x10x10: the largest float64 input plus output of a layer is the
    second one's, 8 (4 * 9^2 + 4 * 8^2) = 4640 bytes, so auto is 32 MiB // 4640 = 7231."""
    network = read_network(_random_net(3), (1, 10, 10))
    assert network.batch_size(7) == 7
    assert network.batch_size("auto") == CPU_BATCH_BYTES // 4640 == 7231 < MAX_EVAL_BATCH
    wide = read_network(GridNet(Arch((1, 28, 28), 10, depth=3, width=128, weight_norm=False)),
                        (1, 28, 28))  # layer 2: 128 * 27^2 in, 128 * 26^2 out
    assert wide.batch_size("auto") == (32 << 20) // (8 * 128 * (27 ** 2 + 26 ** 2)) == 23
    with pytest.raises(ConfigError, match=r"bound\.eval_batch_size = 'big'.*auto"):
        _cfg_with(eval_batch_size="big")


def _cfg_with(**bound):
    from normbounds.pipeline.config import parse_params

    from pipeline_helpers import tiny_params

    return parse_params(tiny_params(bound=bound))


def test_margin_error_at_zero_is_the_error_and_ties_count():
    logits = torch.randn(500, 10, generator=torch.Generator().manual_seed(4))  # no ties
    y = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(5))
    error = (logits.argmax(1) != y).float().mean()
    assert margin_errors(logits, y, 0.0).float().mean() == error
    assert margin_errors(logits, y, 0.5).float().mean() > error
    tied = torch.tensor([[1.0, 1.0, 0.0]])
    assert margin_errors(tied, torch.tensor([0]), 0.0).item()  # a tie is an error
    # margin: f_y = 2 beats the runner-up 1.5 by 0.5 -> error at gamma 0.5, not at 0.4
    row = torch.tensor([[2.0, 1.5, -3.0]])
    assert margin_errors(row, torch.tensor([0]), 0.5).item()
    assert not margin_errors(row, torch.tensor([0]), 0.4).item()


def test_data_pass_counts_by_hand():
    net = ones_net()  # logits (s, -s) with s = sum of the layer-2 outputs > 0 for x > 0
    data = Split(torch.ones(4, 1, 4, 4), torch.tensor([0, 0, 0, 1]))
    res = data_pass(read_network(net, (1, 4, 4)), data.x, data.y, loss=LOSSES["mse"](2),
                    gamma=1.0, batch_size=3)
    assert res.error == 0.25 and res.margin_error == 0.25
    # logits (64, -64): MSE against one-hot = mean of ((64-1)^2, 64^2) or (64^2, (-64-1)^2)
    assert res.loss == pytest.approx((3 * (63**2 + 64**2) / 2 + (64**2 + 65**2) / 2) / 4)
    assert res.patch_norms == pytest.approx([2, 8, 32])


def test_reference_init_uses_distances():
    x = torch.rand(20, 1, 10, 10, generator=torch.Generator().manual_seed(6))
    stats = {"m": 20, "num_classes": 10, "P": 1.0, "S": 2.0}
    net, init = _random_net(7), _random_net(8)
    same = bounds.compute(net, x, stats=stats, params=TIGHT, reference=net)
    assert all(same[f"l21_l{i}"] == 0 and same[f"a_l{i}"] == 0 for i in (1, 2, 3))
    moved = bounds.compute(net, x, stats=stats, params=TIGHT, reference=init)
    plain = bounds.compute(net, x, stats=stats, params=TIGHT)
    w, m = net.head.weight.detach().double(), init.head.weight.detach().double()
    assert moved["a_l3"] == pytest.approx((w - m).norm().item())
    assert moved["ours"] == plain["ours"]  # the paper's bound has no reference
    assert moved["graf"] != plain["graf"]


def test_compute_says_what_it_needs_and_reads_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty folder: nothing of a pipeline to read
    stats = {"m": 30, "num_classes": 10, "P": 1.0, "S": 1.0, "input_shape": [1, 10, 10]}
    with pytest.raises(ValueError, match="pass train_x, or stats"):
        bounds.compute(_random_net(), stats=stats, params=TIGHT)
    x = torch.rand(30, 1, 10, 10, generator=torch.Generator().manual_seed(9))
    given = bounds.compute(_random_net(), x, stats=stats, params=TIGHT)
    # stats and patch norms passed in: the same row without the inputs
    patches = [given[f"b_l{i}"] for i in (1, 2, 3)]
    assert given == bounds.compute(_random_net(), stats=stats, params=TIGHT,
                                   patch_norms=patches)
    with pytest.raises(ValueError, match="num_classes = 7 but the model has 10 logits"):
        bounds.compute(_random_net(), x, num_classes=7)
    assert list(tmp_path.iterdir()) == []


def test_train_x_alone_gives_the_data_statistics():
    x = torch.rand(30, 1, 10, 10, generator=torch.Generator().manual_seed(12))
    out = bounds.compute(_random_net(), x, params=TIGHT)
    per_pixel = (x.double() ** 2).sum(0)[0]  # (10, 10)
    assert out["m"] == 30 and out["num_classes"] == 10
    assert out["data_p"] == pytest.approx(per_pixel.max().item(), rel=1e-12)
    assert out["data_s"] == pytest.approx(per_pixel.sum().sqrt().item(), rel=1e-12)


def test_a_non_finite_bound_is_explained_in_the_row():
    # past the float64 range: the log-space formula gives inf, never an OverflowError
    assert formulas.golowich(800.0, 4, 10, 30.0, 100, 1.0, 0.001) == math.inf
    assert formulas.ours(800.0, 4, [4] * 3, [4] * 3, 10, 1.0, 100, 1.0, 0.001) == math.inf
    # a layer of zeros: the network is constant. Graf's C_l (prod over j != l) are all 0;
    # Ledent's rho_{l+} divides by the patch norms behind it, which are 0: undefined
    x = torch.rand(20, 1, 10, 10, generator=torch.Generator().manual_seed(10))
    stats = {"m": 20, "num_classes": 10, "P": 1.0, "S": 2.0}
    net = _random_net(11, weight_norm=False)
    plain = bounds.compute(net, x, stats=stats, params=TIGHT)
    assert plain["notes"] == ""
    with torch.no_grad():
        net.convs[1].weight.zero_()
    out = bounds.compute(net, x, stats=stats, params=TIGHT)
    # graf's grid has no 0: the zero layer's sigma and (2,1) norm are rounded up to q^0 = 1
    sigmas = [out[f"sigma_l{i}"] for i in (1, 2, 3)]
    l21s = [out[f"l21_l{i}"] for i in (1, 2, 3)]
    assert sigmas[1] == l21s[1] == 0.0
    assert out["graf"] == formulas.graf([sigmas[0], 1.0, sigmas[2]], [l21s[0], 1.0, l21s[2]],
                                        2.0, 20, out["n_max"], 1.0, 0.001)
    assert math.isfinite(out["ours"]) and math.isnan(out["ledent"])
    assert out["notes"] == "ledent: undefined (a layer's input patches are all zero)"


def test_graf_with_the_harmonic_number_the_ceilings_and_the_grid_by_hand():
    # sigma = (2 of 1's) and (2,1) norms 1 lie on the grid (q^0): no rounding; m = 3 gives
    # H_2 = 1 + 1/2; gamma = 4 and S / sqrt(m) = t: C_l = (4 / 4) t * 1 * 1 = t. With
    # t = 2.3^1.5, C_l^(2/3) = 2.3 -> ceil = 3 per layer, not 2.3
    t = 2.3 ** 1.5
    value = formulas.graf([1.0, 1.0], [1.0, 1.0], S=t * math.sqrt(3), m=3, n_max=5, gamma=4.0,
                          delta=0.01)
    r = 4 / 3 + 12 * 1.5 / math.sqrt(3) * math.sqrt(math.log(10)) * (3 + 3) ** 1.5
    # four grid indices k = 0, each of prior weight 2 / (3 * 1 * 2) = 1/3: log 3 each
    expected = 2 * r + 3 * math.sqrt((math.log(2 / 0.01) + 4 * math.log(3)) / 6)
    assert value == pytest.approx(expected, rel=1e-13)
    # H_99, not log 100: 5.17737751763962 against 4.60517
    assert prior_bounds.harmonic(99) == pytest.approx(5.17737751763962, rel=1e-14)
    # the grid: the smallest q^k at or above the value, q = 1 + 1/64
    q = prior_bounds.GRID_RATIO
    for v in (1.0, q, q ** -3, 3.0, 1e-9, 1e9):
        k = prior_bounds.grid_index(v)
        assert q ** k >= v > q ** (k - 1)
    assert [prior_bounds.grid_index(v) for v in (1.0, q, 1.0001)] == [0, 1, 1]
    # the prior sums to 1 over the integers: 2/3 (1/2 + 2 sum_{j>=1} 1/((j+1)(j+2)))
    assert math.fsum(math.exp(-prior_bounds.grid_cost(k)) for k in range(-10**5, 10**5)) == \
        pytest.approx(1.0, abs=2e-5)


def test_ledent_on_a_dense_network_sums_the_row_norms_of_hidden_layers():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(25, 6, bias=False),
                                torch.nn.ReLU(), torch.nn.Linear(6, 4, bias=False),
                                torch.nn.ReLU(), torch.nn.Linear(4, 3, bias=False))
    out = bounds.compute(model, torch.rand(20, 1, 5, 5))
    w1, w2, w3 = (model[i].weight.detach().double() for i in (1, 3, 5))
    # hidden layers: each row is a filter; the head: its Frobenius norm
    assert out["a_l1"] == pytest.approx(w1.norm(dim=1).sum().item(), rel=1e-12)
    assert out["a_l2"] == pytest.approx(w2.norm(dim=1).sum().item(), rel=1e-12)
    assert out["a_l3"] == pytest.approx(w3.norm().item(), rel=1e-12)
    assert out["a_l1"] > w1.norm().item()  # not the Frobenius norm
