"""Figures: the paper's Figure 1, the valid bounds beside it, bounds against width, norms.

Each function takes the tidy results frame of `pipeline.results.load_results`, writes
its files and returns the matplotlib figure (tests inspect its axes). Every
bound is drawn with its registry colour; a bound that is not a theorem
(status printed, fixed-class or proxy) is dashed and says its status in the legend.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from normbounds.io import write_text  # noqa: E402
from normbounds.measure.formulas import (  # noqa: E402
    BOUND_NAMES,
    FIGURE1,
    HELD_OUT,
    status,
    statuses_of,
)
from normbounds.report.legend import colour, label  # noqa: E402
from normbounds.report.reports import final_rows  # noqa: E402

MEASURED_CURVES = ["train_error", "test_error", "gap"]
CURVES = [*FIGURE1, *MEASURED_CURVES]  # Figure 1: the paper's five curves, as it drew them
DASHES = {"train_error": ":", "test_error": ":", "gap": "-.", "margin_error": "-."}
NOT_A_THEOREM = (0, (5, 2))  # the dash of a bound whose status is not `theorem`


def style(name: str, given: dict | None = None) -> tuple[str, object]:
    """(colour, line style) of a bound (solid if a theorem under the statuses `given`,
    else dashed) or a measured curve, in every figure."""
    if name in BOUND_NAMES:
        return colour(name), "-" if status(name, given) == "theorem" else NOT_A_THEOREM
    return colour(name), DASHES.get(name, "-")


def valid_curves(results: pd.DataFrame) -> list[str]:
    """figure1_valid's curves: the bounds that are theorems under the results' own
    statuses, the measured curves, and the held-out bound."""
    given = statuses_of(results)
    theorems = [n for n in BOUND_NAMES if status(n, given) == "theorem"]
    return [*theorems, *MEASURED_CURVES, *([HELD_OUT] if HELD_OUT in results else [])]


HIDDEN_NOTE = "▼ on the axis: value ≤ 0, not drawable on a log scale"


def _panel_grid(depths: list[int], widths: list[int], size: float = 3.4):
    fig, axes = plt.subplots(len(depths), len(widths), squeeze=False, sharex=True,
                             figsize=(size * len(widths) + 0.6, size * len(depths) + 1.2))
    return fig, axes


def _curve(ax, group: pd.DataFrame, key: str, given: dict) -> bool:
    """Seed mean with a min-max band on a log2 axis; values <= 0 become markers on the
    x axis. Returns whether any point was hidden."""
    color, dash = style(key, given)
    stats = group.groupby("epoch")[key].agg(["mean", "min", "max"])
    epochs, mean = stats.index.to_numpy(), stats["mean"].to_numpy()
    drawable = mean > 0
    ax.plot(epochs, np.where(drawable, mean, np.nan), color=color, ls=dash, lw=1.6,
            label=label(key, given))
    if group["seed"].nunique() > 1:
        low = np.where(stats["min"] > 0, stats["min"], np.nan)
        ax.fill_between(epochs, low, stats["max"], color=color, alpha=0.15, lw=0)
    if not drawable.all():
        ax.plot(epochs[~drawable], np.zeros((~drawable).sum()), "v", color=color, ms=5,
                transform=ax.get_xaxis_transform(), clip_on=False)
    return not drawable.all()


def figure1(results: pd.DataFrame, png: Path, pdf: Path | None = None,
            curves: list[str] | None = None) -> plt.Figure:
    """One panel per (depth, width), titled CONV-L-H: the bounds, the errors and the gap
    over epochs, y on a log2 scale, one shared legend under the panels. `curves`
    defaults to the paper's Figure 1 (CURVES); `figure_valid` draws `valid_curves`. Each
    bound's status (line style, legend) is the one its results carry."""
    curves = CURVES if curves is None else curves
    given = statuses_of(results)
    depths, widths = sorted(results["depth"].unique()), sorted(results["width"].unique())
    fig, axes = _panel_grid(depths, widths)
    hidden = False
    for (depth, width), group in results.groupby(["depth", "width"]):
        ax = axes[depths.index(depth)][widths.index(width)]
        for key in curves:
            hidden |= _curve(ax, group, key, given)
        ax.set_yscale("log", base=2)
        ax.set_title(f"CONV-{depth}-{width}")
        ax.grid(alpha=0.3, which="major")
        ax.set_xlabel("epoch")
    for row in axes:
        row[0].set_ylabel("value (log2 scale)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    seeds = results["seed"].nunique()
    title = f"mean over {seeds} seeds, band: min to max" if seeds > 1 else "one seed"
    if hidden:  # on its own line when one panel is narrower than the note
        title += ("\n" if len(widths) == 1 else "; ") + HIDDEN_NOTE
    _legend_below(fig, handles, labels, title, columns=min(3, len(widths)))
    save(fig, png, *([pdf] if pdf is not None else []))
    return fig


def _legend_below(fig: plt.Figure, handles: list, labels: list[str], title: str,
                  columns: int) -> None:
    """One legend under the panels, in as many columns as there are panels (at most 3) so
    it is never wider than the figure, and the panels moved up by its height."""
    legend = fig.legend(handles, labels, loc="lower center", ncol=columns, frameon=False,
                        title=title, fontsize=9, title_fontsize=9)
    fig.canvas.draw()  # the legend's size in pixels, then as a fraction of the figure
    height = legend.get_window_extent().height / fig.bbox.height
    fig.tight_layout(rect=(0, min(0.8, height + 0.02), 1, 1))


def figure_valid(results: pd.DataFrame, png: Path) -> plt.Figure:
    """Figure 1's panels with the bounds that are theorems only and the held-out bound (the
    certificate, margin error + ours_corrected, would hide ours_corrected: it is in the
    summary table)."""
    return figure1(results, png, curves=valid_curves(results))


def bounds_vs_width(results: pd.DataFrame, png: Path) -> plt.Figure:
    """Final value of each bound against width, one panel per depth, log scale."""
    last, given = final_rows(results), statuses_of(results)
    depths = sorted(last["depth"].unique())
    fig, axes = plt.subplots(1, len(depths), squeeze=False, figsize=(4.5 * len(depths), 3.8))
    for ax, depth in zip(axes[0], depths, strict=True):
        sub = last[last["depth"] == depth].groupby("width")[list(BOUND_NAMES)].mean()
        for key in BOUND_NAMES:
            color, dash = style(key, given)
            ax.plot(sub.index, sub[key], "o", ls=dash, color=color, label=label(key, given))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(sub.index, [str(w) for w in sub.index])
        ax.set_title(f"CONV-{depth}-H, final epoch")
        ax.set_xlabel("width H")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("bound (log2 scale)")
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    save(fig, png)
    return fig


LAYER_COLOURS = plt.cm.tab10.colors  # qualitative: neighbouring layers look different


def layer_norms(results: pd.DataFrame, png: Path) -> plt.Figure:
    """Per-layer Frobenius (solid) and operator (dashed) norms over training, per entry:
    one colour and marker per layer, one legend under the panels."""
    depths, widths = sorted(results["depth"].unique()), sorted(results["width"].unique())
    fig, axes = _panel_grid(depths, widths, size=3.2)
    for (depth, width), group in results.groupby(["depth", "width"]):
        ax = axes[depths.index(depth)][widths.index(width)]
        means = group.groupby("epoch").mean(numeric_only=True)
        for layer in range(1, depth + 2):
            color = LAYER_COLOURS[(layer - 1) % len(LAYER_COLOURS)]
            name = "head" if layer == depth + 1 else f"layer {layer}"
            marker = "os^Dv<>p*h"[(layer - 1) % 10]
            ax.plot(means.index, means[f"fro_l{layer}"], color=color, marker=marker,
                    ms=3.5, label=f"{name}: Frobenius ‖W‖_F")
            ax.plot(means.index, means[f"sigma_l{layer}"], color=color, marker=marker,
                    ms=3.5, ls="--", mfc="none", label=f"{name}: operator σ")
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.set_title(f"CONV-{depth}-{width}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("norm (log2 scale)")
    # the deepest panel has every layer: its legend covers all
    handles, labels = axes[-1][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, fontsize=8)
    rows = (len(labels) + 3) // 4
    fig.tight_layout(rect=(0, min(0.45, 0.05 * rows + 0.03), 1, 1))
    save(fig, png)
    return fig


DVC_CURVES = [*BOUND_NAMES, "train_error", "test_error", "margin_error"]  # dvc.yaml's plot


def vega_template(given: dict | None = None) -> dict:
    """The DVC plot template of the results: log y axis, one colour per curve from the
    BOUNDS registry, labels with the statuses `given` (dashes tell revisions apart in
    `dvc plots diff`). Values <= 0 (a zero train error) cannot sit on a log axis and are
    left out."""
    def anchor(name: str) -> str:
        return f"<DVC_METRIC_{name.upper()}>"

    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": anchor("data")},
        "title": anchor("title"),
        "width": 420, "height": 300,
        "transform": [{"filter": f"datum['{anchor('y')}'] > 0"}],
        "mark": {"type": "line", "point": True, "tooltip": {"content": "data"}},
        "encoding": {
            "x": {"field": anchor("x"), "type": "quantitative", "title": anchor("x_label")},
            "y": {"field": anchor("y"), "type": "quantitative", "title": anchor("y_label"),
                  "scale": {"type": "log"}},
            "color": {"field": "field", "type": "nominal", "title": None,
                      "scale": {"domain": DVC_CURVES, "range": [colour(n) for n in DVC_CURVES]},
                      "legend": {"labelExpr": json.dumps({n: label(n, given) for n in DVC_CURVES})
                                 + "[datum.label]"}},
            "strokeDash": {"field": "rev", "type": "nominal", "title": "revision"},
        },
    }


def write_vega_template(path: Path, given: dict | None = None) -> None:
    write_text(json.dumps(vega_template(given), indent=2) + "\n", path)


def save(fig: plt.Figure, *paths: Path, dpi: int = 130) -> None:
    """The one way a figure is written: each file atomically (a killed run leaves the old
    one), without the metadata that would change its bytes (date, matplotlib version)."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=dpi, metadata={"CreationDate": None} if path.suffix == ".pdf"
                    else {"Software": None})
        tmp.replace(path)
