"""Which bounds are theorems: the printed Prop 3.1 / Theorem 3.2 fail, the corrected ones hold.

docs/bounds.md, "Validity". Rademacher complexities here are the vector ones the
peeling bounds: R = (1/m) E_xi sup_f sum_{i,r} xi_ir f_r(x_i), over the networks
with ||W_l||_F <= 1 for the hidden layers and the head in the stated norm.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from normbounds.measure import bounds, formulas
from normbounds.measure.assessment import assess
from normbounds.measure.certificates import margin_key
from normbounds.measure.options import BoundConfig
from normbounds.measure.passes import margin_errors


def corrected_r(depth_d: int, preds: list[int], positions: int, classes: int, P: float, m: int,
                rho_c: float = 1.0) -> float:
    return math.exp(formulas.log_prop31_corrected(math.log(rho_c), depth_d, preds, positions,
                                                  classes, P, m))


# -- 1. The counterexample: a 1x1 conv of weight 1, ReLU, a dense head, one-hot images ------

def one_hot_images(m: int, side: int, value: float = 1.0, seed: int = 0) -> torch.Tensor:
    """m images (m, 1, side, side), each one pixel `value` at a distinct position."""
    pixels = torch.randperm(side * side, generator=torch.Generator().manual_seed(seed))[:m]
    x = torch.zeros(m, side * side)
    x[torch.arange(m), pixels] = value
    return x.view(m, 1, side, side)


def test_the_counterexample_is_the_closed_form_and_lies_between_printed_and_corrected():
    # m one-hot images at distinct pixels: f_r(x_i) = W[r, p_i], so sum_{i,r} xi_ir f_r(x_i) =
    # <W, Xi> with Xi[r, p_i] = xi_ir; over ||W||_F <= rho its sup is rho ||Xi||_F = rho
    # sqrt(C m) for EVERY xi: R = rho sqrt(C m) / m exactly
    m, side, classes = 50, 8, 4
    x = one_hot_images(m, side)
    xi = torch.randint(0, 2, (m, classes), generator=torch.Generator().manual_seed(1)) * 2 - 1.0
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(side * side, classes, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        grid = torch.zeros(classes, side * side)
        grid[:, x.view(m, -1).argmax(1)] = xi.T  # Xi
        model[3].weight.copy_(grid / grid.norm())  # the maximiser rho Xi / ||Xi||_F, rho = 1
        attained = (xi * model(x)).sum().item()
    assert attained == pytest.approx(math.sqrt(classes * m), rel=1e-6)
    for classes, m in [(10, 10_000), (4, 50), (13, 400), (2, 30)]:
        exact = math.sqrt(classes * m) / m  # rho = 1
        # Prop 3.1 as printed: D = 2, deg = pred = 1, P = 1: (1 + sqrt(2 (2 log 2 + log C))) / m
        printed = math.exp(formulas.log_prop31(0.0, 2, [1], [1], classes, 1.0, m))
        factor = 1 + math.sqrt(2 * (2 * math.log(2) + math.log(classes)))
        assert printed == pytest.approx(factor / m, rel=1e-14)
        assert exact / printed == pytest.approx(math.sqrt(classes * m) / factor, rel=1e-14)
        assert printed < exact
        # the corrected bound in its own class (head block-l1 <= 1): the sup is
        # max_{r,j} |Xi_rj| = 1 for every xi, so R = 1 / m exactly, and the bound is
        # (1 + sqrt(2 (2 log 2 + log C + log n^2))) / m with n^2 >= m positions, P = 1
        positions = math.ceil(math.sqrt(m)) ** 2
        upper = corrected_r(2, [1], positions, classes, 1.0, m)
        ratio = 1 / (1 + math.sqrt(2 * (2 * math.log(2) + math.log(classes * positions))))
        assert (1 / m) / upper == pytest.approx(ratio, rel=1e-14)
    # the paper's numbers: 85x too small at C = 10, m = 10^4
    assert math.sqrt(10 * 10_000) / math.exp(formulas.log_prop31(
        math.log(10_000), 2, [1], [1], 10, 1.0, 10_000)) == pytest.approx(85.1, abs=0.05)


# -- 2. The random-label memoriser through bounds.compute -------------------------------------

def memoriser(kernel: int, bias: bool, side: int, m: int, classes: int, value: float,
              scale: float) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Labels drawn independently of one-hot images (value `value`, distinct pixels that the
    conv reads at tap (0, 0)), so every classifier has test error >= 1 - 1/C; the network
    f(x_i) = 2 e_{y_i} memorises them: conv weight `scale` at tap (0, 0), ReLU, head
    W[y_i, p_i] = 2 / (scale value)."""
    out_side = side - kernel + 1
    g = torch.Generator().manual_seed(kernel + 2 * bias)
    pixels = torch.randperm(out_side * out_side, generator=g)[:m]
    rows, cols = pixels // out_side, pixels % out_side
    x = torch.zeros(m, 1, side, side)
    x[torch.arange(m), 0, rows, cols] = value
    y = torch.randint(0, classes, (m,), generator=g)
    model = nn.Sequential(nn.Conv2d(1, 1, kernel, bias=bias), nn.ReLU(), nn.Flatten(),
                          nn.Linear(out_side * out_side, classes, bias=bias))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0, 0, 0] = scale
        model[3].weight.zero_()
        model[3].weight[y, pixels] = 2.0 / (scale * value)
        if bias:
            model[0].bias.zero_()
            model[3].bias.fill_(0.001)  # the same for every class: margins unchanged
    return model.eval(), x, y


def _by_hand(rho: float, first: float, m: int, delta: float = 0.001) -> float:
    """(rho + 1) * first / m + 3 sqrt(log(2 (rho + 2)^2 / delta) / (2 m)) at gamma = 1."""
    return (rho + 1) * first / m + 3 * math.sqrt(math.log(2 * (rho + 2) ** 2 / delta) / (2 * m))


@pytest.mark.filterwarnings("ignore:train_x. whole numbers")  # pixels of value 100, on purpose
@pytest.mark.parametrize(("kernel", "bias", "side", "m", "value", "scale"), [
    (1, False, 64, 3000, 1.0, 1.0),  # the example
    (2, False, 92, 8000, 1.0, 1.0),  # pred = deg = 4
    # with a bias every layer reads a constant channel: P + m. Pixels of value ~1.26 sqrt(m)
    # and a large conv weight keep the printed value small
    (1, True, 80, 6000, 100.0, 50.0),
])
def test_the_printed_bound_certifies_a_random_label_memoriser_and_the_corrected_does_not(
        kernel, bias, side, m, value, scale):
    classes = 10
    model, x, y = memoriser(kernel, bias, side, m, classes, value, scale)
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 1000]) for i in range(0, m, 1000)])
    margin_error = margin_errors(logits, y, 1.0).double().mean().item()
    assert margin_error == 0.0  # memorised with margin 2 > gamma = 1
    row = assess(model, x, y)  # the default grid of margins
    out = bounds.compute(model, x)
    assert out["pred_l1"] == out["deg_l1"] == kernel ** 2
    floor = 1 - 1 / classes  # every classifier's test error on these labels
    assert margin_error + out["ours"] < floor  # the printed "certificate": false
    # every margin is exactly 2: the margin error is 0 below gamma = 2 and 1 from there
    gammas = BoundConfig().gammas
    assert [row[margin_key(g)] for g in gammas] == [float(g >= 2) for g in gammas]
    for name in formulas.THEOREMS:  # no theorem certifies it, the grid's certificate neither
        assert margin_error + out[name] >= floor, name
    assert row["certificate"] >= floor and row["non_vacuous"] == 0
    if bias:
        return
    # by hand: ||W_1||_F = scale; the head has m entries 2 / (scale value), one per
    # (class, position) block and at most one per position; P = value^2, S^2 = m value^2
    n_out, d, log_c = side - kernel + 1, 2, math.log(classes)
    counts = torch.bincount(y, minlength=classes).double()
    rho = scale * math.sqrt(m) * 2 / (scale * value)
    rho_c = scale * m * 2 / (scale * value)
    rho_gc = scale * n_out * (2 * counts.sqrt() / (scale * value)).sum().item()
    rho_g = scale * n_out * math.sqrt(m) * 2 / (scale * value)
    log_k = log_c + math.log(n_out ** 2) + math.log(kernel ** 2)
    hand = {
        "ours": _by_hand(rho, 2 * math.sqrt(2) * (1 + math.sqrt(
            2 * (d * math.log(2) + math.log(kernel ** 2) + log_c))) * kernel * value, m),
        "ours_corrected": _by_hand(rho_c, 4 * (1 + math.sqrt(
            2 * (d * math.log(2) + log_k))) * kernel * value, m),
        "golowich": _by_hand(rho_g, 2 * math.sqrt(2) * (1 + math.sqrt(
            2 * (d * math.log(2) + log_c))) * math.sqrt(m) * value, m),
        "golowich_corrected": _by_hand(rho_gc, 4 * (1 + math.sqrt(
            2 * (d * math.log(2) + log_c))) * math.sqrt(m) * value, m)}
    assert {k: out[k] for k in hand} == pytest.approx(hand, rel=1e-12)
    # the certificate: the best of the grid at delta / K; only gamma < 2 pays no margin
    k = len(gammas)
    best = min(float(g >= 2) + _by_hand(rho_c, 4 / g * (1 + math.sqrt(
        2 * (d * math.log(2) + log_k))) * kernel * value, m, 0.001 / k) for g in gammas)
    assert row["certificate"] == pytest.approx(best, rel=1e-12)
    if kernel == 1:
        assert out["ours"] == pytest.approx(0.547, abs=5e-4)


# -- 3. Lower bounds of the Rademacher complexity never exceed the corrected Prop 3.1 ----------

def _abs_sum_cdf(n: int, t: int) -> float:
    """P(|sum of n Rademacher signs| < t), exactly."""
    return sum(math.comb(n, b) for b in range(n + 1) if abs(2 * b - n) < t) / 2 ** n


@pytest.mark.parametrize(("m", "side", "classes", "width", "seed"), [
    (40, 4, 3, 2, 0), (30, 3, 5, 1, 1), (64, 8, 2, 4, 2), (25, 5, 10, 3, 3)])
def test_one_hidden_layer_on_one_hot_images_exact(m, side, classes, width, seed):
    # 1x1 conv of `width` channels (||w|| <= 1), ReLU, head ||W||_blk <= 1, one-hot images,
    # pixels drawn with repetition: sup = ||relu(w)|| max_{r,j} |V_rj| = max_{r,j} |V_rj|,
    # V_rj = sum_{i: p_i = j} xi_ir. E max_{r,j} |V_rj| = sum_{t >= 1} P(max >= t), where
    # the V_rj are independent: exact
    counts = torch.bincount(torch.randint(0, side * side, (m,),
                                          generator=torch.Generator().manual_seed(seed)),
                            minlength=side * side).tolist()
    e_max = sum(1 - math.prod(_abs_sum_cdf(n, t) ** classes for n in counts)
                for t in range(1, max(counts) + 1))
    exact = e_max / m
    P = max(counts)  # sum_i ||z_j(x_i)||^2 = n_j
    upper = corrected_r(2, [1], side * side, classes, P, m)
    assert exact <= upper
    assert exact / upper > 0.05  # a sharp family: the bound is within a log factor


def _signs(samples: int, m: int, classes: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (samples, m, classes), generator=g, dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize(("depth", "blocks", "channels", "classes", "m", "sparse", "seed"), [
    (1, 2, 1, 3, 20, False, 0), (2, 2, 2, 4, 30, False, 1), (2, 1, 3, 2, 15, True, 2),
    (3, 2, 1, 3, 12, True, 3)])
def test_block_constant_images_under_stride_two_layers(depth, blocks, channels, classes, m,
                                                       sparse, seed):
    # stride-2 k = 2 layers on nonnegative images constant on 2^L x 2^L blocks: position j of
    # layer L sees one block, value v_ij in R^c_+. The filters u (x) (1/2) 1_{2x2} (u >= 0 a
    # unit vector), then (1/2) 1_{2x2} on one channel, have ||W_l||_F = 1 and give
    # z^L_j(x_i) = 2^L <u, v_ij>; with the head's sup in closed form,
    #   sup = 2^L max_{r,j} max(||s_rj^+||, ||s_rj^-||),  s_rj = sum_i xi_ir v_ij,
    # a lower bound of the class's sup for each xi; only xi is sampled
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(m, blocks * blocks, channels, generator=g, dtype=torch.float64)
    if sparse:
        v = v * (torch.rand(v.shape, generator=g, dtype=torch.float64) < 0.3)
    xi = _signs(400, m, classes, seed)
    s = torch.einsum("kir,ijc->krjc", xi, v)  # (samples, C, blocks^2, c)
    best = torch.maximum(s.clamp(min=0).norm(dim=-1), (-s).clamp(min=0).norm(dim=-1))
    sup = 2 ** depth * best.flatten(1).amax(1)
    lower = sup.mean().item() / m
    stderr = sup.std().item() / m / math.sqrt(len(sup))
    # P: the largest sum over images of a pixel's squared norm (all pixels of a block alike)
    P = v.pow(2).sum(-1).sum(0).max().item()
    upper = corrected_r(depth + 1, [4] * depth, blocks * blocks, classes, P, m)
    assert lower + 3 * stderr <= upper
    assert lower / upper > 0.05


def _explicit_images(kind: str, m: int, channels: int, side: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.rand(m, channels, side, side, generator=g, dtype=torch.float64)
    x = torch.zeros(m, channels * side * side, dtype=torch.float64)
    x[torch.arange(m), torch.randint(0, channels * side * side, (m,), generator=g)] = 1.0
    return x.view(m, channels, side, side)


def _optimised_sup(x: torch.Tensor, xi: torch.Tensor, shapes: list[tuple], stride: int,
                   padding: int, seed: int, steps: int = 120) -> float:
    """max over hidden weights with ||W_l||_F = 1 (found by Adam, the best of 3 starts) of
    max_{r,j} ||sum_i xi_ir z^L_j(x_i)|| (the head's sup over ||W_D||_blk <= 1): a lower
    bound of the sup for this xi."""
    best = 0.0
    for start in range(3):
        g = torch.Generator().manual_seed(1000 * seed + start)
        params = [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_()
                  for s in shapes]
        opt = torch.optim.Adam(params, lr=0.05)
        for _ in range(steps):
            h = x
            for p in params:
                h = torch.relu(torch.nn.functional.conv2d(h, p / p.norm(), stride=stride,
                                                          padding=padding))
            v = torch.einsum("ir,icj->rjc", xi, h.flatten(2))  # (C, positions, channels)
            value = v.norm(dim=-1).max()
            best = max(best, value.item())
            opt.zero_grad()
            (-value).backward()
            opt.step()
    return best


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "depth", "kernel", "stride", "padding", "bias", "seed"), [
    ("random", 1, 2, 1, 0, False, 0),
    ("one_hot", 1, 2, 1, 0, False, 1),
    ("random", 2, 2, 1, 0, False, 2),
    ("one_hot", 2, 3, 2, 0, False, 3),
    ("random", 1, 3, 2, 1, False, 4),
    ("one_hot", 2, 3, 1, 1, False, 5),
    ("random", 1, 3, 1, 1, True, 6),
    ("one_hot", 2, 2, 2, 0, True, 7),
])
def test_optimised_lower_bounds_stay_below_the_corrected_value(kind, depth, kernel, stride,
                                                               padding, bias, seed):
    m, channels, side, width, classes = 16, 1, 7, 3, 3
    x = _explicit_images(kind, m, channels, side, seed)
    if bias:  # the augmented class: bias-free networks on x with a constant channel
        x = torch.cat([x, torch.ones(m, 1, side, side, dtype=torch.float64)], dim=1)
    shapes, c, n = [], x.shape[1], side
    for _ in range(depth):
        shapes.append((width, c, kernel, kernel))
        c, n = width, (n + 2 * padding - kernel) // stride + 1
    xi = _signs(12, m, classes, seed)
    sups = [_optimised_sup(x, s, shapes, stride, padding, seed) for s in xi]
    lower = sum(sups) / len(sups) / m
    P = x.pow(2).sum(1).sum(0).max().item()  # P, P + m with the constant channel
    upper = corrected_r(depth + 1, [kernel * kernel] * depth, n * n, classes, P, m)
    assert lower <= upper, (lower, upper)
    assert lower / upper > 0.02  # the optimiser found something


def test_on_a_dense_network_ours_corrected_is_golowich_corrected():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 5, bias=False), nn.ReLU(),
                          nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 3, bias=False))
    x = torch.rand(40, 1, 6, 6)
    out = bounds.compute(model, x)
    assert out["ours_corrected"] == pytest.approx(out["golowich_corrected"], rel=1e-12)
    # the head reads a vector: its block norm is the sum of its row norms
    rows = model[5].weight.detach().double().norm(dim=1).sum().item()
    assert out["head_block_norm"] == pytest.approx(rows, rel=1e-12)


@pytest.mark.parametrize(("m", "pixels", "classes", "seed"), [
    (40, 16, 3, 0), (60, 25, 4, 1), (30, 9, 2, 2), (50, 64, 10, 3)])
def test_golowich_corrected_exceeds_a_sampled_lower_bound_on_dense_networks(m, pixels, classes,
                                                                            seed):
    # one dense hidden layer T (||T||_F <= 1) and a head with sum_r ||W_D[r]|| <= 1, on m
    # one-hot images (pixels drawn with repetition): relu(T e_p) = relu(T[:, p]). Columns
    # t_j = c_j u (u >= 0 a unit vector, c >= 0, ||c|| <= 1) and the head row +-u of class r
    # give sum_i xi_ir f_r(x_i) = +-<V_r, c>, V_rj = sum_{i: p_i = j} xi_ir, so the sup is at
    # least max_r max(||V_r^+||, ||V_r^-||) for each xi; only xi is sampled
    g = torch.Generator().manual_seed(seed)
    where = torch.randint(0, pixels, (m,), generator=g)
    xi = _signs(2000, m, classes, seed)
    v = torch.zeros(len(xi), classes, pixels, dtype=torch.float64)
    v.index_add_(2, where, xi.transpose(1, 2))  # (samples, C, pixels)
    best = torch.maximum(v.clamp(min=0).norm(dim=-1), (-v).clamp(min=0).norm(dim=-1))
    sup = best.amax(1)
    lower, stderr = sup.mean().item() / m, sup.std().item() / m / math.sqrt(len(sup))
    # golowich_corrected's Rademacher term at rho = 1: D = 2, log C, S = sqrt(m) (one-hot)
    upper = math.exp(formulas.log_rademacher(0.0, 2, math.log(classes), math.log(m), m))
    assert upper == pytest.approx(
        (1 + math.sqrt(2 * (2 * math.log(2) + math.log(classes)))) * math.sqrt(m) / m,
        rel=1e-14)
    assert lower + 3 * stderr <= upper
    assert lower / upper > 0.15  # within the stated factor: the sup is of order sqrt(m) / m
