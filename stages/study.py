"""Stage `figure` of a study (studies/<name>/dvc.yaml): every variant's results ->
plots/study.png and metrics/study.json."""

import argparse

from normbounds.io import write_json
from normbounds.paths import Paths
from normbounds.runtime import run_stage, stage_config
from normbounds.studies import FIGURES, load_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=list(FIGURES), help="which study's figure to draw")
    kind = parser.parse_args().kind
    paths = Paths()
    cfg = stage_config(paths)
    numbers = FIGURES[kind](load_study(paths.root, cfg), paths.study_figure)
    write_json({"study": kind, **numbers}, paths.study_metrics)
    print(f"{kind}: wrote {paths.study_figure} and {paths.study_metrics}")


if __name__ == "__main__":
    run_stage(main)
