"""The classic generalization measures beside the bounds: one definition each, with its source.

These are NOT bounds: they are the complexity measures that Jiang et al. (2020), "Fantastic
generalization measures and where to find them" (ICLR), rank against the generalization
gap, as their reference code computes them (the PGDL 2020 starting kit and
github.com/nitarshan/robust-generalization-measures, data/generation/measures.py); the
number after each is the equation of Jiang et al.'s appendix. Each reads a row of
`assess` (a results CSV row): the per-layer columns, `margin_p10` (passes.py) and
`dist_init_l<l>` (assessment.init_distances, with the run's initialisation).

Weights are the layers' effective weights W_l, the ones the network computes with (a
weight-normed layer's g v / ||v||), biases left out as in their code. Products are kept
as logarithms, as their code does: a ranking does not change under a monotone map.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MEASURE_STATUS = "measure"  # the ranking table's status of a measure that is not a bound
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


@dataclass(frozen=True)
class Measure:
    name: str
    label: str
    source: str
    value: Callable[[Mapping], float]


MEASURES: tuple[Measure, ...] = (
    Measure("log_prod_spec_margin", "prod spectral^2 / margin^2 (log)",
            "Jiang et al. 2020, eq. 31 (certified sigma_l)", log_prod_spec_margin),
    Measure("log_prod_fro_margin", "prod Frobenius^2 / margin^2 (log)",
            "Jiang et al. 2020, eq. 36", log_prod_fro_margin),
    Measure("sum_fro_sq", "sum of squared Frobenius norms", "Jiang et al. 2020, eq. 42",
            sum_fro_sq),
    Measure("dist_init", "distance from initialisation", "Jiang et al. 2020, eq. 40",
            dist_init),
    Measure("n_params", "parameter count", "Jiang et al. 2020, eq. 20", n_params),
    Measure("inverse_margin", "1 / 10th-percentile margin", "Jiang et al. 2020, eq. 22",
            inverse_margin),
)
MEASURE_NAMES: tuple[str, ...] = tuple(m.name for m in MEASURES)


def measure_values(row: Mapping) -> dict[str, float]:
    """Every classic measure of one row, by name."""
    return {m.name: m.value(row) for m in MEASURES}
