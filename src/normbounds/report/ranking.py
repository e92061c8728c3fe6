"""Does a measure predict generalization? The scores of the ranking study, one function each.

A table has one row per trained run: a column per hyperparameter, the measure and the
generalization gap g (test error - train error). Definitions and citations:
docs/studies.md, "The ranking study".

- `kendall_tau`: Jiang et al. (ICLR 2020), eq. 2, sign(0) = 0, over ordered pairs.
- `granulated`: their eq. 4, psi_i per hyperparameter and Psi, their mean.
- `conditional_mi`: their section 6 (and the PGDL 2020 scorer's quantity).
- `sign_errors`: Dziugaite et al. (NeurIPS 2020), as their code computes it
  (experiments/coupled_networks/common.py: hoeffding_weight, sign_error;
  create_environments.py; figure_cdf_all_measures.py: get_all_losses, min_ess = 12).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

MIN_ESS = 12.0  # Dziugaite et al.'s minimum effective sample size of an environment
WEIGHT_SHIFT = 0.5  # their (w - 0.5)_+: a pair counts only when its gap order is likely


def _signs(values: np.ndarray) -> np.ndarray:
    """sign(v_i - v_j) for every ordered pair: (n,) -> (n, n)."""
    values = np.asarray(values, dtype=float)
    return np.sign(values[:, None] - values[None, :])


def kendall_tau(mu: Sequence[float], gap: Sequence[float]) -> float:
    """(1 / (n (n - 1))) sum_{i != j} sign(mu_i - mu_j) sign(g_i - g_j); nan under 2 runs."""
    n = len(mu)
    if n < 2:
        return math.nan
    return float((_signs(mu) * _signs(gap)).sum() / (n * (n - 1)))  # the diagonal is 0


def granulated(table: pd.DataFrame, hps: Sequence[str], measure: str, gap: str = "gap"
               ) -> tuple[float, dict[str, float]]:
    """Psi and psi_i: for each hyperparameter i, the mean of tau over the cells of runs
    that differ only in h_i (every seed of those settings in the cell), then the mean over
    i. A cell of one run has no pair and is left out."""
    psi = {}
    for hp in hps:
        others = [h for h in hps if h != hp]
        cells = table.groupby(others, sort=True) if others else [((), table)]
        taus = [kendall_tau(c[measure].to_numpy(), c[gap].to_numpy()) for _, c in cells
                if c[hp].nunique() > 1]
        taus = [t for t in taus if not math.isnan(t)]
        psi[hp] = float(np.mean(taus)) if taus else math.nan
    values = [v for v in psi.values() if not math.isnan(v)]
    return (float(np.mean(values)) if values else math.nan), psi


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _mutual_information(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Plug-in I(A; B) and H(B) of paired samples with values in {-1, 0, 1}."""
    joint = np.zeros((3, 3))
    np.add.at(joint, (a.astype(int) + 1, b.astype(int) + 1), 1)
    h_b = _entropy(joint.sum(axis=0))
    return _entropy(joint.sum(axis=1)) + h_b - _entropy(joint.ravel()), h_b


def conditional_mi(table: pd.DataFrame, hps: Sequence[str], measure: str, gap: str = "gap"
                   ) -> tuple[float, tuple[str, ...]]:
    """K = min over S (|S| <= 2) of I(V_mu; V_g | U_S) / H(V_g | U_S), plug-in over the
    ordered pairs i != j of runs, U_S the values of S for both runs; and the S attaining
    it. An S under which the gap's order is determined (H = 0) is left out."""
    n = len(table)
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    v_mu, v_g = _signs(table[measure].to_numpy())[i, j], _signs(table[gap].to_numpy())[i, j]
    best, best_s = math.nan, ()
    for size in (0, 1, 2):
        for subset in itertools.combinations(hps, size):
            values = [tuple(v) for v in table[list(subset)].to_numpy()] if subset else [()] * n
            groups: dict[tuple, list[int]] = {}
            for p, (a, b) in enumerate(zip(i, j, strict=True)):  # U_S of the pair (a, b)
                groups.setdefault(values[a] + values[b], []).append(p)
            mi = h = 0.0
            for idx in groups.values():
                part_mi, part_h = _mutual_information(v_mu[idx], v_g[idx])
                mi, h = mi + len(idx) * part_mi, h + len(idx) * part_h
            if h > 1e-12 and not (mi / h >= best):  # strict: the first minimum is kept
                best, best_s = mi / h, subset
    return best, best_s


def hoeffding_weight(delta_gap: float, n: int, shift: float = 0.0) -> float:
    """Dziugaite et al.'s confidence that two gaps estimated on n test points differ:
    max(0, 1 - 2 exp(-2 n (max(|delta| - shift, 0) / 2)^2))^2 (0 for equal gaps)."""
    x = max(abs(delta_gap) - shift, 0.0)
    return max(0.0, 1.0 - 2.0 * math.exp(-2.0 * n * (x / 2.0) ** 2)) ** 2


def pair_weight(delta_gap: float, n: int) -> float:
    """The weight of a pair in an environment: (hoeffding_weight - 0.5)_+."""
    return max(hoeffding_weight(delta_gap, n) - WEIGHT_SHIFT, 0.0)


def sign_error(mu_1: float, mu_2: float, g_1: float, g_2: float) -> float:
    """(1 - sign(mu_1 - mu_2) sign(g_1 - g_2)) / 2: 0 when the orders agree, 1 when they
    disagree, 1/2 when the measure ties."""
    return (1.0 - float(np.sign(mu_1 - mu_2) * np.sign(g_1 - g_2))) / 2.0


def sign_errors(table: pd.DataFrame, hps: Sequence[str], measures: Sequence[str], n_test: int,
                gap: str = "gap", min_ess: float = MIN_ESS) -> pd.DataFrame:
    """One row per environment (two settings differing in one hyperparameter; each
    unordered pair of settings once), with its hyperparameter, effective sample size and
    each measure's weighted sign-error over the pairs of their runs (every seed against
    every seed); the environments under `min_ess` are left out."""
    settings = {k: g for k, g in table.groupby(list(hps), sort=True)}
    rows = []
    for (s1, a), (s2, b) in itertools.combinations(settings.items(), 2):
        differ = [h for h, x, y in zip(hps, s1, s2, strict=True) if x != y]
        if len(differ) != 1:
            continue
        pairs = [(ra, rb) for _, ra in a.iterrows() for _, rb in b.iterrows()]
        w = np.array([pair_weight(ra[gap] - rb[gap], n_test) for ra, rb in pairs])
        total = w.sum()
        ess = total ** 2 / (w ** 2).sum() if total > 0 else 0.0
        if not (ess > min_ess or math.isclose(ess, min_ess)):
            continue
        row = {"hyperparameter": differ[0], "ess": ess}
        for name in measures:
            errs = [sign_error(ra[name], rb[name], ra[gap], rb[gap]) for ra, rb in pairs]
            row[name] = float(np.dot(w, errs) / total)
        rows.append(row)
    return pd.DataFrame(rows, columns=["hyperparameter", "ess", *measures])
