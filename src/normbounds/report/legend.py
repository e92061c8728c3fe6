"""How every figure names and colours a bound or a measured curve: the one table.

The maths (measure/formulas.py) knows each bound's name and status; this table gives
each name its legend label and its hex colour, read alike by matplotlib and by the DVC
(Vega-Lite) plot template, so a bound looks the same in every figure.
"""

from __future__ import annotations

from collections.abc import Mapping

from normbounds.measure.formulas import BOUND_NAMES, HELD_OUT, status

# name -> (legend label, colour): the bounds of formulas.BOUNDS, then the measured curves
LEGEND: dict[str, tuple[str, str]] = {
    "ours": ("Our bound", "#d62728"),
    "ours_corrected": ("Our bound, corrected", "#7f0000"),
    "golowich": ("Golowich et al. 2020", "#1f77b4"),
    "golowich_corrected": ("Golowich et al., corrected", "#08306b"),
    "long_sedghi": ("Long & Sedghi 2020", "#2ca02c"),
    "graf": ("Graf et al. 2022", "#9467bd"),
    "ledent": ("Ledent et al. 2021", "#8c564b"),
    "train_error": ("Train error", "#000000"),
    "test_error": ("Test error", "#7f7f7f"),
    "gap": ("Generalization gap", "#ff7f0e"),
    "margin_error": ("Margin error", "#e377c2"),
    HELD_OUT: ("Held-out bound (test set)", "#17becf"),
}


def label(name: str, given: Mapping[str, str] | None = None) -> str:
    """The legend label of a bound, with its status unless a theorem ('Our bound
    [printed]'; statuses from `given`, a row's, else the registry's), or of a measured
    curve."""
    text = LEGEND[name][0]
    if name not in BOUND_NAMES:
        return text
    value = status(name, given)
    return text if value == "theorem" else f"{text} [{value}]"


def colour(name: str) -> str:
    """The colour of a bound or a measured curve, the same in every figure."""
    return LEGEND[name][1]
