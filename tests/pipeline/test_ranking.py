"""The ranking study's scores (report/ranking.py) on tables small enough to score by hand,
and the sanity values every score must show."""

import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest

from normbounds.report.ranking import (
    MIN_ESS,
    conditional_mi,
    granulated,
    hoeffding_weight,
    kendall_tau,
    pair_weight,
    sign_error,
    sign_errors,
)

HPS = ["a", "b"]


def _hand_table() -> pd.DataFrame:
    # a 2 x 2 grid, one run each; the gap rises with a and with b
    return pd.DataFrame({"a": [0, 0, 1, 1], "b": [0, 1, 0, 1],
                         "gap": [0.1, 0.2, 0.3, 0.5], "mu": [1.0, 3.0, 2.0, 4.0]})


def test_kendall_tau_by_hand():
    t = _hand_table()
    # pairs (unordered): (0,1) +, (0,2) +, (0,3) +, (1,2) mu 3>2 but g .2<.3: -, (1,3) +,
    # (2,3) +: 5 agree, 1 disagrees; ordered pairs double both: (10 - 2) / 12
    assert kendall_tau(t["mu"], t["gap"]) == pytest.approx(8 / 12)
    assert kendall_tau([1.0, 1.0, 2.0], [0.1, 0.2, 0.3]) == pytest.approx(4 / 6)  # a tie: 0
    assert math.isnan(kendall_tau([1.0], [0.1]))


def test_granulated_by_hand():
    t = _hand_table()
    psi_all, psi = granulated(t, HPS, "mu")
    # a varies in the cells b = 0 (runs 0, 2: mu 1 < 2, g .1 < .3: tau 1) and b = 1 (runs
    # 1, 3: 3 < 4, .2 < .5: 1) -> psi_a = 1; b varies in a = 0 (runs 0, 1: +1) and a = 1
    # (runs 2, 3: +1) -> psi_b = 1
    assert psi == {"a": 1.0, "b": 1.0} and psi_all == 1.0
    t.loc[3, "mu"] = 0.0  # now run 3 has the smallest mu: cell b=1 (3 > 0 vs .2 < .5): -1
    psi_all, psi = granulated(t, HPS, "mu")
    assert psi == {"a": 0.0, "b": 0.0} and psi_all == 0.0


def test_conditional_mi_by_hand():
    t = _hand_table()
    # mu = g: V_mu = V_g on every pair, so I = H under every S: K = 1
    k, given = conditional_mi(t.assign(mu=t["gap"]), HPS, "mu")
    assert k == pytest.approx(1.0) and given == ()
    # a constant measure: V_mu = 0 always, I = 0
    k, _ = conditional_mi(t.assign(mu=1.0), HPS, "mu")
    assert k == pytest.approx(0.0)
    # by hand, S empty: the 12 ordered pairs; V_g = +-1 half each: H = log 2. (V_mu, V_g)
    # agree on 10 pairs and disagree on 2: joint (+,+) 5, (-,-) 5, (+,-) 1, (-,+) 1
    p = np.array([5, 5, 1, 1]) / 12
    i_hand = math.log(2) + math.log(2) + float((p * np.log(p)).sum())
    k, given = conditional_mi(t, [], "mu")
    assert given == () and k == pytest.approx(i_hand / math.log(2))


def test_sanity_values_on_a_large_synthetic_grid():
    rng = np.random.default_rng(0)
    grid = list(itertools.product(range(4), range(4), range(3)))  # a, b, seed
    t = pd.DataFrame(grid, columns=["a", "b", "seed"])
    t["gap"] = 0.05 * t["a"] + 0.01 * t["b"] + rng.uniform(0, 0.004, len(t))  # distinct
    n = len(t)
    assert kendall_tau(t["gap"], t["gap"]) == 1.0
    assert kendall_tau(-t["gap"], t["gap"]) == -1.0
    assert granulated(t.assign(mu=t["gap"]), HPS, "mu")[0] == 1.0
    # orders runs by a alone, and the gap rises with a: psi_a = 1 in every cell of one
    # seed (with several seeds, the runs of one setting tie in mu: their pairs count 0)
    one = t[t["seed"] == 0].assign(mu=lambda f: f["a"])
    assert granulated(one, HPS, "mu")[1]["a"] == 1.0
    assert granulated(t.assign(mu=t["a"]), HPS, "mu")[1]["a"] == pytest.approx(
        (3 * 3 * 6 * 2) / (12 * 11))  # per cell: 54 of the 66 unordered pairs differ in a
    # a seeded random permutation: tau within 3 / sqrt(n) of 0
    tau = kendall_tau(rng.permutation(n).astype(float), t["gap"])
    assert abs(tau) < 3 / math.sqrt(n)
    assert conditional_mi(t.assign(mu=t["gap"]), HPS, "mu")[0] == pytest.approx(1.0)


def test_hoeffding_weight_is_their_formula():
    assert hoeffding_weight(0.0, 1000) == 0.0  # an equal gap weighs nothing
    assert pair_weight(0.0, 1000) == 0.0
    # max(0, 1 - 2 exp(-2 n (d/2)^2))^2 at n = 1000, d = 0.1: (1 - 2 e^-5)^2
    assert hoeffding_weight(0.1, 1000) == pytest.approx((1 - 2 * math.exp(-5)) ** 2)
    assert pair_weight(0.1, 1000) == pytest.approx((1 - 2 * math.exp(-5)) ** 2 - 0.5)
    assert pair_weight(0.05, 1000) == 0.0  # (1 - 2 e^-1.25)^2 = 0.18 < 0.5
    assert sign_error(1, 2, 0.1, 0.2) == 0.0 and sign_error(2, 1, 0.1, 0.2) == 1.0
    assert sign_error(1, 1, 0.1, 0.2) == 0.5  # a tie of the measure counts half


def _environment_table() -> pd.DataFrame:
    # 2 x 2 settings, 4 seeds each; a moves the gap by 0.2 (weights near 0.5), b by 0.001
    # (weight 0); the seeds add distinct small offsets
    rows = [(a, b, s, 0.2 * a + 0.001 * b + 0.0001 * s) for a in (0, 1) for b in (0, 1)
            for s in range(4)]
    return pd.DataFrame(rows, columns=["a", "b", "seed", "gap"])


def test_sign_errors_of_the_gap_are_zero_and_noise_is_left_out():
    t = _environment_table()
    t["mu"], t["anti"] = t["gap"], -t["gap"]
    envs = sign_errors(t, HPS, ["mu", "anti"], n_test=1000)
    # only the two environments where a changes keep their 16 pairs (ESS 16 >= 12); where
    # b changes every pair weighs 0
    assert list(envs["hyperparameter"]) == ["a", "a"]
    assert (envs["ess"] >= MIN_ESS).all()
    assert (envs["mu"] == 0.0).all() and (envs["anti"] == 1.0).all()


def test_sign_errors_under_the_minimum_sample_size_are_left_out():
    t = _environment_table()
    t = t[t["seed"] < 3].assign(mu=lambda f: f["gap"])  # 9 pairs: ESS 9 < 12
    assert sign_errors(t, HPS, ["mu"], n_test=1000).empty
    assert len(sign_errors(t, HPS, ["mu"], n_test=1000, min_ess=9)) == 2


def test_each_run_stops_at_its_first_checkpoint_under_the_threshold():
    from normbounds.errors import ArtifactError
    from normbounds.report.ranking_study import ranking_figure, stopped

    results = pd.DataFrame({"variant": "v", "depth": 2, "width": 8, "seed": [0, 0, 0, 1, 1],
                            "epoch": [0, 2, 4, 0, 2], "train_error": [0.9, 0.04, 0.02, 0.9, 0.3]})
    rows, missed = stopped(results, 0.05)
    assert list(rows["epoch"]) == [2] and missed == ["v/2-8-1"]  # the first one, not the last
    results.attrs = {"hyperparameters": ["depth"], "stop_train_error": 0.05}
    with pytest.raises(ArtifactError, match=r"^ranking: 1 of 2 runs reach train error <="
                                            r" ranking.stop_train_error = 0.05, and a ranking"
                                            r" needs two; raise train.epochs or"):
        ranking_figure(results, None)


def test_the_stopping_criterion_is_a_validated_param():
    from normbounds.pipeline.config import ConfigError, parse_params

    from pipeline_helpers import tiny_params

    assert parse_params(tiny_params()).ranking.stop_train_error == 0.05  # the default
    with pytest.raises(ConfigError, match=r"ranking.stop_train_error = 1.5 is invalid: must be"
                                          r" in \[0, 1\]"):
        parse_params({**tiny_params(), "ranking": {"stop_train_error": 1.5}})


@pytest.mark.parametrize(("values", "message"), [
    ({"evaluate": "some"}, "ranking.evaluate = 'some' is invalid: must be one of all, stopping"),
    ({"controls_subset": 0}, "ranking.controls_subset = 0 is invalid: must be >= 1"),
    ({"thresholds": [0.5, 2]}, "ranking.thresholds = [0.5, 2.0] is invalid: every value must"
                               " be in [0, 1]"),
    ({"controls": "yes"}, "ranking.controls = 'yes' is invalid: must be true or false"),
])
def test_the_study_options_are_validated_params(values, message):
    from normbounds.pipeline.config import ConfigError, parse_params

    from pipeline_helpers import tiny_params

    with pytest.raises(ConfigError, match="^params.yaml: " + re.escape(message) + "$"):
        parse_params({**tiny_params(), "ranking": values})
    cfg = parse_params({**tiny_params(), "ranking": {"stop_train_error": 0.07,
                                                      "thresholds": [0.05, 0.07, 0.09]}})
    assert cfg.ranking.stops() == (0.07, 0.05, 0.09)  # the criterion first, once


def test_evaluate_reads_only_each_thresholds_first_checkpoint(monkeypatch):
    from normbounds.pipeline import evaluate

    errors = {"e0": 0.9, "e1": 0.08, "e2": 0.06, "e3": 0.06, "e4": 0.04}
    monkeypatch.setattr(evaluate.checkpoints, "load", lambda path, device: (path, {}))
    monkeypatch.setattr(evaluate, "train_error", lambda model, train, batch: errors[model])
    found = [(i, f"e{i}") for i in range(5)]
    pick = evaluate.stopping_checkpoints
    # <= 0.07: epoch 2 (not 3); <= 0.05: epoch 4; <= 0.09: epoch 1
    assert pick(found, (0.07, 0.05, 0.09), None, "cpu") == [(1, "e1"), (2, "e2"), (4, "e4")]
    assert pick(found, (0.01,), None, "cpu") == [(4, "e4")]  # none: the last, listed missed


def _scores(**psi: tuple[float, float, float, str]) -> dict:
    return {n: {"status": s, "Psi": p, "vs_ours_lo": lo, "vs_ours_hi": hi}
            for n, (p, lo, hi, s) in psi.items()}


def test_a_difference_is_resolved_only_when_its_interval_excludes_zero():
    from normbounds.report.ranking_claims import _versus, resolved

    scores = _scores(ours_corrected=(0.2, 0.0, 0.0, "theorem"),
                     flat=(0.4, 0.05, 0.3, "control"), near=(0.25, -0.01, 0.1, "baseline"),
                     low=(0.0, -0.3, -0.1, "measure"))
    assert [resolved(scores[n]) for n in ("flat", "near", "low")] == ["above", "unresolved",
                                                                     "below"]
    for r in scores.values():
        r |= {"Psi_lo": r["Psi"] - 0.1, "Psi_hi": r["Psi"] + 0.1}
    assert _versus(scores, "near", "trivial baseline").endswith(
        "difference from ours_corrected, 0.050 [-0.010, 0.100], is not resolved")
    assert _versus(scores, "flat", "positive control").endswith("is resolved: it is better")
    assert _versus(scores, None, "positive control") == "no positive control was computed"
