"""`normbounds review`: what an experiment changed, params and headline metrics side by side.

`dvc exp show` puts every param and metric of every entry in one row, which no
screen holds, and `dvc metrics diff` lists a row per metric per entry. This
reads `dvc params diff --json` and `dvc metrics diff --json` (the workspace
against a revision, HEAD by default) and prints, within 160 columns:

    changed params: train.lr 0.05 -> 0.02
    | metric      | 3-8-0              | 3-16-0             |
    | ours        | 4.919 -> 5.1 (+4%) | 5.042 -> 5.2 (+3%) |

one row per headline metric that moved, one column per entry, and one line for
the entries an experiment added or dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from normbounds.errors import InputError, needs
from normbounds.measure.formulas import HEADLINE

WIDTH = 160


def _dvc_json(*args: str) -> dict:
    """`dvc <args> --json`, parsed; a failure is one InputError with DVC's first line."""
    needs("dvc", "normbounds review")  # the pipeline extra's, not in a base install
    run = subprocess.run([sys.executable, "-m", "dvc", *args, "--json"], capture_output=True,
                         text=True)
    if run.returncode != 0:
        first = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"dvc {' '.join(args)} failed: {first}")
    return json.loads(run.stdout or "{}")


def _number(value: object) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(change: dict) -> str:
    old, new = change.get("old"), change.get("new")
    text = f"{_number(old)} -> {_number(new)}"
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and old:
        text += f" ({100 * (new - old) / abs(old):+.3g}%)"
    return text


def render(params: dict, metrics: dict, width: int = WIDTH) -> str:
    """The review screen from the two diffs' JSON (pure: what the tests feed it)."""
    changed = [f"{key} {_number(c.get('old'))} -> {_number(c.get('new'))}"
               for found in params.values() for key, c in found.items()]
    lines = ["changed params: " + ("; ".join(changed) if changed else "none")]
    entries: dict[str, dict] = {Path(path).stem: found for path, found in metrics.items()
                                if path.startswith("metrics/")}
    added = [e for e, f in entries.items() if f and all(c.get("old") is None for c in f.values())]
    dropped = [e for e, f in entries.items()
               if f and all(c.get("new") is None for c in f.values())]
    for what, names in (("added", added), ("dropped", dropped)):
        if names:
            lines.append(f"entries {what}: {', '.join(sorted(names))}")
    kept = sorted(e for e in entries if e not in added and e not in dropped)
    rows = [k for k in HEADLINE if any(k in entries[e] for e in kept)]
    if not rows:
        lines.append("no headline metric moved" if not (added or dropped) else "")
        return "\n".join(line for line in lines if line) + "\n"
    table = [["metric", *kept]] + [
        [k, *(_cell(entries[e][k]) if k in entries[e] else "=" for e in kept)] for k in rows]
    sizes = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    shown = _fit(sizes, width)
    for r in table:
        lines.append("| " + " | ".join(r[i].ljust(sizes[i]) for i in shown) + " |")
    if len(shown) < len(sizes):
        lines.append(f"({len(sizes) - len(shown)} more entries: narrow with --entries)")
    return "\n".join(lines) + "\n"


def _fit(sizes: list[int], width: int) -> list[int]:
    """The columns that fit in `width` (the metric names always)."""
    shown, used = [], 1
    for i, size in enumerate(sizes):
        if i and used + size + 3 > width:
            break
        shown.append(i)
        used += size + 3
    return shown


def review(revision: str = "HEAD", entries: list[str] | None = None) -> str:
    """The review screen of the workspace against `revision` (run in a pipeline folder)."""
    metrics = _dvc_json("metrics", "diff", revision)
    if entries:
        metrics = {p: f for p, f in metrics.items() if Path(p).stem in entries}
    return render(_dvc_json("params", "diff", revision), metrics)
