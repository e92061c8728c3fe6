"""Stage `figures`: results/<entry>.csv -> Figure 1 (as printed), the valid bounds beside it,
bounds vs width, layer norms, summary, the DVC plot template."""

import normbounds.pipeline  # noqa: F401  first: pins the CPU kernels before torch loads
from normbounds.measure.formulas import statuses_of
from normbounds.pipeline.results import load_results, profile_words
from normbounds.pipeline.runtime import run_stage, stage_args, stage_config
from normbounds.report import plots
from normbounds.report.reports import summary, write_summary


def main() -> None:
    _, paths = stage_args(__doc__, with_entry=False)
    cfg = stage_config(paths)
    results = load_results(paths, cfg.entries())
    plots.figure1(results, paths.figure1_png, paths.figure1_pdf)
    plots.figure_valid(results, paths.figure_valid)
    plots.bounds_vs_width(results, paths.bounds_vs_width)
    plots.layer_norms(results, paths.layer_norms)
    plots.write_vega_template(paths.vega_template, statuses_of(results))
    table = summary(results)
    write_summary(table, paths.summary_csv, paths.summary_md, paths.finding_md,
                  profile_words(cfg))
    print(paths.summary_md.read_text(), end="")


if __name__ == "__main__":
    run_stage(main)
