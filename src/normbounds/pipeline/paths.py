"""Every file the pipeline reads or writes, relative to the pipeline's folder.

dvc.yaml declares the same paths (tests/pipeline/test_pipeline.py checks they agree).
A study pipeline in studies/<name>/ gets the same layout under its own folder;
a study's variant (params.yaml `variants:`) adds a level after the top folder:
data/prepared/<variant>/, checkpoints/<variant>/<entry>/, results/<variant>/...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from normbounds.pipeline.config import Entry


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")
    variant: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # accept a str too

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    def _top(self, top: str, *rest: str) -> Path:
        """root/<top>[/<variant>]/<rest>: the layout of every per-variant output."""
        head = self.root / top
        return (head / self.variant if self.variant else head).joinpath(*rest)

    @property
    def prepared(self) -> Path:
        return self._top("data/prepared")

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
        return self._top("checkpoints", entry.name)

    def train_live(self, entry: Entry) -> Path:
        """The DVCLive folder of a training run."""
        return self._top("logs", entry.name)

    def train_log(self, entry: Entry) -> Path:
        """Per-epoch train loss, written by DVCLive (a DVC plot, x = step = epoch)."""
        return self.train_live(entry) / "plots" / "metrics" / "train_loss.tsv"

    def train_metrics(self, entry: Entry) -> Path:
        """The last epoch's train loss, written by DVCLive (a DVC metric)."""
        return self.train_live(entry) / "metrics.json"

    def results(self, entry: Entry) -> Path:
        return self._top("results", f"{entry.name}.csv")

    def metrics(self, entry: Entry) -> Path:
        return self._top("metrics", f"{entry.name}.json")

    @property
    def results_dir(self) -> Path:
        return self._top("results")

    @property
    def summary_csv(self) -> Path:
        return self.root / "reports" / "summary.csv"

    @property
    def summary_md(self) -> Path:
        return self.root / "reports" / "summary.md"

    @property
    def finding_md(self) -> Path:
        """The headline finding with the run's numbers, which README.md shows verbatim."""
        return self.root / "reports" / "finding.md"

    @property
    def params_ok(self) -> Path:
        """Written by the `check` stage once params.yaml (every variant) is valid."""
        return self.root / "reports" / "params.ok"

    @property
    def figure1_png(self) -> Path:
        return self.root / "plots" / "figure1.png"

    @property
    def figure1_pdf(self) -> Path:
        return self.root / "plots" / "figure1.pdf"

    @property
    def figure_valid(self) -> Path:
        return self.root / "plots" / "figure1_valid.png"

    @property
    def bounds_vs_width(self) -> Path:
        return self.root / "plots" / "bounds_vs_width.png"

    @property
    def layer_norms(self) -> Path:
        return self.root / "plots" / "layer_norms.png"

    @property
    def vega_template(self) -> Path:
        """The DVC plot template of the results (log y axis, registry colours)."""
        return self.root / "plots" / "templates" / "bounds_log.json"

    @property
    def study_plots(self) -> Path:
        """A study's figures (studies/<name>/plots/: study.png, and the ranking's scatter)."""
        return self.root / "plots"

    @property
    def study_figure(self) -> Path:
        """A study's figure (studies/<name>/plots/study.png)."""
        return self.study_plots / "study.png"

    @property
    def study_report(self) -> Path:
        """A study's numbers as Markdown tables (the ranking's: its ranking table)."""
        return self.root / "reports" / "study.md"

    @property
    def study_metrics(self) -> Path:
        """A study's headline numbers (a DVC metric)."""
        return self.root / "metrics" / "study.json"
