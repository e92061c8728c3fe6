"""The classic measures (measure/measures.py) and the columns they read, by hand."""

import math

import pytest
import torch
from torch import nn

from normbounds.measure import assess
from normbounds.measure.measures import MEASURE_NAMES, measure_values
from normbounds.measure.passes import margin_quantile


def _linear(weight: list[list[float]]) -> nn.Module:
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return nn.Sequential(nn.Flatten(), layer)


def test_margin_quantile_is_the_m_div_10_th_smallest_margin_in_absolute_value():
    margins = torch.arange(20, dtype=torch.float32) - 5.0  # -5 ... 14
    assert margin_quantile(margins) == 4.0  # k = 2: the second smallest, -4, then abs
    assert margin_quantile(torch.tensor([3.0, 1.0, 2.0])) == 1.0  # m < 10: k = 1


def test_assess_row_has_the_margin_quantile_and_the_distance_from_init():
    w = [[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]]
    model, init = _linear(w), _linear([[0.0] * 4] * 3)
    # x_i = i / 10 * e_1 (i = 1..10), all labelled 0: logits (i / 10, 0, 0), margin i / 10
    x = torch.zeros(10, 1, 2, 2)
    x[:, 0, 0, 0] = torch.arange(1, 11, dtype=torch.float64) / 10
    y = torch.zeros(10, dtype=torch.long)
    row = assess(model, x, y, init=init)
    assert row["margin_p10"] == pytest.approx(0.1)  # k = 1: the smallest margin
    assert row["dist_init_l1"] == pytest.approx(math.sqrt(1 + 4 + 9))
    assert "dist_init_l1" not in assess(model, x, y)  # no initialisation, no distance


def test_measure_values_by_hand():
    row = {"depth_d": 2, "sigma_upper_l1": 2.0, "sigma_upper_l2": 3.0, "fro_l1": 4.0,
           "fro_l2": 5.0, "dist_init_l1": 1.0, "dist_init_l2": 2.0, "margin_p10": 0.5,
           "n_params": 123}
    got = measure_values(row)
    assert set(got) == set(MEASURE_NAMES)
    assert got["log_prod_spec_margin"] == pytest.approx(math.log(4 * 9 / 0.25))
    assert got["log_prod_fro_margin"] == pytest.approx(math.log(16 * 25 / 0.25))
    assert got["sum_fro_sq"] == 41.0
    assert got["dist_init"] == 5.0
    assert got["n_params"] == 123.0
    assert got["inverse_margin"] == 2.0
    zero = measure_values(row | {"margin_p10": 0.0})  # no margin: no capacity bound on it
    assert zero["inverse_margin"] == math.inf and zero["log_prod_spec_margin"] == math.inf
    assert math.isnan(measure_values({k: v for k, v in row.items()
                                      if not k.startswith("dist")})["dist_init"])
