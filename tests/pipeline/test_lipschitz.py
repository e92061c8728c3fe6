"""Lipschitz constants: sigma_lower <= exact <= sigma_upper against dense SVDs of the
explicit conv matrices, near-degenerate top pairs, the pruned Fourier maximum against
the brute-force one, and the modes of bound.lipschitz."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from normbounds.errors import ConvergenceError
from normbounds.measure import bounds, lipschitz
from normbounds.measure.formulas import BOUND_NAMES
from normbounds.measure.fourier import certified_below, fourier_symbol, fourier_upper, symbol_gram
from normbounds.measure.lanczos import lanczos_top
from normbounds.measure.lipschitz import (
    _gram_operator,
    conv_sigma,
    dense_gram,
    reshaped_norm,
)
from normbounds.measure.options import BoundConfig
from normbounds.pipeline.config import parse_params
from normbounds.pipeline.data import Split
from normbounds.pipeline.evaluate import evaluate_model
from normbounds.pipeline.models import Arch, GridNet

from helpers import conv_matrix
from pipeline_helpers import tiny_params

# 2 kernels x 2 strides x 2 paddings x 4 channel pairs x 2 sides = 64 random layers
CASES = list(itertools.product((2, 3), (1, 2), (0, 1), ((1, 3), (2, 2), (3, 5), (4, 2)), (6, 9)))


def _exact(weight: torch.Tensor, shape: tuple[int, int, int], stride: int,
           padding: int) -> torch.Tensor:
    """All singular values of the explicit (Toeplitz) matrix of the layer, descending."""
    return torch.linalg.svdvals(conv_matrix(weight, shape, stride, padding))


@pytest.mark.parametrize(("kernel", "stride", "padding", "channels", "side"), CASES)
def test_lower_matches_dense_svd_and_upper_is_above(kernel, stride, padding, channels, side):
    c_in, c_out = channels
    gen = torch.Generator().manual_seed(hash((kernel, stride, padding, channels, side)) % 2**31)
    weight = torch.randn(c_out, c_in, kernel, kernel, generator=gen, dtype=torch.float64)
    shape = (c_in, side, side)
    exact = _exact(weight, shape, stride, padding)[0].item()
    for dense_dim in (0, None):  # Lanczos, then the dense eigensolver of small inputs
        sigma, vector = conv_sigma(weight, shape, stride, padding, dense_dim=dense_dim)
        assert sigma.converged
        assert sigma.lower == pytest.approx(exact, rel=1e-9)
        assert sigma.lower <= exact * (1 + 1e-12)  # Ritz values approach from below
        assert exact <= sigma.upper * (1 + 1e-12)  # certified
        assert sigma.upper >= reshaped_norm(weight)  # never below the original study's value
        if vector is not None:  # a unit vector that A stretches by sigma_lower
            image = conv_matrix(weight, shape, stride, padding) @ vector
            assert image.norm().item() == pytest.approx(sigma.lower, rel=1e-9)


def _near_degenerate(ratio: float, seed: int) -> torch.Tensor:
    """A (6, 4, 2, 2) kernel whose conv on any input has the top singular values s and
    ratio * s: two copies of one 3x2 block kernel (the second scaled by ratio) on
    separate channels, then mixed by random orthogonal channel rotations (which keep
    every singular value of the layer)."""
    gen = torch.Generator().manual_seed(seed)
    block = torch.randn(3, 2, 2, 2, generator=gen, dtype=torch.float64)
    weight = torch.zeros(6, 4, 2, 2, dtype=torch.float64)
    weight[:3, :2], weight[3:, 2:] = block, ratio * block
    q_out = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))[0]
    q_in = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))[0]
    return torch.einsum("po,oiab,qi->pqab", q_out, weight, q_in)


@pytest.mark.parametrize("ratio", [1 - 1e-7, 1 - 1e-9, 1.0])
@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 1)])
def test_near_degenerate_and_repeated_top_pairs(ratio, stride, padding):
    weight = _near_degenerate(ratio, seed=int(ratio * 1e9) % 1000 + stride)
    shape = (4, 11, 11)
    values = _exact(weight, shape, stride, padding)
    ratios = values[1:] / values[0]
    assert (ratios - ratio).abs().min().item() < 1e-9  # the second copy is there
    assert ratios[0].item() >= ratio - 1e-9  # so the top pair is at least this close
    for dense_dim in (0, None):
        sigma, _ = conv_sigma(weight, shape, stride, padding, dense_dim=dense_dim)
        assert sigma.lower == pytest.approx(values[0].item(), rel=1e-9)
        assert sigma.lower <= values[0].item() * (1 + 1e-12)
        assert values[0].item() <= sigma.upper * (1 + 1e-12)


@pytest.mark.parametrize(("c_out", "c_in", "kernel", "side", "smooth"),
                         [(16, 16, 2, 12, False), (16, 16, 2, 12, True), (5, 12, 3, 9, True),
                          (12, 5, 3, 10, False), (8, 1, 2, 13, True)])
def test_pruned_fourier_maximum_is_the_brute_force_one(c_out, c_in, kernel, side, smooth):
    gen = torch.Generator().manual_seed(c_out * c_in + side)
    weight = torch.randn(c_out, c_in, kernel, kernel, generator=gen, dtype=torch.float64)
    if smooth:  # a dominant low-frequency part, as trained kernels have: most frequencies prune
        weight = weight * 0.1 + torch.randn(c_out, c_in, 1, 1, generator=gen, dtype=torch.float64)
    full = torch.fft.fft2(weight, s=(side, side)).permute(2, 3, 0, 1)  # (N, N, H, c)
    brute = torch.linalg.matrix_norm(full, ord=2)  # (N, N)
    peak = fourier_upper(weight, side)
    assert peak.sigma == pytest.approx(brute.max().item(), rel=1e-12)
    assert brute[peak.freq].item() == pytest.approx(peak.sigma, rel=1e-12)
    # the half-plane symbol is the DFT, and the Gram eigenvalues are its squared singular values
    half = fourier_symbol(weight, side)
    assert torch.allclose(half, full[:, : side // 2 + 1], rtol=0, atol=1e-12)
    gram_top = torch.linalg.eigvalsh(symbol_gram(weight, side))[..., -1].max().sqrt()
    assert gram_top.item() == pytest.approx(brute.max().item(), rel=1e-12)


def test_cholesky_certifies_only_what_is_below_by_more_than_the_margin():
    """Hermitian matrices U diag(lambda) U^* with lambda_max = 2 (1 - gap): certified
    below beta = 2 when the gap is 1e-8, not when it is 0, negative or inside the
    1e-9 margin."""
    gen = torch.Generator().manual_seed(11)
    gaps = torch.tensor([1e-8, 1e-3, 0.0, -1e-8, 1e-12], dtype=torch.float64)
    unitary = torch.linalg.qr(torch.randn(5, 24, 24, dtype=torch.complex128, generator=gen))[0]
    spectrum = torch.rand(5, 24, generator=gen, dtype=torch.float64)
    spectrum[:, 0] = 2 * (1 - gaps)
    grams = unitary @ torch.diag_embed(spectrum.to(torch.complex128)) @ unitary.mH
    assert certified_below(grams, 2.0).tolist() == [True, True, False, False, False]


def test_disjoint_patches_have_the_reshaped_norm():
    weight = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(3),
                         dtype=torch.float64)
    exact = _exact(weight, (3, 8, 8), 2, 0)[0].item()
    sigma, _ = conv_sigma(weight, (3, 8, 8), 2)
    assert sigma.lower == sigma.upper == reshaped_norm(weight)
    assert sigma.upper == pytest.approx(exact, rel=1e-12)
    # with padding the reshaped norm is an upper bound (patches touching the border lose taps)
    exact_padded = _exact(weight, (3, 7, 7), 3, 1)[0].item()
    padded, _ = conv_sigma(weight, (3, 7, 7), 3, 1)
    assert padded.upper == reshaped_norm(weight) >= exact_padded * (1 - 1e-12)
    assert padded.lower == pytest.approx(exact_padded, rel=1e-9)


def test_lanczos_restarts_and_reports_a_cap():
    """A diagonal operator with eigenvalues 1, 1 - 1e-8, 0.5, ... (dimension 200)."""
    diag = torch.linspace(0.0, 0.5, 200, dtype=torch.float64)
    diag[-1], diag[-2] = 1.0, 1.0 - 1e-8
    start = torch.ones(200, dtype=torch.float64)
    restarted = lanczos_top(lambda v: diag * v, start, tol=1e-12, max_steps=5000, basis=8)
    assert restarted.converged and restarted.eigenvalue == pytest.approx(1.0, rel=1e-9)
    capped = lanczos_top(lambda v: diag * v, start, tol=1e-12, max_steps=3)
    assert not capped.converged and capped.matvecs == 3 and capped.eigenvalue <= 1.0


def _net_with(weight: torch.Tensor) -> GridNet:
    """CONV-2-6 on 4x12x12 inputs whose first layer has the kernel `weight` (6, 4, 2, 2)."""
    net = GridNet(Arch((4, 12, 12), 10, depth=2, width=6, weight_norm=False))
    with torch.no_grad():
        net.convs[0].weight.copy_(weight.float())
    return net


def test_default_evaluation_of_a_near_degenerate_kernel_finishes():
    net = _net_with(_near_degenerate(1 - 1e-7, seed=5))
    gen = torch.Generator().manual_seed(6)
    train = Split(torch.rand(60, 4, 12, 12, generator=gen), torch.arange(60) % 10)
    test = Split(torch.rand(20, 4, 12, 12, generator=gen), torch.arange(20) % 10)
    stats = {"m": 60, "num_classes": 10, "P": 1.0, "S": 1.0}
    cfg = parse_params(tiny_params())  # bound: all defaults (lipschitz: certified)
    assert cfg.bound == BoundConfig()
    row = evaluate_model(net, stats, cfg, train, test, "mse")
    for i in (1, 2, 3):
        assert row[f"lanczos_converged_l{i}"] == 1
        assert row[f"sigma_lower_l{i}"] <= row[f"sigma_upper_l{i}"] == row[f"sigma_l{i}"]
    assert all(math.isfinite(row[k]) for k in BOUND_NAMES)


def test_lipschitz_modes_and_an_unconverged_estimate(monkeypatch):
    monkeypatch.setattr(lipschitz, "DENSE_DIM", 0)  # Lanczos even on these small inputs
    net = _net_with(_near_degenerate(0.5, seed=7))
    x = torch.rand(30, 4, 12, 12, generator=torch.Generator().manual_seed(8))
    stats = {"m": 30, "num_classes": 10, "P": 1.0, "S": 1.0}
    rows = {mode: bounds.compute(net, x, stats=stats, params=BoundConfig(lipschitz=mode))
            for mode in ("certified", "estimate", "reshaped")}
    w1 = net.convs[0].weight.detach().double()
    assert rows["reshaped"]["sigma_l1"] == reshaped_norm(w1)
    assert rows["estimate"]["sigma_l1"] == rows["certified"]["sigma_lower_l1"]
    assert rows["certified"]["sigma_l1"] == rows["estimate"]["sigma_upper_l1"]
    assert (rows["reshaped"]["graf"] <= rows["estimate"]["graf"]
            <= rows["certified"]["graf"])  # graf grows with every sigma
    capped = BoundConfig(lanczos_max_steps=2)
    row = bounds.compute(net, x, stats=stats, params=capped)  # certified: flagged, never an error
    assert row["lanczos_converged_l1"] == 0 and row["sigma_l1"] == rows["certified"]["sigma_l1"]
    with pytest.raises(ConvergenceError, match=r"layer 1 within bound.lanczos_max_steps = 2 "):
        bounds.compute(net, x, stats=stats,
                       params=BoundConfig(lipschitz="estimate", lanczos_max_steps=2))


def test_a_zero_kernel_has_norm_zero():
    sigma, _ = conv_sigma(torch.zeros(3, 2, 2, 2, dtype=torch.float64), (2, 6, 6), 1)
    assert (sigma.lower, sigma.upper, sigma.converged) == (0.0, 0.0, True)


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (1, 2), (1, 3), (2, 1), (3, 2)])
def test_gram_operator_and_dense_gram_are_the_explicit_products(stride, padding):
    """v -> A^T A v equals the explicit matrix product for both adjoint paths (the
    flipped-kernel conv for stride 1 and padding < k, conv_transpose2d otherwise)."""
    gen = torch.Generator().manual_seed(7 * stride + padding)
    weight = torch.randn(3, 2, 2, 2, generator=gen, dtype=torch.float64)
    in_shape = (2, 5, 5)
    matrix = conv_matrix(weight, in_shape, stride, padding)
    v = torch.randn(math.prod(in_shape), generator=gen, dtype=torch.float64)
    got = _gram_operator(weight, in_shape, stride, padding)(v)
    assert torch.allclose(got, matrix.T @ (matrix @ v), rtol=0, atol=1e-12)
    # the dense path builds the same A^T A from the patches and R = W^T W
    assert torch.allclose(dense_gram(weight, in_shape, stride, padding), matrix.T @ matrix,
                          rtol=0, atol=1e-12)
    assert dense_gram(weight, in_shape, stride, padding, dense_dim=49) is None  # 2*5*5 > 49
