"""The ranking study's figures: plots/study.png (Psi per measure with its bootstrap interval;
the CDF of the sign-errors over environments) and plots/scatter.png (each theorem against
the gap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from normbounds.measure.formulas import BOUND_NAMES
from normbounds.measure.measures import BASELINE_STATUS, CONTROL_STATUS, MEASURE_STATUS
from normbounds.report.legend import colour
from normbounds.report.plots import plt, save
from normbounds.report.ranking_claims import CERTIFICATE

# the bar colour of a measure that is not a bound, by status
STATUS_COLOURS = {MEASURE_STATUS: "#7f7f7f", CONTROL_STATUS: "#2ca02c",
                  BASELINE_STATUS: "#ff7f0e"}


def _colour(name: str, given: dict[str, str]) -> str:
    """A bound's registry colour, black for the certificate, its status's colour otherwise."""
    if name in BOUND_NAMES:
        return colour(name)
    return "#000000" if name == CERTIFICATE else STATUS_COLOURS[given[name]]


def _best(frame: pd.DataFrame, given: dict[str, str], status: str) -> list[str]:
    names = [n for n in frame.index if given[n] == status and np.isfinite(frame.loc[n, "Psi"])]
    return names[:1]  # the frame is sorted by Psi


def _psi_bars(ax: plt.Axes, frame: pd.DataFrame, given: dict[str, str]) -> None:
    names = list(frame.index)[::-1]
    for y, n in enumerate(names):
        psi, lo, hi = frame.loc[n, ["Psi", "Psi_lo", "Psi_hi"]]
        hatch = None if given[n] in ("theorem", *STATUS_COLOURS) else "//"
        ax.barh(y, psi, color=_colour(n, given), hatch=hatch, edgecolor="white")
        ax.plot([lo, hi], [y, y], color="black", lw=1)  # the bootstrap 95% interval
    ax.set(yticks=range(len(names)), yticklabels=[f"{n} ({given[n]})" for n in names],
           xlabel="granulated Kendall coefficient Psi (bootstrap 95% interval)",
           title="Psi per measure")
    ax.tick_params(axis="y", labelsize=6)
    ax.axvline(0, color="black", lw=0.8)


def _cdf(ax: plt.Axes, frame: pd.DataFrame, envs: pd.DataFrame, given: dict[str, str]) -> None:
    if not len(envs):
        ax.text(0.5, 0.5, "no environment reaches\nthe effective sample size 12",
                ha="center", transform=ax.transAxes)
    drawn = [n for n in frame.index if given[n] == "theorem"]
    drawn += _best(frame, given, CONTROL_STATUS) + _best(frame, given, BASELINE_STATUS)
    for n in drawn if len(envs) else []:
        values = np.sort(envs[n].to_numpy())
        ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post",
                color=_colour(n, given), ls="-" if n in BOUND_NAMES else "--",
                label=f"{n} ({given[n]})")
    ax.set(xlabel="sign-error in an environment", ylabel="fraction of environments",
           xlim=(-0.02, 1.02), title="Robust sign-error: CDF over environments")
    if len(envs):
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))


def _scatter(table: pd.DataFrame, given: dict[str, str], png: Path) -> None:
    theorems = [n for n in [*BOUND_NAMES, CERTIFICATE] if given[n] == "theorem"]
    fig, axes = plt.subplots(1, len(theorems), figsize=(4 * len(theorems), 3.6), squeeze=False)
    for ax, name in zip(axes[0], theorems, strict=True):
        ax.scatter(table["gap"], table[name], s=14, color=_colour(name, given))
        ax.set(yscale="log", xlabel="generalization gap", title=name,
               ylabel="value" if ax is axes[0][0] else None)
    fig.tight_layout()
    save(fig, png, dpi=110)
    plt.close(fig)


def ranking_plots(frame: pd.DataFrame, envs: pd.DataFrame, table: pd.DataFrame,
                  given: dict[str, str], plots: Path) -> None:
    """Both figures: `frame` the scores sorted by Psi, `envs` the environments' sign-errors,
    `table` the runs' values, `given` each measure's status."""
    fig, (ax_p, ax_c) = plt.subplots(1, 2, figsize=(14, 0.22 * len(frame) + 2.5))
    _psi_bars(ax_p, frame, given)
    _cdf(ax_c, frame, envs, given)
    fig.tight_layout()
    save(fig, plots / "study.png", dpi=110)
    plt.close(fig)
    _scatter(table, given, plots / "scatter.png")
