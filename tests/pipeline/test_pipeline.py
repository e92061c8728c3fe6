"""The DVC pipeline: dvc.yaml agrees with paths.py, and `dvc repro` runs end to end."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from normbounds.config import Entry
from normbounds.measure import formulas
from normbounds.paths import Paths
from normbounds.report import plots

from pipeline_helpers import REPO, dvc, make_pipeline, tiny_params

LAYER_KEYS = ["fro", "sigma", "sigma_lower", "sigma_upper", "lanczos_steps", "lanczos_converged",
              "l21", "a", "b"]
METRIC_KEYS = (
    ["epoch", "train_error", "test_error", "gap", "train_loss", "test_loss", "margin_error",
     "certificate", "non_vacuous", "m", "num_classes", "depth_d", "n_params", "n_max", "a_max",
     "data_p", "data_s", "rho", "log_rho", "rho_corrected", "head_block_norm", "rho_golowich",
     "rho_golowich_corrected", *formulas.BOUND_NAMES, "notes"]
    + [f"{k}_l{i}" for i in (1, 2) for k in LAYER_KEYS + ["deg", "pred"]]
    + [f"{k}_l3" for k in LAYER_KEYS]
)


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
    assert colours["range"] == [formulas.colour(n) for n in plots.DVC_CURVES]
    assert len(set(colours["range"])) == len(colours["range"])  # one colour per curve


@pytest.fixture
def pipeline_copy(tmp_path: Path) -> Path:
    return make_pipeline(tmp_path / "repo", tiny_params(), "studies")


def _numbers_per_entry(shown: dict) -> dict[str, int]:
    """Numeric leaves of `dvc metrics show --json`, counted per grid entry (file stem)."""
    counts: dict[str, int] = {}
    for path, found in shown[""]["data"].items():
        entry = Path(path).stem if Path(path).stem != "metrics" else Path(path).parent.name
        numbers = [v for v in found["data"].values() if isinstance(v, (int, float))]
        counts[entry] = counts.get(entry, 0) + len(numbers)
    return counts


@pytest.mark.e2e
def test_dvc_repro_end_to_end_and_only_changed_entries_rerun(pipeline_copy: Path):
    """repro, root status and metrics, a new width, then an experiment and a return to the
    baseline that trains nothing."""
    work = pipeline_copy
    dvc(work, "repro")
    paths = Paths(work)
    stats = json.loads(paths.stats.read_text())
    assert stats["m"] == 200 and stats["n_test"] == 100 and stats["input_shape"] == [1, 28, 28]
    assert torch.load(paths.train_data, weights_only=True)["x"].shape == (200, 1, 28, 28)
    for width in (2, 3):
        entry = Entry(2, width, 0)
        names = sorted(p.name for p in paths.checkpoints(entry).iterdir())
        assert names == ["epoch_0000.pt", "epoch_0001.pt", "epoch_0002.pt"]
        log = paths.train_log(entry).read_text().splitlines()
        assert log[0] == "step\ttrain_loss" and [r.split("\t")[0] for r in log[1:]] == ["1", "2"]
        assert json.loads(paths.train_metrics(entry).read_text())["step"] == 2
        rows = list(csv.DictReader(paths.results(entry).open()))
        assert [int(r["epoch"]) for r in rows] == [0, 1, 2]  # one row per checkpoint
        assert list(rows[-1]) == METRIC_KEYS and rows[-1]["m"] == "200"
        metrics = json.loads(paths.metrics(entry).read_text())
        assert list(metrics) == list(formulas.HEADLINE)
        assert metrics["ours"] == pytest.approx(float(rows[-1]["ours"]), rel=1e-6)
        assert metrics["certificate"] == pytest.approx(
            metrics["margin_error"] + metrics["ours_corrected"], rel=1e-5)
    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"check", "prepare", "train@2-2-0", "train@2-3-0", "evaluate@2-2-0",
                         "evaluate@2-3-0", "figures"}
    for path in (paths.figure1_png, paths.figure1_pdf, paths.figure_valid, paths.bounds_vs_width,
                 paths.layer_norms, paths.summary_csv):
        assert path.stat().st_size > 0, path
    assert "| CONV-2-3 | 1 |" in re.sub(" +", " ", paths.summary_md.read_text())  # unpadded
    assert lock["train@2-3-0"]["params"]["params.yaml"]["train"]["epochs"] == 2
    # the studies are DVC projects of their own: the root sees Figure 1's pipeline only
    status = dvc(work, "status")
    assert "up to date" in status.stdout and "studies" not in status.stdout + status.stderr
    counts = _numbers_per_entry(json.loads(dvc(work, "metrics", "show", "--json").stdout))
    # headline only: the 12 of formulas.HEADLINE and the train log's step and loss
    assert len(formulas.HEADLINE) == 12
    assert counts == {"2-2-0": 14, "2-3-0": 14}

    # a new width: only its own stage runs, the others are untouched
    (work / "params.yaml").write_text(yaml.safe_dump(tiny_params(grid={"widths": [2, 4]})))
    out = dvc(work, "repro").stdout
    assert "Running stage 'train@2-4-0'" in out and "Running stage 'evaluate@2-4-0'" in out
    assert "Running stage 'check'" in out  # params changed: validated before anything else
    assert out.index("Running stage 'check'") < out.index("Running stage 'train@2-4-0'")
    assert "Running stage 'train@2-2-0'" not in out and "Running stage 'prepare'" not in out
    assert "Running stage 'evaluate@2-2-0'" not in out and "Running stage 'figures'" in out
    assert "up to date" in dvc(work, "status").stdout

    # an experiment, then back to the baseline: its checkpoints come from the cache
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], cwd=work, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "baseline"], cwd=work, check=True)
    def saved() -> dict[Path, bytes]:  # the checkpoints of the current grid
        return {p: p.read_bytes() for p in sorted(work.glob("checkpoints/2-[24]-0/*.pt"))}

    baseline = saved()
    out = dvc(work, "exp", "run", "-S", "train.lr=0.02").stdout
    assert "Running stage 'train@2-2-0'" in out
    assert any(p.read_bytes() != b for p, b in baseline.items())  # trained anew
    subprocess.run(["git", "checkout", "--", "."], cwd=work, check=True)
    dvc(work, "checkout")
    assert saved() == baseline
    out = dvc(work, "repro").stdout
    assert "Running stage" not in out and "up to date" in dvc(work, "status").stdout


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
