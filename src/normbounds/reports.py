"""Results tables: per-entry CSVs -> one tidy frame, and the summary table.

`load_results` stacks every results/<entry>.csv with its depth, width and
seed; `summary` reduces the last checkpoint of each run to one row per depth
and width (mean and spread over seeds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from normbounds.config import Entry
from normbounds.errors import ArtifactError
from normbounds.formulas import BOUND_NAMES
from normbounds.io import write_text
from normbounds.paths import Paths

BOUNDS = list(BOUND_NAMES)
SUMMARY_COLUMNS = ["train_error", "test_error", "gap", "margin_error", "ours", "certificate"]


def load_results(paths: Paths, entries: list[Entry]) -> pd.DataFrame:
    """Every entry's results CSV, with depth, width and seed columns; epochs in order."""
    frames = []
    for entry in entries:
        path = paths.results(entry)
        if not path.is_file():
            raise ArtifactError(f"{path}: missing (run `dvc repro evaluate@{entry.name}`)")
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ArtifactError(f"{path}: not a results table ({type(err).__name__}); run"
                                f" `dvc repro -f evaluate@{entry.name}`") from None
        _check_columns(frame, path, entry)
        frames.append(frame.assign(depth=entry.depth, width=entry.width, seed=entry.seed))
    return pd.concat(frames, ignore_index=True).sort_values(["depth", "width", "seed", "epoch"])


def _check_columns(frame: pd.DataFrame, path: Path, entry: Entry) -> None:
    """Every column the figures and the summary read is there, numeric and non-empty,
    so the figures stage fails before it writes anything."""
    needed = ["epoch", "fro_l1", "sigma_l1", *SUMMARY_COLUMNS, *BOUNDS]
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    bad = [c for c in dict.fromkeys(needed) if c in frame.columns
           and not pd.api.types.is_numeric_dtype(frame[c])]
    if frame.empty or missing or bad:
        what = ("no rows" if frame.empty else f"missing column(s) {missing}" if missing
                else f"non-numeric column(s) {bad}")
        raise ArtifactError(f"{path}: {what}; run `dvc repro -f evaluate@{entry.name}`")


def final_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of every run."""
    return results.groupby(["depth", "width", "seed"], as_index=False).tail(1)


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per depth and width: mean and (max - min)/2 over seeds of the final values,
    the non-vacuous verdict and each prior bound's ratio to ours."""
    last = final_rows(results).copy()
    for name in BOUNDS[1:]:
        last[f"{name}_over_ours"] = last[name] / last["ours"]
    cols = SUMMARY_COLUMNS + BOUNDS[1:] + [f"{n}_over_ours" for n in BOUNDS[1:]]
    grouped = last.groupby(["depth", "width"])
    table = grouped[cols].mean()
    spread = (grouped[cols].max() - grouped[cols].min()) / 2
    table = table.join(spread.add_suffix("_spread"))
    table["seeds"] = grouped.size()
    table["non_vacuous"] = grouped["certificate"].max() < 1.0  # every seed below 1
    return table.reset_index()


def summary_markdown(table: pd.DataFrame) -> str:
    """The summary as a Markdown table (mean +- half range over seeds)."""
    def cell(row: pd.Series, col: str) -> str:
        text = f"{row[col]:.4g}"
        return text + (f" ± {row[col + '_spread']:.2g}" if row["seeds"] > 1 else "")

    shown = SUMMARY_COLUMNS + BOUNDS[1:]
    rows = []
    for _, row in table.iterrows():
        rows.append({"CONV-L-H": f"CONV-{row['depth']}-{row['width']}", "seeds": row["seeds"],
                     **{c: cell(row, c) for c in shown},
                     "non-vacuous": "yes" if row["non_vacuous"] else "no",
                     **{f"{b}/ours": f"{row[f'{b}_over_ours']:.3g}" for b in BOUNDS[1:]}})
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n"


def write_summary(table: pd.DataFrame, csv_path: Path, md_path: Path) -> None:
    write_text(table.to_csv(index=False, float_format="%.8g"), csv_path)
    write_text(summary_markdown(table), md_path)
