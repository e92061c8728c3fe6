"""Log-space arithmetic shared by the bound formulas, and their two deviation terms.

Products of norms overflow float64 for deep or wide networks long before the
bounds stop being meaningful, so every formula works with logarithms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LOG2 = math.log(2.0)


def log_plus(log_x: float, c: float) -> float:
    """log(x + c) from log x, for c > 0 (no overflow when x is huge)."""
    return float(np.logaddexp(log_x, math.log(c)))


def logsum(logs: Sequence[float]) -> float:
    """log(sum_i exp(logs_i))."""
    return float(np.logaddexp.reduce(np.asarray(logs, dtype=np.float64)))


def exp(x: float) -> float:
    """exp that gives inf past the float64 range instead of raising OverflowError."""
    return math.exp(x) if x < 709.0 else math.inf


def log(x: float) -> float:
    """log that gives -inf for 0 (a zero layer: a product of norms is 0)."""
    return math.log(x) if x > 0 else -math.inf


def scale_term(log_rho: float, m: int, delta: float) -> float:
    """3 sqrt(log(2 (rho + 2)^2 / delta) / (2 m)): the margin bound's deviation term with
    the union bound over the scales t = 1, 2, ... of rho (delta_t = delta / (t (t + 1)))."""
    return 3.0 * math.sqrt((LOG2 + 2.0 * log_plus(log_rho, 2.0) - math.log(delta)) / (2.0 * m))


def confidence_term(m: int, delta: float, extra_log: float = 0.0) -> float:
    """3 sqrt((log(2 / delta) + extra_log) / (2 m)): the margin bound's deviation term,
    extra_log = log(1 / w) for a union bound in which this class has prior weight w."""
    return 3.0 * math.sqrt((math.log(2.0 / delta) + extra_log) / (2.0 * m))
