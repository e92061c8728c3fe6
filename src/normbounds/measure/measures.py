"""The classic generalization measures beside the bounds: one definition each, with its source.

These are NOT bounds: they are the complexity measures that Jiang et al. (2020), "Fantastic
generalization measures and where to find them" (ICLR), rank against the generalization
gap, as their reference code computes them (the PGDL 2020 starting kit and
github.com/nitarshan/robust-generalization-measures, data/generation/measures.py); the
number after each is the equation of Jiang et al.'s appendix. Each reads a row of
`assess` (a results CSV row): the per-layer columns, `margin_p10` (passes.py) and
`dist_init_l<l>` (assessment.init_distances, with the run's initialisation).

The positive controls read the searches' columns (assessment.controls, flatness.py): sigma,
sigma' and alpha'. Every measure is also ranked in Dziugaite et al.'s m-adjusted form
(`adjusted`); the baselines read only the hyperparameters or the train loss.

Weights are the layers' effective weights W_l, the ones the network computes with (a
weight-normed layer's g v / ||v||), biases left out as in their code. Products are kept
as logarithms, as their code does: a ranking does not change under a monotone map.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MEASURE_STATUS = "measure"  # the ranking table's status of a measure that is not a bound
CONTROL_STATUS = "control"  # a positive control: flatness or sharpness (Jiang et al.'s best)
BASELINE_STATUS = "baseline"  # a hyperparameter-only baseline (1/m, n_params/m) or the loss
ADJUSTED = "_adj"  # the suffix of a measure's m-adjusted form (adjusted)
MEASURE_MEANING = "NOT a bound: a complexity measure ranked beside the bounds"


def _layers(row: Mapping, name: str) -> list[float]:
    """The per-layer column <name>_l1 ... <name>_lD of a row (D = depth_d)."""
    depth = int(row["depth_d"])
    return [float(row[f"{name}_l{i}"]) for i in range(1, depth + 1)]


def _log_margin(row: Mapping) -> float:
    gamma = float(row["margin_p10"])
    return math.log(gamma) if gamma > 0 else -math.inf  # gamma = 0: every measure is +inf


def log_prod_spec_margin(row: Mapping) -> float:
    """log (prod_l sigma_l^2 / gamma^2), sigma_l the certified upper bound (eq. 31)."""
    return sum(2 * math.log(s) for s in _layers(row, "sigma_upper")) - 2 * _log_margin(row)


def log_prod_fro_margin(row: Mapping) -> float:
    """log (prod_l ||W_l||_F^2 / gamma^2) (eq. 36)."""
    return sum(2 * math.log(f) for f in _layers(row, "fro")) - 2 * _log_margin(row)


def sum_fro_sq(row: Mapping) -> float:
    """sum_l ||W_l||_F^2, the squared parameter norm (eq. 42)."""
    return sum(f * f for f in _layers(row, "fro"))


def dist_init(row: Mapping) -> float:
    """sum_l ||W_l - W_l^0||_F^2, the distance from initialisation (eq. 40); nan without
    the initialisation."""
    if "dist_init_l1" not in row:
        return math.nan
    return sum(d * d for d in _layers(row, "dist_init"))


def n_params(row: Mapping) -> float:
    """The number of weights, biases left out (eq. 20)."""
    return float(row["n_params"])


def inverse_margin(row: Mapping) -> float:
    """1 / gamma, gamma the 10th-percentile margin; Jiang et al.'s eq. 22 is 1 / gamma^2,
    which ranks every pair the same way."""
    gamma = float(row["margin_p10"])
    return 1.0 / gamma if gamma > 0 else math.inf


def _m(row: Mapping) -> float:
    return float(row["m"])


def _radius(row: Mapping, name: str) -> float:
    """A search's radius (nan when the row has no controls, or the radius is 0)."""
    value = float(row.get(name, math.nan))
    return value if value > 0 else math.nan


def pacbayes_init(row: Mapping) -> float:
    """||w - w0||^2 / (4 sigma^2) + log(m / sigma) + 10 (eq. 48)."""
    sigma = _radius(row, "pacbayes_sigma")
    return dist_init(row) / (4 * sigma ** 2) + math.log(_m(row) / sigma) + 10


def pacbayes_orig(row: Mapping) -> float:
    """||w||^2 / (4 sigma^2) + log(m / sigma) + 10 (eq. 49)."""
    sigma = _radius(row, "pacbayes_sigma")
    return sum_fro_sq(row) / (4 * sigma ** 2) + math.log(_m(row) / sigma) + 10


def pacbayes_flatness(row: Mapping) -> float:
    """1 / sigma^2 (eq. 53)."""
    return 1.0 / _radius(row, "pacbayes_sigma") ** 2


def pacbayes_mag_init(row: Mapping) -> float:
    """(1/4) sum_i log[(eps^2 + (sigma'^2 + 1) ||w - w0||^2 / omega) / (eps^2 + sigma'^2
    (w_i - w0_i)^2)] + log(m / sigma') + 10 (eq. 56; the sum is computed with the search,
    assessment.controls)."""
    sigma = _radius(row, "pacbayes_mag_sigma")
    return float(row.get("pacbayes_mag_log_ratio", math.nan)) + math.log(_m(row) / sigma) + 10


def pacbayes_mag_flatness(row: Mapping) -> float:
    """1 / sigma'^2 (eq. 61)."""
    return 1.0 / _radius(row, "pacbayes_mag_sigma") ** 2


def sharpness_mag_flatness(row: Mapping) -> float:
    """1 / alpha'^2, the magnitude-aware worst-case sharpness (eq. 57's 1 / alpha'^2)."""
    return 1.0 / _radius(row, "sharpness_mag_alpha") ** 2


def inv_m(row: Mapping) -> float:
    """1 / m: the training-set size alone."""
    return 1.0 / _m(row)


def n_params_over_m(row: Mapping) -> float:
    """n_params / m: the parameter count per training sample."""
    return float(row["n_params"]) / _m(row)


def train_loss(row: Mapping) -> float:
    """The train loss at the stopping checkpoint (the run's own loss)."""
    return float(row["train_loss"])


@dataclass(frozen=True)
class Measure:
    name: str
    label: str
    source: str
    value: Callable[[Mapping], float]
    status: str = MEASURE_STATUS
    log: bool = False  # kept as a logarithm: its m adjustment is 0.5 (v - log m)


_CLASSIC = (
    Measure("log_prod_spec_margin", "prod spectral^2 / margin^2 (log)",
            "Jiang et al. 2020, eq. 31 (certified sigma_l)", log_prod_spec_margin, log=True),
    Measure("log_prod_fro_margin", "prod Frobenius^2 / margin^2 (log)",
            "Jiang et al. 2020, eq. 36", log_prod_fro_margin, log=True),
    Measure("sum_fro_sq", "sum of squared Frobenius norms", "Jiang et al. 2020, eq. 42",
            sum_fro_sq),
    Measure("dist_init", "distance from initialisation", "Jiang et al. 2020, eq. 40",
            dist_init),
    Measure("n_params", "parameter count", "Jiang et al. 2020, eq. 20", n_params),
    Measure("inverse_margin", "1 / 10th-percentile margin", "Jiang et al. 2020, eq. 22",
            inverse_margin),
    Measure("pacbayes_init", "PAC-Bayes from init", "Jiang et al. 2020, eq. 48",
            pacbayes_init, CONTROL_STATUS),
    Measure("pacbayes_orig", "PAC-Bayes from origin", "Jiang et al. 2020, eq. 49",
            pacbayes_orig, CONTROL_STATUS),
    Measure("pacbayes_flatness", "1 / sigma^2", "Jiang et al. 2020, eq. 53",
            pacbayes_flatness, CONTROL_STATUS),
    Measure("pacbayes_mag_init", "magnitude-aware PAC-Bayes from init",
            "Jiang et al. 2020, eq. 56", pacbayes_mag_init, CONTROL_STATUS),
    Measure("pacbayes_mag_flatness", "1 / sigma'^2", "Jiang et al. 2020, eq. 61",
            pacbayes_mag_flatness, CONTROL_STATUS),
    Measure("sharpness_mag_flatness", "1 / alpha'^2 (worst case)",
            "Jiang et al. 2020, magnitude-aware sharpness", sharpness_mag_flatness,
            CONTROL_STATUS),
)
_BASELINES = (
    Measure("inv_m", "1 / m", "the training-set size", inv_m, BASELINE_STATUS),
    Measure("n_params_over_m", "n_params / m", "parameters per sample", n_params_over_m,
            BASELINE_STATUS),
    Measure("train_loss", "train loss", "the run's loss at the stopping checkpoint",
            train_loss, BASELINE_STATUS),
)


def adjusted(measure: Measure) -> Measure:
    """Dziugaite et al.'s m adjustment (data/generation/measures.py, the end of
    get_all_measures, adjust_measure): 0.5 (v - log m) for a measure kept in log form,
    sqrt(v / m) for any other (nan for a negative v)."""
    def value(row: Mapping) -> float:
        v, m = measure.value(row), _m(row)
        if measure.log:
            return 0.5 * (v - math.log(m))
        return math.sqrt(v / m) if v >= 0 else math.nan
    return Measure(measure.name + ADJUSTED, measure.label + " (m-adjusted)",
                   measure.source + ", adjusted for m", value, measure.status)


MEASURES: tuple[Measure, ...] = (*_CLASSIC, *(adjusted(m) for m in _CLASSIC), *_BASELINES)
MEASURE_NAMES: tuple[str, ...] = tuple(m.name for m in MEASURES)


def measure_values(row: Mapping) -> dict[str, float]:
    """Every classic measure, its m-adjusted form and every baseline of one row, by name
    (nan where the row lacks a column a measure reads)."""
    out = {}
    for m in MEASURES:
        try:
            out[m.name] = m.value(row)
        except (KeyError, ValueError, ZeroDivisionError):
            out[m.name] = math.nan
    return out
