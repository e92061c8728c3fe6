"""Results tables: the tidy frame of every run -> the summary table and the finding.

The frame is `pipeline.results.load_results`'s (every results/<entry>.csv with its
depth, width and seed); `summary` reduces the last checkpoint of each run to one row per depth
and width (mean and spread over seeds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from normbounds.io import write_text
from normbounds.measure.formulas import (
    BOUND_NAMES,
    CERTIFYING,
    HELD_OUT,
    status,
    status_column,
    statuses_of,
)

ERRORS = ["train_error", "test_error", "gap", "margin_error", "certificate", "certificate_gamma",
          HELD_OUT]
SUMMARY_COLUMNS = [*ERRORS, *BOUND_NAMES]
OTHERS = [b for b in BOUND_NAMES if b != CERTIFYING]  # each one's ratio to the certifying bound


def final_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of every run (of every variant, in a study), in table order."""
    runs = [k for k in ("variant", "depth", "width", "seed") if k in results]
    return results.loc[sorted(results.groupby(runs, sort=False)["epoch"].idxmax())]


def ratio_column(name: str) -> str:
    return f"{name}_over_{CERTIFYING}"


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per depth and width: mean and (max - min)/2 over seeds of the final values,
    the non-vacuous verdict and each other bound's ratio to the corrected bound."""
    last = final_rows(results).copy()
    for name in OTHERS:
        last[ratio_column(name)] = last[name] / last[CERTIFYING]
    cols = SUMMARY_COLUMNS + [ratio_column(n) for n in OTHERS]
    grouped = last.groupby(["depth", "width"])
    table = grouped[cols].mean()
    spread = (grouped[cols].max() - grouped[cols].min()) / 2
    table = table.join(spread.add_suffix("_spread"))
    table["seeds"] = grouped.size()
    table["non_vacuous"] = grouped["certificate"].max() < 1.0  # every seed below 1
    for name, value in statuses_of(results).items():  # what each bound is, as evaluated
        table[status_column(name)] = value
    return table.reset_index()


def summary_markdown(table: pd.DataFrame) -> str:
    """The summary as Markdown (mean +- half range over seeds): the errors and the
    certificate per network, then one row per bound with its status, then each bound's
    ratio to the corrected bound."""
    def cell(row: pd.Series, col: str, digits: int = 4) -> str:
        text = f"{row[col]:.{digits}g}"
        return text + (f" ± {row[col + '_spread']:.2g}" if row["seeds"] > 1 else "")

    nets = [f"CONV-{row['depth']}-{row['width']}" for _, row in table.iterrows()]
    given = statuses_of(table)
    errors = pd.DataFrame([{"CONV-L-H": net, "seeds": row["seeds"],
                            **{c: cell(row, c) for c in ERRORS},
                            "non-vacuous": "yes" if row["non_vacuous"] else "no"}
                           for net, (_, row) in zip(nets, table.iterrows(), strict=True)])
    values = pd.DataFrame([{"bound": b, "status": status(b, given),
                            **{net: cell(row, b) for net, (_, row)
                               in zip(nets, table.iterrows(), strict=True)}}
                           for b in BOUND_NAMES])
    ratios = pd.DataFrame([{"bound": b, "status": status(b, given),
                            **{net: f"{row[ratio_column(b)]:.3g}" for net, (_, row)
                               in zip(nets, table.iterrows(), strict=True)}}
                           for b in OTHERS])
    return "\n\n".join([
        errors.to_markdown(index=False, disable_numparse=True),
        "Final value of every bound (a bound is a theorem only where its status says so):",
        values.to_markdown(index=False, disable_numparse=True),
        f"Each bound over `{CERTIFYING}`:",
        ratios.to_markdown(index=False, disable_numparse=True)]) + "\n"


def write_summary(table: pd.DataFrame, csv_path: Path, md_path: Path,
                  finding_path: Path | None = None, profile: str = "") -> None:
    write_text(table.to_csv(index=False, float_format="%.8g"), csv_path)
    write_text(summary_markdown(table), md_path)
    if finding_path is not None:
        write_text(finding_markdown(table, profile), finding_path)


def _span(values: pd.Series, digits: int = 3) -> str:
    low, high = values.min(), values.max()
    return f"{low:.{digits}g}" if f"{low:.{digits}g}" == f"{high:.{digits}g}" else (
        f"{low:.{digits}g} to {high:.{digits}g}")


def finding_markdown(table: pd.DataFrame, profile: str = "") -> str:
    """The headline finding in plain words, with this run's numbers (README's first lines):
    the printed bound against the corrected theorem, and the theorems' ratios. profile:
    the run in words (`profile_words`), so a variant is not called the default run."""
    nets = ", ".join(f"CONV-{d}-{w}" for d, w in zip(table["depth"], table["width"],
                                                      strict=True))
    nets = f"{profile}: {nets}" if profile else nets
    factor = table[CERTIFYING] / table["ours"]
    ratio = table["golowich_corrected"] / table[CERTIFYING]
    graf = table["graf"] / table[CERTIFYING]
    return (
        "**The paper's Theorem 3.2, as printed, is not a bound.** Its proof bounds the"
        " head by the largest of its blocks where the sum over all of them is needed, and"
        " a network that memorises random labels gets a printed \"guarantee\" of 0.55"
        " test error where every classifier has 0.9 (docs/bounds.md, \"Validity\")."
        f" On this run ({nets}) the printed formula (`ours`) is"
        f" {_span(table['ours'])}; the corrected theorem (`ours_corrected`) is"
        f" {_span(table[CERTIFYING])}, {_span(factor)} times larger, so the certificate"
        f" (the smallest margin error + ours_corrected over the margins of bound.gammas) is"
        f" {_span(table['certificate'])}:"
        f" {'non-vacuous' if table['non_vacuous'].all() else 'vacuous'}, where the test set"
        f" alone bounds the error by {_span(table[HELD_OUT])} (the held-out bound). Among"
        " the bounds"
        f" that are theorems, Golowich et al.'s corrected form is {_span(ratio)} times"
        f" ours_corrected and Graf et al.'s {_span(graf)} times.\n")
