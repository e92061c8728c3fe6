"""The ranking study's uncertainty (report/uncertainty.py): the batched scores agree with
the reference ones (report/ranking.py), and the p-values and intervals behave as their
definitions say on tables whose answers are known."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from normbounds.report.ranking import granulated, kendall_tau
from normbounds.report.uncertainty import (
    bootstrap,
    codes_of,
    permutation,
    psi_tau,
    shared_ranks,
    sparsity_test,
)

HPS = ["a", "b"]


def _table(seeds: int = 3, seed: int = 0) -> pd.DataFrame:
    """a x b = 3 x 3 settings, `seeds` runs each; the gap rises with a, noise on top."""
    rng = np.random.default_rng(seed)
    rows = [{"a": a, "b": b, "seed": s, "gap": 0.1 * a + 0.01 * rng.standard_normal()}
            for a, b, s in itertools.product(range(3), ["x", "y", "z"], range(seeds))]
    t = pd.DataFrame(rows)
    return t.assign(by_a=t["a"], noise=rng.permutation(len(t)), exact=t["gap"])


def test_the_batched_scores_are_the_reference_ones():
    t = _table()
    names = ["by_a", "noise", "exact"]
    tau, psi, psis = psi_tau(t[names].to_numpy(float).T, t["gap"].to_numpy()[None],
                             codes_of(t, HPS))
    for k, name in enumerate(names):
        ref_psi, ref = granulated(t, HPS, name)
        assert tau[0, k] == pytest.approx(kendall_tau(t[name], t["gap"]), abs=1e-12)
        assert psi[0, k] == pytest.approx(ref_psi, abs=1e-12)
        assert list(psis[0, k]) == pytest.approx([ref["a"], ref["b"]], abs=1e-12)


def test_a_measure_equal_to_the_gap_has_the_smallest_p_value_and_noise_a_large_one():
    t = _table()
    mu = t[["exact", "noise"]].to_numpy(float).T
    perm = permutation(mu, t["gap"].to_numpy(), codes_of(t, HPS), shuffles=200)
    assert perm["p_tau"][0] == perm["p_Psi"][0] == 1 / 201  # no shuffle reaches tau = 1
    assert perm["p_tau"][1] > 0.05 and perm["p_Psi"][1] > 0.05
    # the null's 95% quantile of |Psi|: what this table can resolve, well under 1
    assert 0 < perm["psi_resolved"][0] < 0.5


def test_the_permutation_is_seeded_and_two_sided():
    t = _table()
    gap = t["gap"].to_numpy()
    mu = np.stack([gap, -gap])
    perm = permutation(mu, gap, codes_of(t, HPS), shuffles=100)
    again = permutation(mu, gap, codes_of(t, HPS), shuffles=100)
    assert perm["p_tau"][0] == perm["p_tau"][1]  # -g is as far from the null as g
    assert all(np.array_equal(perm[k], again[k], equal_nan=True) for k in perm)


def test_bootstrap_copies_of_one_network_are_not_a_pair():
    t = _table()
    gap = t["gap"].to_numpy()
    boot = bootstrap(np.stack([gap, t["by_a"].to_numpy(float)]), gap, codes_of(t, HPS),
                     pairs=[(0, 1)], resamples=200)
    # mu = g: every resample's tau is exactly 1 once copies are left out (counted as
    # pairs with sign 0, they would pull it under 1)
    assert boot["ci_tau"][0] == pytest.approx([1.0, 1.0])
    assert boot["ci_Psi"][0] == pytest.approx([1.0, 1.0])
    lo, hi = boot["ci_diff"][0]  # the paired interval of Psi(g) - Psi(by_a): positive
    assert 0 < lo <= hi
    tau_a = kendall_tau(t["by_a"], gap)
    assert boot["ci_tau"][1][0] <= tau_a <= boot["ci_tau"][1][1]


def test_ties_share_a_rank_as_printed():
    assert shared_ranks([0.2, 0.1, 0.1, 0.0]) == ["1", "2=", "2=", "4"]
    assert shared_ranks([0.1234, 0.1231, float("nan")]) == ["1=", "1=", "-"]  # 0.123 both


def test_the_sparsity_test_finds_a_shift_and_not_noise():
    t = _table(seeds=4)
    codes = codes_of(t, HPS)
    shifted = t["gap"].to_numpy() + 0.05 * (t["b"] == "z")  # b = z moves it
    assert sparsity_test(shifted, codes, 1, shuffles=200) == 1 / 201
    assert sparsity_test(t["gap"].to_numpy(), codes, 0, shuffles=200) == 1 / 201  # a moves it
    # b is noise: over 40 tables the p-value is under 0.05 about 5% of the time (2 here)
    null = [sparsity_test(_table(4, seed)["gap"].to_numpy(), codes, 1, shuffles=200)
            for seed in range(40)]
    assert sum(p < 0.05 for p in null) <= 4 and np.median(null) > 0.3
