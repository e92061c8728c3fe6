"""The ranking study (studies/ranking): every bound and classic measure scored as a predictor
of the generalization gap over a grid of trained networks (docs/studies.md).

Each run is stopped at its FIRST saved checkpoint with train error at most
`ranking.stop_train_error` (params.yaml). A run stopped there has exactly the weights of
that checkpoint of a run trained on (same loop, seeds, data order and learning rates up
to it), so the pipeline trains the epoch budget once and the study reads the stopping
checkpoint; a run that never reaches the threshold is listed and left out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from normbounds.errors import ArtifactError
from normbounds.measure.formulas import BOUND_NAMES, CERTIFYING, colour, status, statuses_of
from normbounds.measure.measures import MEASURE_STATUS, MEASURES, measure_values
from normbounds.report.plots import plt, save
from normbounds.report.ranking import conditional_mi, granulated, kendall_tau, sign_errors

CERTIFICATE = "certificate"
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
    return out | {CERTIFICATE: out[CERTIFYING]} | {m.name: MEASURE_STATUS for m in MEASURES}


def scores(table: pd.DataFrame, hps: list[str], n_test: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per measure: tau, Psi, psi per hyperparameter, K and its S, the robust
    sign-error; and the sign-error of every environment kept."""
    envs = sign_errors(table, hps, RANKED, n_test)
    out = []
    for name in RANKED:
        psi_all, psi = granulated(table, hps, name)
        k, k_set = conditional_mi(table, hps, name)
        out.append({"measure": name, "tau": kendall_tau(table[name], table["gap"]),
                    "Psi": psi_all, **{f"psi_{h}": v for h, v in psi.items()}, "K": k,
                    "K_given": ", ".join(k_set) or "nothing",
                    "robust_sign_error": envs[name].max() if len(envs) else math.nan})
    frame = pd.DataFrame(out).set_index("measure")
    return frame.sort_values("Psi", ascending=False, kind="stable"), envs


def verdict(table: pd.DataFrame, given: dict[str, str]) -> str:
    """One sentence: does the corrected bound predict better than the other valid bounds
    and the baselines (by Psi)?"""
    valid = [n for n in table.index if given[n] == "theorem" and n != CERTIFYING]
    baselines = [n for n in table.index if given[n] == MEASURE_STATUS]
    ours = table.loc[CERTIFYING, "Psi"]
    rank = list(table.index).index(CERTIFYING) + 1
    best_valid, best_base = table.loc[valid, "Psi"].idxmax(), table.loc[baselines, "Psi"].idxmax()

    def side(best: str) -> str:
        better = ours > table.loc[best, "Psi"]
        return (f"{'better' if better else 'no better'} than the best"
                f" {'other valid bound' if best in valid else 'baseline'}, {best}"
                f" (Psi {table.loc[best, 'Psi']:.3f})")

    return (f"Over the ranking study's networks, the corrected bound ({CERTIFYING}) ranks"
            f" {rank} of {len(table)} measures by the granulated coefficient Psi"
            f" ({ours:.3f}): it predicts generalization {side(best_valid)}, and"
            f" {side(best_base)}.")


def _fmt(value: object) -> str:
    if value is None or isinstance(value, str):
        return "n/a" if value is None else value
    return f"{value:.3f}"


def ranking_markdown(numbers: dict) -> str:
    """reports/study.md: the verdict, the runs, and one row per measure sorted by Psi."""
    rows = numbers["scores"]
    cols = [c for c in next(iter(rows.values())) if c not in ("status", "K_given")]
    missed = numbers["missed"]
    lines = [numbers["verdict"], "",
             f"Runs: {numbers['kept']} of {numbers['runs']} met the stopping criterion (train"
             f" error <= {numbers['stop_train_error']:g} at a saved checkpoint); left out:"
             f" {', '.join(missed) if missed else 'none'}. Hyperparameters:"
             f" {', '.join(numbers['hyperparameters'])}. Environments with an effective"
             f" sample size of at least 12: {numbers['environments']}. Their gaps span"
             f" {numbers['gap_range'][0]:.3f} to {numbers['gap_range'][1]:.3f}.", "",
             "| measure | status | " + " | ".join(cols) + " | K given |",
             "| --- | --- | " + " | ".join("---:" for _ in cols) + " | --- |"]
    lines += [f"| {name} | {r['status']} | " + " | ".join(_fmt(r[c]) for c in cols)
              + f" | {r['K_given']} |" for name, r in rows.items()]
    return "\n".join(lines) + "\n"


def _finite(value: object) -> object:
    """A number for JSON: inf and nan become None."""
    if isinstance(value, str):
        return value
    return float(value) if math.isfinite(value) else None


def _colour(name: str) -> str | None:
    """A bound's registry colour, black for the certificate, matplotlib's cycle otherwise."""
    return colour(name) if name in BOUND_NAMES else "#000000" if name == CERTIFICATE else None


def _figure(table: pd.DataFrame, envs: pd.DataFrame, given: dict[str, str], png: Path) -> None:
    fig, (ax_p, ax_c) = plt.subplots(1, 2, figsize=(13.5, 5))
    names = list(table.index)[::-1]
    colours = [_colour(n) if n in BOUND_NAMES or n == CERTIFICATE else "#7f7f7f" for n in names]
    hatches = [None if given[n] in ("theorem", MEASURE_STATUS) else "//" for n in names]
    for y, (n, c, h) in enumerate(zip(names, colours, hatches, strict=True)):
        ax_p.barh(y, table.loc[n, "Psi"], color=c, hatch=h, edgecolor="white")
    ax_p.set(yticks=range(len(names)), yticklabels=[f"{n} ({given[n]})" for n in names],
             xlabel="granulated Kendall coefficient Psi", title="Psi per measure")
    ax_p.axvline(0, color="black", lw=0.8)
    for n in table.index:  # the bounds in their colours; the classic measures dashed
        if len(envs):
            values = np.sort(envs[n].to_numpy())
            ax_c.step(values, np.arange(1, len(values) + 1) / len(values), where="post",
                      color=_colour(n), ls="-" if n in BOUND_NAMES else "--", label=n)
    if not len(envs):
        ax_c.text(0.5, 0.5, "no environment reaches\nthe effective sample size 12",
                  ha="center", transform=ax_c.transAxes)
    ax_c.set(xlabel="sign-error in an environment", ylabel="fraction of environments",
             xlim=(-0.02, 1.02), title="Robust sign-error: CDF over environments")
    if len(envs):
        ax_c.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    save(fig, png, dpi=110)
    plt.close(fig)


def _scatter(table: pd.DataFrame, given: dict[str, str], png: Path) -> None:
    theorems = [n for n in RANKED if given[n] == "theorem"]
    fig, axes = plt.subplots(1, len(theorems), figsize=(4 * len(theorems), 3.6), squeeze=False)
    for ax, name in zip(axes[0], theorems, strict=True):
        ax.scatter(table["gap"], table[name], s=14, color=_colour(name))
        ax.set(yscale="log", xlabel="generalization gap", title=name,
               ylabel="value" if ax is axes[0][0] else None)
    fig.tight_layout()
    save(fig, png, dpi=110)
    plt.close(fig)


def ranking_figure(results: pd.DataFrame, plots: Path) -> dict:
    """plots/study.png (Psi per measure, the sign-error CDFs) and plots/scatter.png (each
    theorem against the gap); returns the numbers (metrics/study.json, reports/study.md)."""
    hps = list(results.attrs["hyperparameters"])
    stop = results.attrs["stop_train_error"]
    rows, missed = stopped(results, stop)
    if len(rows) < 2:
        raise ArtifactError(f"ranking: {len(rows)} of {len(rows) + len(missed)} runs reach train"
                            f" error <= ranking.stop_train_error = {stop:g}, and a ranking"
                            " needs two; raise train.epochs or ranking.stop_train_error")
    table = ranked_table(rows)
    given = ranked_statuses(results)
    frame, envs = scores(table, hps, int(table["n_test"].iloc[0]))
    _figure(frame, envs, given, plots / "study.png")
    _scatter(table, given, plots / "scatter.png")
    best = frame.index[0]
    return {"stop_train_error": stop, "runs": len(rows) + len(missed), "kept": len(rows),
            "missed": missed,
            "hyperparameters": hps, "environments": len(envs),
            "gap_range": [float(table["gap"].min()), float(table["gap"].max())],
            "tau_ours_corrected": _finite(frame.loc[CERTIFYING, "tau"]),
            "psi_ours_corrected": _finite(frame.loc[CERTIFYING, "Psi"]),
            "best_measure": best, "best_psi": _finite(frame.loc[best, "Psi"]),
            "verdict": verdict(frame, given),
            "scores": {n: {"status": given[n], **{k: _finite(v) for k, v in r.items()}}
                       for n, r in frame.iterrows()}}
