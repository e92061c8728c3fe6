"""The certificate over a grid of margins, and the held-out bound it must be compared with.

docs/bounds.md, "The certificate". bound.gammas = (gamma_1, ..., gamma_K) is fixed
before the data are seen; ours_corrected is evaluated at each gamma_k with confidence
delta / K, so with probability >= 1 - delta all K statements hold at once (a union
bound) and the certificate is their minimum:

    certificate = min_k  err_S^{gamma_k} + ours_corrected(gamma_k, delta / K).

The held-out bound is the binomial tail inversion of the test error [Lan05]: the
largest population error p with P(Bin(n, p) <= errors) >= delta.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from normbounds.errors import InputError
from normbounds.measure.formulas import CERTIFYING, Ingredients, bound


def margin_key(gamma: float) -> str:
    """The row's column of the training margin error at gamma_k."""
    return f"margin_error_gamma{gamma:g}"


def grid_key(gamma: float) -> str:
    """The row's column of ours_corrected at gamma_k with confidence delta / K."""
    return f"ours_corrected_gamma{gamma:g}"


def grid_bounds(ingredients: Ingredients, gammas: Sequence[float], delta: float
                ) -> dict[str, float]:
    """ours_corrected at each gamma_k with confidence delta / K: the grid's columns."""
    theorem, each = bound(CERTIFYING).formula, delta / len(gammas)
    return {grid_key(g): theorem(dataclasses.replace(ingredients, gamma=g, delta=each))
            for g in gammas}


def certificate(margin_errors: Sequence[float], row: dict, gammas: Sequence[float]) -> dict:
    """The certificate from the margin errors at each gamma_k and the row of `compute`
    (its `ours_corrected_gamma<k>` columns), the gamma that attains it (the first, on a
    tie) and whether it is non-vacuous (below 1)."""
    if len(margin_errors) != len(gammas) or not gammas:
        raise InputError(f"certificate: {len(margin_errors)} margin errors for"
                         f" {len(gammas)} margins; pass one per bound.gammas value")
    values = [e + row[grid_key(g)] for e, g in zip(margin_errors, gammas, strict=True)]
    best = min(range(len(values)), key=lambda k: (math.isnan(values[k]), values[k]))
    return {"certificate": values[best], "certificate_gamma": float(gammas[best]),
            "non_vacuous": int(values[best] < 1.0)}


def _log_binomial_cdf(errors: int, n: int, p: float) -> float:
    """log P(Bin(n, p) <= errors), summed in log space (fsum of the scaled terms)."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 0.0 if errors >= n else -math.inf
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    terms = [base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(errors + 1)]
    top = max(terms)
    return top + math.log(math.fsum(math.exp(t - top) for t in terms))


def held_out_bound(errors: int, n: int, delta: float) -> float:
    """The test-set bound [Lan05]: sup {p : P(Bin(n, p) <= errors) >= delta}, the one-sided
    Clopper-Pearson upper limit, from above. With probability >= 1 - delta over n
    held-out points drawn independently of the classifier, its error is at most this.

    Bisection on p (the CDF decreases in p) to 2^-60, returning the upper end of the
    bracket plus 1e-12, so a rounding error of the CDF cannot land below the limit."""
    if not 0 <= errors <= n or n < 1:
        raise InputError(f"held-out bound: {errors} errors in {n} points; need 0 <= errors"
                         " <= n and n >= 1")
    if errors == n:
        return 1.0
    log_delta = math.log(delta)
    low, high = 0.0, 1.0  # the CDF is 1 at p = 0 and 0 at p = 1
    for _ in range(60):
        mid = 0.5 * (low + high)
        if _log_binomial_cdf(errors, n, mid) >= log_delta:
            low = mid
        else:
            high = mid
    return min(1.0, high + 1e-12)
