"""Stage `check`: validate params.yaml (and every study variant) before anything runs.

DVC builds the matrix stages' commands from the grid and variant values and
runs them in a shell, so a value such as `widths: ["4;touch x"]` must be
refused before any such command starts. Every other stage is downstream of
this one, and it reruns whenever any params section changes. Its output never
changes, so it reruns nothing by itself.
"""

import normbounds.pipeline  # noqa: F401  first: pins the CPU kernels before torch loads
from normbounds.io import write_text
from normbounds.pipeline.config import load_params
from normbounds.pipeline.runtime import run_stage, stage_args


def main() -> None:
    _, paths = stage_args(__doc__, with_entry=False)
    # validates every key of every section and variant; the one stage that prints the
    # warnings, so a run prints each once
    load_params(paths.params, paths.variant, warn=True)
    write_text("params.yaml is valid\n", paths.params_ok)


if __name__ == "__main__":
    run_stage(main)
