"""Stage `figure` of a study (studies/study.dvc.yaml, run from studies/<name>/): every
variant's results -> plots/ (study.png), reports/study.md and metrics/study.json. The
study's figure is the one named like its folder."""

from pathlib import Path

import normbounds.pipeline  # noqa: F401  first: pins the CPU kernels before torch loads
from normbounds.errors import ConfigError
from normbounds.io import write_json, write_text
from normbounds.pipeline.results import load_study
from normbounds.pipeline.runtime import run_stage, stage_args, stage_config
from normbounds.report.studies import FIGURES, REPORTS, numbers_markdown


def main() -> None:
    _, paths = stage_args(__doc__, with_entry=False)
    kind = Path.cwd().name
    if kind not in FIGURES:
        raise ConfigError(f"{Path.cwd()}: no study figure is named {kind!r}; a study folder"
                          f" is named after one of {sorted(FIGURES)} (copy one to start)")
    cfg = stage_config(paths)
    numbers = FIGURES[kind](load_study(paths.root, cfg), paths.study_plots)
    write_text(REPORTS.get(kind, numbers_markdown)(numbers), paths.study_report)
    write_json({"study": kind, **numbers}, paths.study_metrics)
    print(f"{kind}: wrote {paths.study_plots}, {paths.study_report} and {paths.study_metrics}")


if __name__ == "__main__":
    run_stage(main)
