"""The positive controls' searches (measure/flatness.py) against closed forms.

The model is a linear two-class classifier on the standard basis: n points x_i = e_i with
label y_i, weight W[y_i, i] = a_i and W[1 - y_i, i] = a_i r_i, so point i has the logit
margin a_i - a_i r_i and no other coordinate touches it. Under any perturbation U of W,
point i is misclassified iff U[y_i, i] - U[1 - y_i, i] < -(a_i - a_i r_i), which gives each
search's accuracy drop in closed form:

- plain Gaussian, std sigma per entry: the difference has std sqrt(2) sigma ||x_i|| (two
  rows move), so the drop is D(sigma) = mean_i Phi(-(a_i - a_i r_i) / (sqrt(2) sigma));
- magnitude-aware, std sqrt(sigma^2 w^2 + eps^2): Phi(-(a_i - a_i r_i) /
  sqrt(sigma^2 (a_i^2 + a_i^2 r_i^2) + 2 eps^2));
- the worst case in the box |u| <= alpha |w| + eps: point i flips iff
  a_i - a_i r_i - 2 eps <= alpha (a_i + a_i r_i), and the ascent on all n points finds that
  corner (every coordinate's gradient sign is the same at every step).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from normbounds.measure.flatness import (
    SEARCH,
    alpha_search,
    bisect,
    mag_log_ratio,
    plain_copy,
    sigma_search,
)

N = 2000


def _phi(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2))


@pytest.fixture(scope="module")
def linear() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    a = 0.5 + torch.rand(N, generator=gen, dtype=torch.float64)  # in [0.5, 1.5]
    r = 0.9 * torch.rand(N, generator=gen, dtype=torch.float64)  # in [0, 0.9]
    y = torch.arange(N) % 2
    model = nn.Linear(N, 2, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
        model.weight[y, torch.arange(N)] = a
        model.weight[1 - y, torch.arange(N)] = a * r
    return model, torch.eye(N, dtype=torch.float64), y, a, r


def _root(drop, lo: float = 1e-6, hi: float = 2.0) -> float:
    for _ in range(60):  # the closed form's own root, to 2^-60 of the interval
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if drop(mid) > SEARCH.target else (mid, hi)
    return (lo + hi) / 2


def test_sigma_is_where_the_closed_form_drop_is_the_target(linear):
    model, x, y, a, r = linear

    def closed(sigma: float) -> float:
        return float(_phi(-(a - a * r) / (math.sqrt(2) * sigma)).mean())

    found = sigma_search(model, x, y, magnitude=False)
    assert found.converged and abs(found.drop - 0.1) < 0.01
    # by hand (scipy's brentq agrees): the closed form's root is 0.2118; the search stops
    # at 7/32 = 0.21875, where the closed form is 0.1043 and 10 draws measured 0.1006
    assert _root(closed) == pytest.approx(0.2118, abs=1e-4)
    assert found.value == 0.21875
    assert abs(closed(found.value) - 0.1) < 0.01  # the tolerance, at the closed form


def test_sigma_prime_is_where_the_magnitude_aware_closed_form_is_the_target(linear):
    model, x, y, a, r = linear
    eps = SEARCH.eps

    def closed(sigma: float) -> float:
        std = (sigma ** 2 * (a ** 2 + (a * r) ** 2) + 2 * eps ** 2).sqrt()
        return float(_phi(-(a - a * r) / std).mean())

    found = sigma_search(model, x, y, magnitude=True)
    assert found.converged and found.value == 0.28125  # by hand: closed form 0.1002 there
    assert abs(closed(found.value) - 0.1) < 0.01
    assert abs(_root(closed) - found.value) < 0.02  # the closed root is 0.2812


def test_alpha_prime_is_the_worst_case_corner_of_the_box(linear):
    model, x, y, a, r = linear
    cfg = dataclasses.replace(SEARCH, ascent_batch=N)  # every point in every step
    found = alpha_search(model, x, y, cfg)
    flips = ((a - a * r - 2 * cfg.eps) / (a + a * r) <= found.value).double().mean()
    # by hand: alpha' = 13/128 = 0.1015625, where 10.15% of the points flip, exactly what
    # the ascent measured
    assert found.converged and found.value == 0.1015625
    assert found.drop == pytest.approx(float(flips), abs=1e-12) == pytest.approx(0.1015)


def test_the_searches_give_the_same_bytes_twice_and_leave_the_model_alone(linear):
    model, x, y, *_ = linear
    before = model.weight.detach().clone()
    assert sigma_search(model, x, y, magnitude=False) == sigma_search(model, x, y,
                                                                      magnitude=False)
    assert alpha_search(model, x, y) == alpha_search(model, x, y)
    assert torch.equal(model.weight, before)


def test_plain_copy_folds_weight_norm_and_leaves_the_original_parametrized():
    torch.manual_seed(0)
    layer = nn.utils.parametrizations.weight_norm(nn.Linear(3, 2))
    copy = plain_copy(nn.Sequential(layer))
    effective = layer.weight.detach().clone()  # g v / ||v||
    assert torch.equal(copy[0].weight, effective)
    assert not nn.utils.parametrize.is_parametrized(copy[0])
    assert nn.utils.parametrize.is_parametrized(layer)  # the original still computes g v/|v|
    with torch.no_grad():
        layer.parametrizations.weight.original0.mul_(2)  # g doubled
    assert torch.allclose(layer.weight, 2 * effective)


def test_bisection_moves_toward_the_target_and_flags_a_miss():
    cfg = dataclasses.replace(SEARCH, steps=3)
    tried = []
    miss = bisect(lambda s: tried.append(s) or 0.0, cfg)  # never drops: raise lower each time
    assert tried == [1.0, 1.5, 1.75] and miss.value == 1.75 and not miss.converged
    hit = bisect(lambda s: 0.5 if s > 0.6 else 0.105, SEARCH)  # 1, 0.5: within tolerance
    assert (hit.value, hit.steps, hit.converged) == (0.5, 2, True)


def test_the_magnitude_aware_weight_term_by_hand():
    w, w0 = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])  # diffs 1, 2; omega = 2
    sigma, eps = 0.5, 0.1
    num = eps ** 2 + (sigma ** 2 + 1) * (1 + 4) / 2  # 3.135
    expect = 0.25 * (math.log(num / (eps ** 2 + sigma ** 2)) + math.log(num / (eps ** 2
                                                                              + 4 * sigma ** 2)))
    assert mag_log_ratio(w, w0, sigma, eps) == pytest.approx(expect)
