"""The classic measures (measure/measures.py) and the columns they read, by hand."""

import math

import pytest
import torch
from torch import nn

from normbounds.measure import assess
from normbounds.measure.measures import MEASURE_NAMES, MEASURES, measure_values
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


CONTROLS = {"m": 100, "pacbayes_sigma": 0.5, "pacbayes_mag_sigma": 0.25,
            "sharpness_mag_alpha": 0.1, "pacbayes_mag_log_ratio": 3.0, "train_loss": 0.2}


def test_the_positive_controls_by_hand():
    row = {"depth_d": 2, "sigma_upper_l1": 2.0, "sigma_upper_l2": 3.0, "fro_l1": 4.0,
           "fro_l2": 5.0, "dist_init_l1": 1.0, "dist_init_l2": 2.0, "margin_p10": 0.5,
           "n_params": 123} | CONTROLS
    got = measure_values(row)
    # ||w - w0||^2 = 5, ||w||^2 = 41, sigma = 1/2: 4 sigma^2 = 1, log(m / sigma) = log 200
    assert got["pacbayes_init"] == pytest.approx(5 + math.log(200) + 10)
    assert got["pacbayes_orig"] == pytest.approx(41 + math.log(200) + 10)
    assert got["pacbayes_flatness"] == pytest.approx(4.0)
    # sigma' = 1/4: the weight term as assessed, plus log(100 / 0.25) + 10
    assert got["pacbayes_mag_init"] == pytest.approx(3 + math.log(400) + 10)
    assert got["pacbayes_mag_flatness"] == pytest.approx(16.0)
    assert got["sharpness_mag_flatness"] == pytest.approx(100.0)  # 1 / alpha'^2
    no_search = measure_values({k: v for k, v in row.items() if k not in CONTROLS} | {"m": 100})
    assert all(math.isnan(no_search[n]) for n in ("pacbayes_init", "pacbayes_mag_flatness",
                                                  "sharpness_mag_flatness"))


def test_the_m_adjustment_and_the_baselines_by_hand():
    row = {"depth_d": 2, "sigma_upper_l1": 2.0, "sigma_upper_l2": 3.0, "fro_l1": 4.0,
           "fro_l2": 5.0, "dist_init_l1": 1.0, "dist_init_l2": 2.0, "margin_p10": 0.5,
           "n_params": 123} | CONTROLS
    got = measure_values(row)
    # a log measure: 0.5 (v - log m); any other: sqrt(v / m) (Dziugaite et al.'s adjust_measure)
    assert got["log_prod_spec_margin_adj"] == pytest.approx(0.5 * (math.log(144) - math.log(100)))
    assert got["sum_fro_sq_adj"] == pytest.approx(math.sqrt(41 / 100))
    assert got["inverse_margin_adj"] == pytest.approx(math.sqrt(2 / 100))
    assert got["pacbayes_flatness_adj"] == pytest.approx(math.sqrt(4 / 100))
    assert got["inv_m"] == 0.01 and got["n_params_over_m"] == 1.23 and got["train_loss"] == 0.2
    statuses = {m.name: m.status for m in MEASURES}
    assert statuses["inv_m"] == statuses["train_loss"] == "baseline"
    assert statuses["pacbayes_init_adj"] == statuses["sharpness_mag_flatness"] == "control"
    assert statuses["sum_fro_sq_adj"] == "measure"
    assert len(MEASURE_NAMES) == len(set(MEASURE_NAMES)) == 12 * 2 + 3
