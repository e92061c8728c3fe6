"""Every file the pipeline reads or writes, relative to the pipeline's folder.

dvc.yaml declares the same paths (tests/test_pipeline.py checks they agree).
A study pipeline in studies/<name>/ gets the same layout under its own folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from normbounds.config import Entry


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def train_data(self) -> Path:
        return self.prepared / "train.pt"

    @property
    def test_data(self) -> Path:
        return self.prepared / "test.pt"

    @property
    def stats(self) -> Path:
        return self.prepared / "stats.json"

    def checkpoints(self, entry: Entry) -> Path:
        return self.root / "checkpoints" / entry.name

    def train_log(self, entry: Entry) -> Path:
        """Per-epoch train loss and learning rate (a DVC plot)."""
        return self.root / "logs" / f"{entry.name}.tsv"

    def train_metrics(self, entry: Entry) -> Path:
        """Final train loss and learning rate (a DVC metric, for `dvc exp show`)."""
        return self.root / "metrics" / "train" / f"{entry.name}.json"

    def results(self, entry: Entry) -> Path:
        return self.root / "results" / f"{entry.name}.csv"

    def metrics(self, entry: Entry) -> Path:
        return self.root / "metrics" / f"{entry.name}.json"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def summary_csv(self) -> Path:
        return self.root / "reports" / "summary.csv"

    @property
    def summary_md(self) -> Path:
        return self.root / "reports" / "summary.md"

    @property
    def figure1_png(self) -> Path:
        return self.root / "plots" / "figure1.png"

    @property
    def figure1_pdf(self) -> Path:
        return self.root / "plots" / "figure1.pdf"

    @property
    def bounds_vs_width(self) -> Path:
        return self.root / "plots" / "bounds_vs_width.png"

    @property
    def layer_norms(self) -> Path:
        return self.root / "plots" / "layer_norms.png"
