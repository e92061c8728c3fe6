"""The uncertainty of the ranking study's scores: permutation p-values and bootstrap intervals.

Every function scores many measures over many resamples at once (numpy, no pandas in the
loop): `psi_tau` computes the same tau and Psi as ranking.kendall_tau and
ranking.granulated (a test checks they agree), for a batch of gap vectors.

- `permutation`: the gaps shuffled across networks (seeded), two-sided p-values
  p = (1 + #{|null| >= |observed|}) / (1 + shuffles).
- `bootstrap`: networks resampled with replacement (seeded), the 2.5% and 97.5% quantiles,
  and those of every difference asked for (paired: one resample scores both measures). Two
  copies of one network are not a pair of runs: counting them (sign 0) would shrink every
  tau towards 0, and the interval would miss the estimate.
- `sparsity_test`: does a quantity move with one hyperparameter? Its levels shuffled within
  each cell of the others (a stratified permutation), the statistic the between-level sum
  of squares summed over cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SHUFFLES = 1_000
RESAMPLES = 1_000
PERMUTATION_SEED = 0
BOOTSTRAP_SEED = 1


def codes_of(table: pd.DataFrame, hps: Sequence[str]) -> np.ndarray:
    """(n, len(hps)) integer codes of each run's hyperparameter values."""
    return np.stack([pd.factorize(table[h], sort=True)[0] for h in hps], axis=1)


def _cells(codes: np.ndarray, i: int) -> list[np.ndarray]:
    """The runs of each setting of every hyperparameter but the i-th, where h_i varies."""
    others = np.delete(codes, i, axis=1)
    keys = [tuple(r) for r in others] if others.shape[1] else [()] * len(codes)
    groups: dict[tuple, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    return [np.array(g) for _, g in sorted(groups.items())
            if len(set(codes[g, i])) > 1]


def _tau(mu: np.ndarray, gaps: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Kendall's tau (eq. 2) of every measure against every gap vector, over the pairs of
    runs with different ids (a bootstrap's copies of one network are not a pair): mu
    (k, c), gaps (B, c), ids (c,) -> (B, k)."""
    pairs = ids[:, None] != ids[None, :]  # (c, c)
    s_mu = np.sign(mu[:, :, None] - mu[:, None, :]) * pairs  # (k, c, c)
    s_g = np.sign(gaps[:, :, None] - gaps[:, None, :])  # (B, c, c)
    count = pairs.sum()
    if count == 0:
        return np.full((len(gaps), len(mu)), np.nan)
    return np.einsum("kij,bij->bk", s_mu, s_g) / count


def psi_tau(mu: np.ndarray, gaps: np.ndarray, codes: np.ndarray, ids: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tau (B, k), Psi (B, k) and psi_i (B, k, n_hp) of measures mu (k, n) against gap
    vectors (B, n), runs' hyperparameter codes (n, n_hp); `ids` names each run's network
    (default: all distinct)."""
    ids = np.arange(mu.shape[1]) if ids is None else ids
    psis = []
    for i in range(codes.shape[1]):
        taus = [t for c in _cells(codes, i) if not np.isnan(t := _tau(mu[:, c], gaps[:, c],
                                                                       ids[c])).all()]
        psis.append(np.mean(taus, axis=0) if taus else np.full((len(gaps), len(mu)), np.nan))
    psi = np.stack(psis, axis=2)
    with np.errstate(invalid="ignore"):
        whole = np.where(np.isnan(psi).all(axis=2), np.nan,
                         np.nansum(psi, axis=2) / np.maximum((~np.isnan(psi)).sum(axis=2), 1))
    return _tau(mu, gaps, ids), whole, psi


def permutation(mu: np.ndarray, gap: np.ndarray, codes: np.ndarray, shuffles: int = SHUFFLES,
                seed: int = PERMUTATION_SEED) -> dict[str, np.ndarray]:
    """Two-sided permutation p-values of tau and Psi per measure (k,), of each psi_i
    (k, n_hp), and the null's |Psi| 95% quantile per measure (the smallest |Psi| this
    table can resolve at p < 0.05)."""
    rng = np.random.default_rng(seed)
    null = np.stack([rng.permutation(gap) for _ in range(shuffles)])

    tau0, psi0, psis0 = psi_tau(mu, gap[None, :], codes)
    tau_n, psi_n, psis_n = psi_tau(mu, null, codes)

    def p(obs: np.ndarray, sample: np.ndarray) -> np.ndarray:
        count = (np.abs(sample) >= np.abs(obs) - 1e-12).sum(axis=0)
        return np.where(np.isnan(obs), np.nan, (1 + count) / (1 + shuffles))

    return {"p_tau": p(tau0[0], tau_n), "p_Psi": p(psi0[0], psi_n),
            "p_psi": p(psis0[0], psis_n),
            "psi_resolved": np.nanquantile(np.abs(psi_n), 0.95, axis=0)}


def bootstrap(mu: np.ndarray, gap: np.ndarray, codes: np.ndarray,
              pairs: Sequence[tuple[int, int]] = (), resamples: int = RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> dict[str, np.ndarray]:
    """95% percentile intervals of tau and Psi per measure (k, 2), and of Psi_a - Psi_b
    for each (a, b) of `pairs` (len(pairs), 2)."""
    rng = np.random.default_rng(seed)
    n = len(gap)
    taus, psis = [], []
    for _ in range(resamples):
        r = rng.integers(0, n, n)
        t, ps, _ = psi_tau(mu[:, r], gap[None, r], codes[r], ids=r)
        taus.append(t[0])
        psis.append(ps[0])
    taus, psis = np.array(taus), np.array(psis)  # (R, k)

    def ci(x: np.ndarray) -> np.ndarray:
        return np.nanquantile(x, [0.025, 0.975], axis=0).T

    diffs = np.array([psis[:, a] - psis[:, b] for a, b in pairs]).T if pairs else None
    return {"ci_tau": ci(taus), "ci_Psi": ci(psis),
            "ci_diff": ci(diffs) if diffs is not None else np.zeros((0, 2))}


def _between_ss(values: np.ndarray, levels: np.ndarray, cells: list[np.ndarray]) -> float:
    total = 0.0
    for c in cells:
        v, lv = values[c], levels[c]
        for level in np.unique(lv):
            part = v[lv == level]
            total += len(part) * (part.mean() - v.mean()) ** 2
    return total


def sparsity_test(values: np.ndarray, codes: np.ndarray, i: int, shuffles: int = SHUFFLES,
                  seed: int = PERMUTATION_SEED) -> float:
    """p-value that `values` do not move with hyperparameter i: its levels shuffled within
    each cell of the other hyperparameters, the between-level sum of squares as statistic."""
    cells = _cells(codes, i)
    levels = codes[:, i]
    observed = _between_ss(values, levels, cells)
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(shuffles):
        shuffled = levels.copy()
        for c in cells:
            shuffled[c] = rng.permutation(levels[c])
        count += _between_ss(values, shuffled, cells) >= observed - 1e-12
    return (1 + count) / (1 + shuffles)


def shared_ranks(values: Sequence[float], decimals: int = 3) -> list[str]:
    """Ranks by value, largest first, ties (equal at `decimals`, as printed) sharing one:
    [0.2, 0.1, 0.1, 0.0] -> ['1', '2=', '2=', '4']; nan last, unranked ('-')."""
    rounded = [None if np.isnan(v) else round(float(v), decimals) for v in values]
    out = []
    for v in rounded:
        if v is None:
            out.append("-")
            continue
        rank = 1 + sum(1 for w in rounded if w is not None and w > v)
        tied = sum(1 for w in rounded if w == v) > 1
        out.append(f"{rank}{'=' if tied else ''}")
    return out
