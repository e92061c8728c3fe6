"""The ranking study (studies/ranking): every bound, classic measure, positive control and
trivial baseline scored as a predictor of the generalization gap over a grid of trained
networks, each score with its uncertainty (docs/studies.md, "The ranking study").

Each run is stopped at its FIRST saved checkpoint with train error at most
`ranking.stop_train_error` (params.yaml). A run stopped there has exactly the weights of
that checkpoint of a run trained on (same loop, seeds, data order and learning rates up
to it), so the pipeline trains the epoch budget once and the study reads the stopping
checkpoint; a run that never reaches the threshold is listed and left out. The
sensitivity table reads every other threshold of `ranking.thresholds` the same way.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from normbounds.errors import ArtifactError
from normbounds.measure.formulas import BOUND_NAMES, CERTIFYING, status, statuses_of
from normbounds.measure.measures import MEASURES, measure_values
from normbounds.report.ranking import (
    MIN_ESS,
    conditional_mi,
    granulated,
    kendall_tau,
    sign_errors,
)
from normbounds.report.ranking_claims import CERTIFICATE, claims, verdict
from normbounds.report.ranking_plots import ranking_plots
from normbounds.report.ranking_tables import ranking_markdown
from normbounds.report.uncertainty import (
    bootstrap,
    codes_of,
    permutation,
    psi_tau,
    shared_ranks,
)

__all__ = ["RANKED", "ranking_figure", "ranking_markdown", "stopped"]

RANKED: tuple[str, ...] = (*BOUND_NAMES, CERTIFICATE, *(m.name for m in MEASURES))
RUN = ["variant", "depth", "width", "seed"]


def stopped(results: pd.DataFrame, stop: float) -> tuple[pd.DataFrame, list[str]]:
    """One row per run whose train error reaches `stop` (its first such checkpoint), and
    the names of the runs that never do."""
    kept, missed = [], []
    for key, run in results.groupby(RUN, sort=True):
        met = run[run["train_error"] <= stop].sort_values("epoch")
        if met.empty:
            missed.append("{}/{}-{}-{}".format(*key))
        else:
            kept.append(met.index[0])
    return results.loc[kept].reset_index(drop=True), missed


def ranked_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The runs' values of every ranked measure (bounds, certificate, classic measures)."""
    classic = pd.DataFrame([measure_values(r) for _, r in rows.iterrows()], index=rows.index)
    return pd.concat([rows.drop(columns=[c for c in classic if c in rows]), classic], axis=1)


def ranked_statuses(results: pd.DataFrame) -> dict[str, str]:
    given = statuses_of(results)
    out = {name: status(name, given) for name in BOUND_NAMES}
    return out | {CERTIFICATE: out[CERTIFYING]} | {m.name: m.status for m in MEASURES}


def _ranks(table: pd.DataFrame) -> np.ndarray:
    """(measures, runs) ranks of every ranked measure: the same pairwise order (ties kept),
    finite where a value is +-inf; nan stays nan."""
    return table[list(RANKED)].astype(float).rank(method="min").to_numpy().T


def _point(table: pd.DataFrame, hps: list[str], name: str, n_envs: pd.DataFrame) -> dict:
    psi_all, psi = granulated(table, hps, name)
    cmi, given = conditional_mi(table, hps, name)
    return {"tau": kendall_tau(table[name], table["gap"]), "Psi": psi_all,
            **{f"psi_{h}": v for h, v in psi.items()}, "cmi": cmi,
            "cmi_given": ", ".join(given) or "nothing",
            "robust_sign_error": n_envs[name].max() if len(n_envs) else math.nan}


def scores(table: pd.DataFrame, hps: list[str], n_test: int
           ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Per measure, sorted by Psi (ties share a rank): tau and Psi with permutation p-values
    and bootstrap 95% intervals, psi per hyperparameter (with its p-value), cmi and the
    conditioning set, the robust sign-error, and the bootstrap interval of its Psi minus
    ours_corrected's; the sign-error of every environment kept; the smallest |Psi| the
    permutation null resolves at p < 0.05 (the corrected bound's, and the largest over
    the measures)."""
    envs = sign_errors(table, hps, RANKED, n_test)
    mu, gap, codes = _ranks(table), table["gap"].to_numpy(float), codes_of(table, hps)
    ours = RANKED.index(CERTIFYING)
    perm = permutation(mu, gap, codes)
    boot = bootstrap(mu, gap, codes, pairs=[(k, ours) for k in range(len(RANKED))])
    out = []
    for k, name in enumerate(RANKED):
        row = _point(table, hps, name, envs)
        row |= {"p_tau": perm["p_tau"][k], "tau_lo": boot["ci_tau"][k, 0],
                "tau_hi": boot["ci_tau"][k, 1], "p_Psi": perm["p_Psi"][k],
                "Psi_lo": boot["ci_Psi"][k, 0], "Psi_hi": boot["ci_Psi"][k, 1],
                **{f"p_psi_{h}": perm["p_psi"][k, i] for i, h in enumerate(hps)},
                "vs_ours_lo": boot["ci_diff"][k, 0], "vs_ours_hi": boot["ci_diff"][k, 1]}
        out.append({"measure": name, **row})
    frame = pd.DataFrame(out).set_index("measure")
    frame = frame.sort_values("Psi", ascending=False, kind="stable")
    frame.insert(0, "rank", shared_ranks(frame["Psi"].to_numpy()))
    return frame, envs, {"psi_resolved": float(perm["psi_resolved"][ours]),
                         "psi_resolved_max": float(np.nanmax(perm["psi_resolved"]))}


def sensitivity(results: pd.DataFrame, hps: list[str], stops: tuple[float, ...],
                given: dict[str, str]) -> list[dict]:
    """Per stopping threshold: the runs kept, ours_corrected's Psi (permutation p) and
    shared rank, and the measures sharing the first rank."""
    rows = []
    for stop in stops:
        kept, missed = stopped(results, stop)
        row: dict = {"threshold": stop, "kept": len(kept), "runs": len(kept) + len(missed)}
        if len(kept) >= 2:
            table = ranked_table(kept)
            mu, gap, codes = _ranks(table), table["gap"].to_numpy(float), codes_of(table, hps)
            _, psi, _ = psi_tau(mu, gap[None], codes)
            p = permutation(mu, gap, codes)["p_Psi"]
            ranks = shared_ranks(psi[0])
            ours = RANKED.index(CERTIFYING)
            firsts = [n for n, r in zip(RANKED, ranks, strict=True) if r.rstrip("=") == "1"]
            row |= {"psi_ours_corrected": float(psi[0, ours]), "p_ours_corrected": float(p[ours]),
                    "rank_ours_corrected": ranks[ours], "best": firsts,
                    "best_psi": float(np.nanmax(psi[0])),
                    "best_status": sorted({given[n] for n in firsts})}
        rows.append(row)
    return rows


def environments(table: pd.DataFrame, hps: list[str]) -> dict:
    """How many environments the grid has, how many reach the minimum effective sample
    size (by hyperparameter), and the largest effective sample size of any."""
    every = sign_errors(table, hps, [], int(table["n_test"].iloc[0]), min_ess=0.0)
    kept = every[every["ess"] >= MIN_ESS - 1e-9]
    return {"environments": len(kept), "environments_all": len(every),
            "environments_by": {h: int((kept["hyperparameter"] == h).sum()) for h in hps},
            "ess_max": float(every["ess"].max()) if len(every) else 0.0}


def gap_by(table: pd.DataFrame, hp: str) -> dict[str, dict[str, float]]:
    """The gap within each level of `hp`: mean, SD, min, max, and the SD of a test error
    estimated on n_test points at that mean (binomial: the noise floor of one gap)."""
    out = {}
    for level, part in table.groupby(hp, sort=True):
        test, n = part["test_error"].mean(), part["n_test"].iloc[0]
        out[str(level)] = {"runs": int(len(part)), "mean": part["gap"].mean(),
                           "sd": part["gap"].std(ddof=1), "min": part["gap"].min(),
                           "max": part["gap"].max(),
                           "noise_sd": math.sqrt(test * (1 - test) / n)}
    return out


def _finite(value: object) -> object:
    """A number for JSON: inf and nan become None; lists and strings as they are."""
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return float(value) if math.isfinite(value) else None


def ranking_figure(results: pd.DataFrame, plots: Path) -> dict:
    """plots/study.png (Psi per measure with its interval, the sign-error CDFs) and
    plots/scatter.png (each theorem against the gap); returns the numbers
    (metrics/study.json, reports/study.md)."""
    hps = list(results.attrs["hyperparameters"])
    stop = results.attrs["stop_train_error"]
    rows, missed = stopped(results, stop)
    if len(rows) < 2:
        raise ArtifactError(f"ranking: {len(rows)} of {len(rows) + len(missed)} runs reach train"
                            f" error <= ranking.stop_train_error = {stop:g}, and a ranking"
                            " needs two; raise train.epochs or ranking.stop_train_error")
    table = ranked_table(rows)
    given = ranked_statuses(results)
    frame, envs, power = scores(table, hps, int(table["n_test"].iloc[0]))
    ranking_plots(frame, envs, table, given, plots)
    numbers = {
        "stop_train_error": stop, "runs": len(rows) + len(missed), "kept": len(rows),
        "missed": missed, "hyperparameters": hps,
        **power, **environments(table, hps),
        "gap_range": [float(table["gap"].min()), float(table["gap"].max())],
        "gap_by_m": gap_by(table, "m"),
        "sensitivity": sensitivity(results, hps, results.attrs.get("thresholds", (stop,)),
                                   given),
        "tau_ours_corrected": frame.loc[CERTIFYING, "tau"],
        "psi_ours_corrected": frame.loc[CERTIFYING, "Psi"],
        "scores": {n: {"status": given[n], **r} for n, r in frame.iterrows()}}
    numbers |= claims(numbers, table, hps)
    numbers["verdict"] = verdict(numbers)
    return _finite(numbers)
