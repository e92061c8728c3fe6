"""What `normbounds bounds` prints and saves: the header line, the table, the footer and
the --out row with what it takes to read it later."""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import importlib.metadata
import io
from pathlib import Path

import torch

from normbounds.io import write_json, write_text
from normbounds.measure.assessment import finite_or_none
from normbounds.measure.formulas import (
    HEADLINE,
    HELD_OUT,
    STATUS_MEANINGS,
    status,
    statuses_of,
)
from normbounds.measure.options import BoundConfig
from normbounds.pipeline.datasets import Split

BOOLEAN = ("non_vacuous", "lanczos_converged_l")  # 0/1 columns, printed as no/yes


def _cell(key: str, value: object) -> str:
    if key.startswith(BOOLEAN):
        return "yes" if value else "no"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# what the table shows without --all: the errors, the bounds and the certificate
SHOWN = (*HEADLINE, "non_vacuous")


def table(row: dict, everything: bool = False) -> str:
    """Markdown: the headline values (every value with `everything`) beside the status of
    the bound each is (no empty rows: `notes` only when there is one; statuses in their
    column, not as rows)."""
    given = statuses_of(row)
    keys = [k for k in row if everything or k in SHOWN]
    cells = [(k, _cell(k, row[k]), status(k, given)) for k in keys
             if not k.startswith("status_") and row[k] != ""]
    widths = [max(len(c[i]) for c in [("", "value", "status"), *cells]) for i in range(3)]
    lines = [("", "value", "status"), tuple("-" * w for w in widths), *cells]
    return "\n".join("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
                     + " |" for line in lines)


def header(row: dict, params: BoundConfig) -> str:
    """One line: the certificate, its formula with gamma and delta, and the verdict."""
    grid = ", ".join(f"{g:g}" for g in params.gammas)
    verdict = "< 1: non-vacuous" if row["non_vacuous"] else ">= 1: vacuous"
    line = (f"certificate = min over gamma in {{{grid}}} of margin error (gamma) +"
            f" ours_corrected (gamma, delta / {len(params.gammas)}) = {row['certificate']:.4g}"
            f" at gamma = {row['certificate_gamma']:g} {verdict} (delta = {params.delta:g},"
            f" lipschitz = {params.lipschitz})")
    if HELD_OUT in row:
        line += f"; the test set alone bounds the error by {row[HELD_OUT]:.4g}"
    return line


def footer(row: dict, everything: bool = False) -> str:
    """What each status in the table means, one line each; then how to see the rest."""
    given = statuses_of(row)
    used = dict.fromkeys(status(k, given) for k in row)
    lines = [f"{s}: {STATUS_MEANINGS[s]}" for s in used if s]
    hidden = [k for k in row if k not in SHOWN and not k.startswith("status_") and row[k] != ""]
    if hidden and not everything:
        lines.append(f"--all shows the {len(hidden)} ingredients too (norms, P, S, per-layer"
                     " values); --out saves them")
    return "\n".join(lines)


def _file_sha256(spec: str | None) -> str:
    """The SHA-256 of a file given on the command line ('' for a name or a folder)."""
    if spec is None or not Path(spec).is_file():
        return ""
    digest = hashlib.sha256()
    with open(spec, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def metadata(args: argparse.Namespace, params: BoundConfig, data: Split) -> dict:
    """What a saved row needs to be read later: what was measured (the model, its weights
    and the data, with their files' digests), with which options and versions, and when."""
    digest = hashlib.sha256(data.x.contiguous().numpy().tobytes())
    digest.update(data.y.contiguous().numpy().tobytes())
    return {"normbounds_version": importlib.metadata.version("normbounds"),
            "gamma": params.gamma, "gammas": " ".join(f"{g:g}" for g in params.gammas),
            "delta": params.delta, "lipschitz": params.lipschitz,
            "data_sha256": digest.hexdigest(),
            "model": args.model, "model_sha256": _file_sha256(args.model),
            "weights": args.weights or "", "weights_sha256": _file_sha256(args.weights),
            "data": args.data, "data_file_sha256": _file_sha256(args.data),
            "torch_version": torch.__version__,
            "written_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def write_row(row: dict, out: Path) -> None:
    if out.suffix == ".json":  # JSON has no inf or nan: null, as in metrics/
        write_json(finite_or_none(row), out)
        return
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(row)
    writer.writerow([f"{v:.10g}" if isinstance(v, float) else v for v in row.values()])
    write_text(text.getvalue(), out)
