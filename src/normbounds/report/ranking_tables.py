"""reports/study.md of the ranking study: the verdict and the claims, then the tables."""

from __future__ import annotations

import math

from normbounds.measure.formulas import CERTIFYING
from normbounds.report.ranking_claims import resolved, summary_lines


def _f(value: object) -> str:
    if isinstance(value, str):
        return value
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _ci(r: dict, key: str) -> str:
    return f"{_f(r[key])} [{_f(r[key + '_lo'])}, {_f(r[key + '_hi'])}]"


def scores_table(numbers: dict) -> list[str]:
    """One row per measure, sorted by Psi, ties sharing a rank."""
    hps = numbers["hyperparameters"]
    head = ["measure", "status", "rank", "tau [95% CI]", "p(tau)", "Psi [95% CI]", "p(Psi)",
            *(f"psi_{h} (p)" for h in hps), "cmi (given)", "robust sign-error",
            f"Psi - {CERTIFYING} [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "| --- | --- | ---: |" + " ---: |" * (len(head) - 3)]
    for name, r in numbers["scores"].items():
        diff = "" if name == CERTIFYING else (
            f"[{_f(r['vs_ours_lo'])}, {_f(r['vs_ours_hi'])}] {resolved(r)}")
        cells = [name, r["status"], r["rank"], _ci(r, "tau"), _f(r["p_tau"]), _ci(r, "Psi"),
                 _f(r["p_Psi"]), *(f"{_f(r[f'psi_{h}'])} ({_f(r[f'p_psi_{h}'])})" for h in hps),
                 f"{_f(r['cmi'])} ({r['cmi_given']})", _f(r["robust_sign_error"]), diff]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def sensitivity_table(numbers: dict) -> list[str]:
    lines = [f"| train error <= | runs kept | Psi of {CERTIFYING} (p) | its rank | first rank"
             " (Psi) |", "| ---: | ---: | ---: | ---: | --- |"]
    for r in numbers["sensitivity"]:
        if "best" not in r:
            lines.append(f"| {r['threshold']:g} | {r['kept']} of {r['runs']} | n/a | n/a | n/a |")
            continue
        lines.append(f"| {r['threshold']:g} | {r['kept']} of {r['runs']} |"
                     f" {_f(r['psi_ours_corrected'])} ({_f(r['p_ours_corrected'])}) |"
                     f" {r['rank_ours_corrected']} | {', '.join(r['best'])}"
                     f" ({_f(r['best_psi'])}) |")
    return lines


def gap_table(numbers: dict) -> list[str]:
    lines = ["| m | runs | mean gap | SD | min | max | SD of one test error |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {m} | {r['runs']} | {_f(r['mean'])} | {_f(r['sd'])} | {_f(r['min'])} |"
              f" {_f(r['max'])} | {_f(r['noise_sd'])} |" for m, r in numbers["gap_by_m"].items()]
    return lines


def ranking_markdown(numbers: dict) -> str:
    """The verdict and the claims (the README's block), the runs, the scores, the
    sensitivity to the stopping threshold, the gap within each m."""
    missed = numbers["missed"]
    envs = ", ".join(f"{n} {h}" for h, n in numbers["environments_by"].items())
    lines = [*summary_lines(numbers), "", "## Scores", "",
             f"Runs: {numbers['kept']} of {numbers['runs']} met the stopping criterion (train"
             f" error <= {numbers['stop_train_error']:g} at a saved checkpoint); left out:"
             f" {', '.join(missed) if missed else 'none'}. Hyperparameters:"
             f" {', '.join(numbers['hyperparameters'])}. Environments with an effective"
             f" sample size of at least 12: {numbers['environments']} of"
             f" {numbers['environments_all']} ({envs or 'none'}; the largest effective"
             f" sample size is {numbers['ess_max']:.1f})."
             f" The gaps span {numbers['gap_range'][0]:.3f} to {numbers['gap_range'][1]:.3f}."
             " p: two-sided permutation p-value (gaps shuffled across networks); intervals:"
             " bootstrap over networks; cmi: Jiang et al.'s conditional mutual information,"
             " plug-in, minimised over |S| <= 2.", "", *scores_table(numbers), "",
             "## Sensitivity to the stopping threshold", "", *sensitivity_table(numbers), "",
             "## The gap within one training-set size", "", *gap_table(numbers)]
    return "\n".join(lines) + "\n"
