"""The ranking study's verdicts, one per claim of the seed paper, generated from its numbers.

- tighter: the ratio of the corrected bound to every other theorem bound, network by network;
- sparsity: does the gap move with the sparsity axis, and does each theorem bound? (a
  stratified permutation test, uncertainty.sparsity_test), and each bound's psi_sparsity;
- explains: the corrected bound's Psi and psi_i beside the best positive control and the best
  trivial baseline.

A difference between two measures is called resolved only when the bootstrap 95% interval
of the difference of their Psi excludes 0; a p-value under 0.05 is what "moves" means.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from normbounds.measure.formulas import CERTIFYING
from normbounds.measure.measures import BASELINE_STATUS, CONTROL_STATUS
from normbounds.report.uncertainty import codes_of, sparsity_test

ALPHA = 0.05  # the level of every test the verdicts read
CERTIFICATE = "certificate"  # margin error + the certifying bound, ranked as a measure
# the hyperparameter the varied model.* keys make (pipeline.results.load_study)
SPARSITY = "sparsity"
CLAIMS = ("tighter", "sparsity", "explains")
QUESTIONS = {"tighter": "Tighter?", "sparsity": "Sparsity drives generalization?",
             "explains": "Explains generalization?"}


def _g(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _f(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _theorems(scores: dict) -> list[str]:
    """The other bounds that are theorems (the certificate and ours_corrected excluded)."""
    return [n for n, r in scores.items() if r["status"] == "theorem"
            and n not in (CERTIFYING, CERTIFICATE)]


def tighter(table: pd.DataFrame, scores: dict) -> tuple[str, dict]:
    ours = table[CERTIFYING].to_numpy(float)
    ratios = {}
    for name in _theorems(scores):
        r = ours / table[name].to_numpy(float)
        ratios[name] = {"median": float(np.median(r)), "min": float(r.min()),
                        "max": float(r.max())}
    cert = table[CERTIFICATE].to_numpy(float)
    to_gap = ours / np.maximum(table["gap"].to_numpy(float), 1e-12)
    parts = [f"{_g(v['median'])} ({_g(v['min'])} to {_g(v['max'])}) times {n}"
             for n, v in ratios.items()]
    text = (f"{CERTIFYING} is {', and '.join(parts) or 'the only theorem bound'} (median and"
            f" range over the {len(table)} networks); it is a median {_g(np.median(to_gap))}"
            f" times the gap, and the certificate (margin error + {CERTIFYING}) is"
            f" non-vacuous (< 1) on {int((cert < 1).sum())} of {len(table)} networks"
            f" (median {_g(np.median(cert))}).")
    return text, {"ratios": ratios, "to_gap_median": float(np.median(to_gap)),
                  "certificate_non_vacuous": int((cert < 1).sum())}


def _moves(table: pd.DataFrame, hps: list[str], column: str, log: bool) -> dict:
    values = table[column].to_numpy(float)
    values = np.log(values) if log else values
    codes = codes_of(table, hps)
    p = sparsity_test(values, codes, hps.index(SPARSITY)) if np.isfinite(values).all() \
        else math.nan
    means = table.groupby(SPARSITY, sort=True)[column].mean()
    return {"p": p, "means": {str(k): float(v) for k, v in means.items()}}


def _moves_text(name: str, test: dict) -> str:
    verb = "moves" if test["p"] < ALPHA else "does not move detectably"
    means = ", ".join(f"{k} {_g(v)}" for k, v in test["means"].items())
    return f"{name} {verb} with sparsity (p = {_f(test['p'])}; mean {means})"


def sparsity(table: pd.DataFrame, hps: list[str], scores: dict) -> tuple[str, dict]:
    if SPARSITY not in hps:
        return "not tested: the grid varies no sparsity knob.", {}
    gap = _moves(table, hps, "gap", log=False)
    bounds = {n: _moves(table, hps, n, log=True)
              | {"psi_sparsity": scores[n][f"psi_{SPARSITY}"],
                 "p_psi_sparsity": scores[n][f"p_psi_{SPARSITY}"]}
              for n in [CERTIFYING, *_theorems(scores)]}
    parts = [f"{_moves_text(n, b)}, psi_sparsity {_f(b['psi_sparsity'])}"
             f" (p = {_f(b['p_psi_sparsity'])})" for n, b in bounds.items()]
    text = (f"{_moves_text('The gap', gap)}, stratified permutation test within each"
            f" setting of the other hyperparameters; " + "; ".join(parts) + ".")
    return text, {"gap": gap, "bounds": bounds}


def _best(scores: dict, status: str) -> str | None:
    """The measure of a status with the highest Psi (None if none is finite)."""
    rows = {n: r["Psi"] for n, r in scores.items() if r["status"] == status
            and r["Psi"] is not None and math.isfinite(r["Psi"])}
    return max(rows, key=rows.get) if rows else None


def resolved(row: dict) -> str:
    """'above' / 'below' ours_corrected when the interval of the Psi difference excludes 0,
    'unresolved' otherwise."""
    lo, hi = row["vs_ours_lo"], row["vs_ours_hi"]
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return "above" if lo > 0 else "below" if hi < 0 else "unresolved"


def _versus(scores: dict, name: str | None, what: str) -> str:
    if name is None:
        return f"no {what} was computed"
    r = scores[name]
    diff = r["Psi"] - scores[CERTIFYING]["Psi"]
    word = {"above": "resolved: it is better", "below": "resolved: it is worse",
            "unresolved": "not resolved"}.get(resolved(r), "not resolved")
    return (f"the best {what}, {name}, has Psi {_interval(r, 'Psi')}; its difference from"
            f" {CERTIFYING}, {_f(diff)} [{_f(r['vs_ours_lo'])}, {_f(r['vs_ours_hi'])}], is"
            f" {word}")


def _interval(r: dict, key: str) -> str:
    return f"{_f(r[key])} [{_f(r[key + '_lo'])}, {_f(r[key + '_hi'])}]"


def explains(scores: dict, hps: list[str]) -> tuple[str, dict]:
    ours = scores[CERTIFYING]
    psis = ", ".join(f"psi_{h} {_f(ours[f'psi_{h}'])}" for h in hps)
    control, baseline = _best(scores, CONTROL_STATUS), _best(scores, BASELINE_STATUS)
    text = (f"{CERTIFYING} has Psi {_interval(ours, 'Psi')} (p = {_f(ours['p_Psi'])}; {psis});"
            f" {_versus(scores, control, 'positive control')};"
            f" {_versus(scores, baseline, 'trivial baseline')}.")
    return text, {"best_control": control, "best_baseline": baseline}


def claims(numbers: dict, table: pd.DataFrame, hps: list[str]) -> dict:
    """{"claims": one sentence per claim, "claim_numbers": what each sentence reads}."""
    scores = numbers["scores"]
    made = {"tighter": tighter(table, scores), "sparsity": sparsity(table, hps, scores),
            "explains": explains(scores, hps)}
    return {"claims": {k: v[0] for k, v in made.items()},
            "claim_numbers": {k: v[1] for k, v in made.items()}}


def verdict(numbers: dict) -> str:
    """One sentence: the corrected bound's Psi, with its interval and p-value, its shared
    rank, and which of its differences from the other measures are resolved."""
    scores = numbers["scores"]
    ours = scores[CERTIFYING]
    sides = [resolved(r) for n, r in scores.items() if n != CERTIFYING]
    return (f"Over the ranking study's {numbers['kept']} networks (the permutation null"
            f" resolves |Psi| >= {_f(numbers['psi_resolved'])} at p < {ALPHA:g}), the corrected"
            f" bound ({CERTIFYING}) has the granulated coefficient Psi"
            f" {_interval(ours, 'Psi')} (p = {_f(ours['p_Psi'])}), shared rank {ours['rank']}"
            f" of {len(scores)} measures: {sides.count('above')} measures are resolved above"
            f" it, {sides.count('below')} below, and {sides.count('unresolved')} not resolved"
            " (bootstrap 95% interval of the difference in Psi).")


def summary_lines(numbers: dict) -> list[str]:
    """The report's first lines, and the README's ranking block: the verdict, then one
    line per claim."""
    return [numbers["verdict"], "",
            *(f"- **{QUESTIONS[c]}** {numbers['claims'][c]}" for c in CLAIMS)]
