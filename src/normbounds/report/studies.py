"""Studies beyond Figure 1: one figure and one metrics file per study.

A study pipeline (studies/<name>/) trains and evaluates every variant of its
params.yaml (`variants:`) with the ordinary stages; `pipeline.results.load_study`
stacks all their results, and each `<kind>_figure` draws one question and returns
the headline numbers that go to metrics/study.json.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from normbounds.measure.formulas import BOUND_NAMES, statuses_of
from normbounds.report.legend import label
from normbounds.report.plots import plt, save, style
from normbounds.report.ranking_study import ranking_figure, ranking_markdown
from normbounds.report.reports import final_rows


def _final_means(results: pd.DataFrame, by: str) -> pd.DataFrame:
    """Seed means of the last checkpoint, one row per value of `by` (in first-seen order)."""
    last = final_rows(results)
    keys = [k for k in [*BOUND_NAMES, "train_error", "test_error", "gap", "deg_l1", "pred_l1"]
            if k in last]
    return last.groupby(by)[keys].mean().reindex(pd.unique(results[by]))  # params order


def _numbers(table: pd.DataFrame) -> dict:
    return {str(k): {c: float(v) for c, v in row.items()} for k, row in table.iterrows()}


def sparsity_figure(results: pd.DataFrame, plots: Path) -> dict:
    """Each bound at the end of training per architecture (log scale); errors beside."""
    given = statuses_of(results)  # each bound's status, as its results carry it
    table = _final_means(results, "variant")
    fig, (ax_b, ax_e) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[2, 1])
    x, step = np.arange(len(table)), 0.8 / len(BOUND_NAMES)
    for i, name in enumerate(BOUND_NAMES):
        color, dash = style(name, given)  # a bound that is not a theorem: hatched
        ax_b.bar(x + (i - (len(BOUND_NAMES) - 1) / 2) * step, table[name], step, color=color,
                 hatch=None if dash == "-" else "//", edgecolor="white", label=label(name, given))
    ax_b.set(yscale="log", xticks=x, xticklabels=table.index, ylabel="bound at the last epoch",
             title="Bounds by architecture, sparse (left) to dense (right)")
    ax_b.legend(fontsize=8)
    for i, name in enumerate(["train_error", "test_error"]):
        ax_e.bar(x + (i - 0.5) * 0.4, table[name], 0.4, color=style(name)[0], label=label(name))
    ax_e.set(xticks=x, xticklabels=table.index, ylabel="error", title="Errors")
    ax_e.legend(fontsize=8)
    _finish(fig, plots)
    return _numbers(table)


def depth_figure(results: pd.DataFrame, plots: Path) -> dict:
    """Each bound against depth L (log scale) with its fitted growth factor per layer."""
    given = statuses_of(results)  # each bound's status, as its results carry it
    table = _final_means(results, "depth").sort_index()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    out = {"by_depth": _numbers(table), "growth_per_layer": {}}
    for name in [*BOUND_NAMES, "gap"]:
        values = table[name].to_numpy()
        factor = float(np.exp(_log_slope(table.index.to_numpy(), values)))  # per layer
        out["growth_per_layer"][name] = factor
        color, dash = style(name, given)
        ax.plot(table.index, np.where(values > 0, values, np.nan), "o", ls=dash, color=color,
                label=f"{label(name, given)} (x{factor:.3g} per layer)")
    ax.set(yscale="log", xlabel="depth L (conv layers)", ylabel="value at the last epoch",
           title="Bounds against depth")
    ax.legend(fontsize=8)
    _finish(fig, plots)
    return out


def _log_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against x over the positive y (nan if under 2)."""
    keep = y > 0
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(x[keep], np.log(y[keep]), 1)[0])


def sample_size_figure(results: pd.DataFrame, plots: Path) -> dict:
    """Each bound and the real gap against m on log-log axes, fitted slope per curve."""
    given = statuses_of(results)  # each bound's status, as its results carry it
    last = final_rows(results)
    table = last.groupby("m")[[*BOUND_NAMES, "gap", "train_error", "test_error"]].mean()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    out = {"by_m": _numbers(table), "slope": {}}
    m = table.index.to_numpy(dtype=float)
    for name in [*BOUND_NAMES, "gap"]:
        values = table[name].to_numpy()
        out["slope"][name] = slope = _log_slope(np.log(m), values)  # log-log
        color, dash = style(name, given)
        ax.plot(m, np.where(values > 0, values, np.nan), "o", ls=dash, color=color,
                label=f"{label(name, given)} (slope {slope:.2f})")
    ax.set(xscale="log", yscale="log", xlabel="training-set size m",
           ylabel="value at the last epoch", title="Bounds and gap against sample size")
    ax.legend(fontsize=8)
    _finish(fig, plots)
    return out


def label_noise_figure(results: pd.DataFrame, plots: Path) -> dict:
    """Per noise level: our bound (as printed and corrected), train and test error over
    training."""
    given = statuses_of(results)  # each bound's status, as its results carry it
    levels = sorted(results["label_noise"].unique())
    fig, axes = plt.subplots(1, len(levels), figsize=(4 * len(levels), 3.8), squeeze=False,
                             sharey=True)
    for ax, level in zip(axes[0], levels, strict=True):
        group = results[results["label_noise"] == level].groupby("epoch")
        for name in ("ours", "ours_corrected", "train_error", "test_error"):
            color, dash = style(name, given)
            ax.plot(group[name].mean(), color=color, ls=dash, label=label(name, given))
        ax.set(yscale="log", xlabel="epoch", title=f"{level:.0%} of the labels random")
    axes[0][0].set_ylabel("value")
    axes[0][0].legend(fontsize=8)
    _finish(fig, plots)
    table = final_rows(results).groupby("label_noise")[[*BOUND_NAMES, "train_error", "test_error",
                                                                 "gap"]].mean()
    return _numbers(table)


# a study's figure(s): results, the plots folder -> its headline numbers (metrics/study.json)
FIGURES: dict[str, Callable[[pd.DataFrame, Path], dict]] = {
    "sparsity": sparsity_figure, "depth": depth_figure,
    "sample_size": sample_size_figure, "label_noise": label_noise_figure,
    "ranking": ranking_figure}
# its report (reports/study.md): numbers -> Markdown; tables of the numbers unless named here
REPORTS: dict[str, Callable[[dict], str]] = {"ranking": ranking_markdown}


def numbers_markdown(numbers: dict) -> str:
    """A study's numbers as Markdown: a table per mapping of rows, a list per mapping of
    values, under a heading each (the top level's own rows first)."""
    parts = [_md_block(None, numbers)] if _is_rows(numbers) else [
        _md_block(k, v) for k, v in numbers.items() if isinstance(v, dict)]
    return "\n".join(p for p in parts if p)


def _is_rows(value: dict) -> bool:
    """A mapping of rows: every value a mapping of numbers."""
    return bool(value) and all(isinstance(v, dict) and not any(isinstance(x, dict)
                                                              for x in v.values())
                               for v in value.values())


def _md_block(title: str | None, value: dict) -> str:
    head = [f"## {title}", ""] if title else []
    if not _is_rows(value):
        return "\n".join(head + [f"- {k}: {v:.6g}" for k, v in value.items()]) + "\n"
    cols = list(next(iter(value.values())))
    lines = ["| | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    lines += [f"| {k} | " + " | ".join(f"{r[c]:.6g}" for c in cols) + " |"
              for k, r in value.items()]
    return "\n".join(head + lines) + "\n"


def _finish(fig: plt.Figure, plots: Path) -> None:
    fig.tight_layout()
    save(fig, plots / "study.png", dpi=120)
    plt.close(fig)
