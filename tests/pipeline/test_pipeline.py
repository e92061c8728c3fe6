"""The DVC pipeline: dvc.yaml agrees with paths.py, and `dvc repro` runs end to end."""

from __future__ import annotations

import yaml

from normbounds.measure import formulas
from normbounds.pipeline.config import Entry
from normbounds.pipeline.paths import Paths
from normbounds.report import legend, plots

from pipeline_helpers import REPO


def _expand(template: str, entry: Entry) -> str:
    for key, value in (("depth", entry.depth), ("width", entry.width), ("seed", entry.seed)):
        template = template.replace("${item." + key + "}", str(value))
    return template


def _names(items: list) -> list[str]:
    return [next(iter(i)) if isinstance(i, dict) else i for i in items]


def test_dvc_yaml_declares_the_paths_of_paths_py():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    paths, entry = Paths(), Entry(3, 16, 0)
    assert _names(stages["prepare"]["outs"]) == [str(paths.prepared)]
    train = stages["train"]
    assert [_expand(p, entry) for p in _names(train["outs"])] == [str(paths.checkpoints(entry))]
    assert [_expand(p, entry) for p in _names(train["plots"])] == [str(paths.train_log(entry))]
    assert next(iter(train["plots"][0].values()))["x"] == "step"  # DVCLive's step is the epoch
    assert [_expand(p, entry) for p in _names(train["metrics"])] == [
        str(paths.train_metrics(entry))]
    assert {str(paths.train_data), str(paths.stats)} <= set(train["deps"])
    evaluate = stages["evaluate"]
    assert [_expand(p, entry) for p in _names(evaluate["outs"])] == [str(paths.results(entry))]
    assert [_expand(p, entry) for p in _names(evaluate["metrics"])] == [str(paths.metrics(entry))]
    assert _expand(evaluate["deps"][-1], entry) == str(paths.checkpoints(entry))
    assert _names(stages["figures"]["outs"]) == [str(p) for p in (
        paths.figure1_png, paths.figure1_pdf, paths.figure_valid, paths.bounds_vs_width,
        paths.layer_norms,
        paths.vega_template, paths.summary_csv, paths.summary_md, paths.finding_md)]
    ckpt = train["outs"][0][next(iter(train["outs"][0]))]
    assert ckpt == {"persist": True}  # cached: experiments don't clobber the baseline


def test_dvc_plots_read_the_bounds_registry():
    """The results plot draws every bound of the registry and the errors, through the
    template the figures stage writes, and every figure PNG is an image plot."""
    plots_section = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    results = plots_section[0]["results"]
    assert results["y"] == plots.DVC_CURVES == [*formulas.BOUND_NAMES, "train_error",
                                                "test_error", "margin_error"]
    assert results["template"] == str(Paths().vega_template)
    assert plots_section[1:] == [str(p) for p in (Paths().figure1_png, Paths().figure_valid,
                                                  Paths().bounds_vs_width, Paths().layer_norms)]
    template = plots.vega_template()
    assert template["encoding"]["y"]["scale"] == {"type": "log"}
    colours = template["encoding"]["color"]["scale"]
    assert colours["domain"] == plots.DVC_CURVES
    assert colours["range"] == [legend.colour(n) for n in plots.DVC_CURVES]
    assert len(set(colours["range"])) == len(colours["range"])  # one colour per curve


def test_offline_html_template_loads_no_script_from_the_network():
    page = (REPO / "plots" / "templates" / "offline.html").read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN scripts go nowhere
    assert "http" not in page.split("-->")[1]  # every script is a local file


def test_the_readme_shows_the_committed_summary_and_finding():
    """The README's numbers are the figures stage's files, verbatim: never hand-copied."""
    readme = (REPO / "README.md").read_text()
    assert Paths(REPO).summary_md.read_text().strip() in readme
    finding = Paths(REPO).finding_md.read_text().strip()
    assert f"<!-- finding -->\n{finding}\n<!-- /finding -->" in readme


def test_make_restore_on_a_fresh_clone_says_to_run_dvc_repro_first(tmp_path):
    """A fresh clone has no DVC cache: the restore says so in one line, and changes nothing
    (no `git checkout`, no `dvc checkout`, which would fail with 'Checkout failed')."""
    import shutil
    import subprocess

    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "src").mkdir()  # the Makefile lists the sources when it is read
    (tmp_path / "kept.txt").write_text("mine\n")
    run = subprocess.run(["make", "-s", "-o", "setup", "-o", ".venv/.installed", "restore"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode != 0
    assert run.stderr.splitlines()[0] == (
        "error: restore: the DVC cache is empty (a fresh clone): run `dvc repro` first; it"
        " trains the checkpoints once, and restores then come from the cache")
    assert (tmp_path / "kept.txt").read_text() == "mine\n"
