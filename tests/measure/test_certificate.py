"""The certificate over the margin grid (a union bound at delta / K), the held-out bound
beside it, and the statuses that follow the options (docs/bounds.md, "The certificate")."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
from torch import nn

from normbounds.errors import ConfigError
from normbounds.measure import bounds, formulas
from normbounds.measure.assessment import assess
from normbounds.measure.certificates import grid_key, held_out_bound, margin_key
from normbounds.measure.options import BoundConfig
from normbounds.measure.passes import margin_errors


def _net_and_data(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 3, 2, bias=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 7 * 7, 4, bias=False)).eval()
    x = torch.rand(60, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)  # labels it fits, so margins spread over the grid
    return model, x, y


def test_a_one_point_grid_is_todays_certificate_exactly():
    model, x, y = _net_and_data()
    for gamma in (0.25, 1.0):
        row = assess(model, x, y, params=BoundConfig(gamma=gamma, gammas=(gamma,)))
        assert row["certificate"] == row["margin_error"] + row["ours_corrected"]
        assert row["certificate_gamma"] == gamma
        assert row[grid_key(gamma)] == row["ours_corrected"]  # K = 1: delta itself


def test_the_certificate_is_the_minimum_over_the_stated_grid_at_delta_over_k():
    model, x, y = _net_and_data()
    gammas, delta = (0.01, 0.03, 0.1, 0.3), 0.01
    row = assess(model, x, y, params=BoundConfig(gammas=gammas, delta=delta))
    with torch.no_grad():
        logits = model(x)
    values = []
    for g in gammas:
        # the margin error at g, counted here, and the theorem at g with delta / K
        counted = margin_errors(logits, y, g).double().mean().item()
        assert row[margin_key(g)] == counted
        at_g = bounds.compute(model, x, params=BoundConfig(gamma=g, delta=delta / 4))
        assert row[grid_key(g)] == at_g["ours_corrected"]
        alone = bounds.compute(model, x, params=BoundConfig(gamma=g, delta=delta))
        assert row[grid_key(g)] > alone["ours_corrected"]  # delta / K costs something
        values.append(counted + at_g["ours_corrected"])
    assert row["certificate"] == min(values)
    assert row["certificate_gamma"] == gammas[values.index(min(values))]
    assert len({round(v, 9) for v in values}) == len(values)  # the choice is not a tie
    # no column of a margin outside the grid
    assert [k for k in row if k.startswith("ours_corrected_gamma")] == [grid_key(g)
                                                                         for g in gammas]


@pytest.mark.parametrize(("gammas", "message"), [
    ((), "bound.gammas = [] is invalid: must list 1 to 64 margins"),
    ((1.0, 0.5), "bound.gammas = [1.0, 0.5] is invalid: must be strictly increasing"
                 " (each margin once)"),
    ((0.0, 1.0), "bound.gammas = [0.0, 1.0] is invalid: every value must be > 0"),
    ((1.0, math.inf), "bound.gammas = [1.0, inf] is invalid: every value must be finite"),
])
def test_a_bad_grid_is_named(gammas, message):
    with pytest.raises(ConfigError) as err:
        BoundConfig(gammas=gammas).check()
    assert str(err.value).startswith(f"params.yaml: {message}")


@pytest.mark.parametrize(("errors", "n", "delta"), [
    (0, 1, 0.05), (0, 100, 0.001), (1, 100, 0.001), (3, 10, 0.1), (51, 1000, 0.001),
    (999, 1000, 0.01), (7, 60_000, 1e-6), (400, 10_000, 0.5)])
def test_the_held_out_bound_is_the_one_sided_clopper_pearson_limit(errors, n, delta):
    value = held_out_bound(errors, n, delta)
    exact = scipy.stats.beta.ppf(1 - delta, errors + 1, n - errors)
    assert exact <= value <= exact + 1e-10
    # it is where the binomial tail crosses delta
    assert scipy.stats.binom.cdf(errors, n, value - 1e-9) >= delta
    assert scipy.stats.binom.cdf(errors, n, value + 1e-9) < delta


def test_the_held_out_bound_by_hand_and_monotone():
    # 0 errors in n points: (1 - p)^n = delta
    for n, delta in [(1, 0.05), (50, 0.001), (1000, 0.01)]:
        assert held_out_bound(0, n, delta) == pytest.approx(1 - delta ** (1 / n), abs=2e-12)
    assert held_out_bound(20, 20, 0.001) == 1.0
    values = [held_out_bound(k, 200, 0.001) for k in range(201)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    assert all(k / 200 < v for k, v in enumerate(values[:-1]))  # above the test error


def test_assess_puts_the_held_out_bound_beside_the_certificate():
    model, x, y = _net_and_data()
    wrong = y.clone()
    wrong[:7] = (wrong[:7] + 1) % 4  # 7 errors on the held-out points
    row = assess(model, x, y, test=(x, wrong), params=BoundConfig(delta=0.01))
    assert row["test_error"] == 7 / 60
    assert row["held_out"] == held_out_bound(7, 60, 0.01)
    assert row["status_held_out"] == "theorem (held-out)"
    assert "held_out" not in assess(model, x, y)  # no test data: no held-out bound


def test_statuses_follow_the_lipschitz_option_and_the_reference():
    model, x, _ = _net_and_data()
    base = bounds.compute(model, x)
    assert formulas.statuses_of(base) == {b.name: b.status for b in formulas.BOUNDS}
    for lipschitz in ("estimate", "reshaped"):
        got = formulas.statuses_of(bounds.compute(model, x,
                                                  params=BoundConfig(lipschitz=lipschitz)))
        # graf and ledent read sigma_l, which may then lie below the Lipschitz constant
        assert got == {**formulas.statuses_of(base), "graf": "estimate",
                       "ledent": "estimate"}
    reference = _net_and_data(seed=1)[0]
    given = bounds.compute(model, x, reference=reference)
    assert formulas.statuses_of(given)["graf"] == "conditional"
    assert formulas.statuses_of(given)["ledent"] == "fixed-class"
    declared = bounds.compute(model, x, reference=reference, reference_independent=True)
    assert formulas.statuses_of(declared)["graf"] == "theorem"
