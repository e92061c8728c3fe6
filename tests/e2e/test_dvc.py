"""`dvc repro` end to end on the session's trained repository: its outputs, only the
changed entries rerunning, a fresh clone that rewrites no lock line, and the way back to
the baseline after an experiment (docs/pipeline.md, "The review loop")."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from normbounds.measure import formulas
from normbounds.measure.certificates import grid_key, margin_key
from normbounds.measure.options import BoundConfig
from normbounds.pipeline.config import Entry
from normbounds.pipeline.paths import Paths

from pipeline_helpers import dvc, git, own_code, subprocess_env, tiny_params

LAYER_KEYS = ["fro", "sigma", "sigma_lower", "sigma_upper", "lanczos_steps", "lanczos_converged",
              "l21", "a", "b"]
GAMMAS = BoundConfig().gammas
METRIC_KEYS = (
    ["epoch", "train_error", "test_error", "gap", "n_test", "train_loss", "test_loss",
     "margin_error", "margin_p10", "certificate", "certificate_gamma", "non_vacuous",
     "held_out", "status_held_out", *map(margin_key, GAMMAS),
     *(f"dist_init_l{i}" for i in (1, 2, 3)), "m", "num_classes", "depth_d", "n_params",
     "n_max", "a_max",
     "data_p", "data_s", "rho", "log_rho", "rho_corrected", "head_block_norm", "rho_golowich",
     "rho_golowich_corrected", *formulas.BOUND_NAMES, *map(grid_key, GAMMAS), "notes",
     *map(formulas.status_column, formulas.BOUND_NAMES)]
    + [f"{k}_l{i}" for i in (1, 2) for k in LAYER_KEYS + ["deg", "pred"]]
    + [f"{k}_l3" for k in LAYER_KEYS]
)


def _numbers_per_entry(shown: dict) -> dict[str, int]:
    """Numeric leaves of `dvc metrics show --json`, counted per grid entry (file stem)."""
    counts: dict[str, int] = {}
    for path, found in shown[""]["data"].items():
        entry = Path(path).stem if Path(path).stem != "metrics" else Path(path).parent.name
        numbers = [v for v in found["data"].values() if isinstance(v, (int, float))]
        counts[entry] = counts.get(entry, 0) + len(numbers)
    return counts


@pytest.mark.e2e
def test_the_trained_pipeline_holds_every_output(trained_copy: Path):
    work, paths = trained_copy, Paths(trained_copy)
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
        last = {k: float(v) for k, v in rows[-1].items() if k.startswith(("margin_error_g",
                                                                           "ours_corrected_g"))}
        assert float(rows[-1]["certificate"]) == min(last[margin_key(g)] + last[grid_key(g)]
                                                     for g in GAMMAS)
        assert metrics["certificate"] == pytest.approx(float(rows[-1]["certificate"]), rel=1e-5)
        assert rows[-1]["status_graf"] == "theorem"
        assert float(rows[-1]["held_out"]) > float(rows[-1]["test_error"])
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
    # headline only: the 14 of formulas.HEADLINE and the train log's step and loss
    assert len(formulas.HEADLINE) == 14
    assert counts == {"2-2-0": 16, "2-3-0": 16}


@pytest.mark.e2e
def test_a_new_width_runs_its_own_stages_only(trained_copy: Path):
    work = trained_copy
    (work / "params.yaml").write_text(yaml.safe_dump(tiny_params(grid={"widths": [2, 4]})))
    out = dvc(work, "repro").stdout
    assert "Running stage 'train@2-4-0'" in out and "Running stage 'evaluate@2-4-0'" in out
    assert "Running stage 'check'" in out  # params changed: validated before anything else
    assert out.index("Running stage 'check'") < out.index("Running stage 'train@2-4-0'")
    assert "Running stage 'train@2-2-0'" not in out and "Running stage 'prepare'" not in out
    assert "Running stage 'evaluate@2-2-0'" not in out and "Running stage 'figures'" in out
    assert "up to date" in dvc(work, "status").stdout


@pytest.mark.e2e
def test_a_fresh_clone_rewrites_no_lock_line_and_comes_back_from_an_experiment(
        trained_repo: Path, tmp_path: Path):
    """A clone at another path (no DVC cache, no checkpoints) retrains every entry with its
    own code: dvc.lock, checkpoint-folder hashes included, is byte for byte the committed
    one. Then an experiment, and the documented way back keeps every checkpoint."""
    clone = tmp_path / "elsewhere" / "clone"
    git(tmp_path, "clone", "-q", str(trained_repo), str(clone))
    assert not list(clone.glob("checkpoints/*/*.pt")) and not (clone / ".dvc" / "cache").exists()
    out = dvc(clone, "repro").stdout
    assert "Running stage 'train@2-2-0'" in out and "Running stage 'evaluate@2-2-0'" not in out
    assert git(clone, "status", "--porcelain") == ""
    baseline = {p: p.read_bytes() for p in sorted(clone.glob("checkpoints/*/*.pt"))}
    assert len(baseline) == 6  # two entries, three checkpoints each

    out = dvc(clone, "exp", "run", "-S", "train.lr=0.02").stdout
    assert "Running stage 'train@2-2-0'" in out
    assert all(p.read_bytes() != b for p, b in baseline.items())  # another config
    # the review screen (docs/pipeline.md): the one changed param, the moved metrics, 160 wide
    shown = subprocess.run([sys.executable, "-c",
                            "from normbounds.pipeline.cli import main; main()", "review"],
                           cwd=clone, env=subprocess_env(**own_code(clone)),
                           capture_output=True, text=True, check=True).stdout.splitlines()
    print("\n".join(shown))  # the screen itself, in the test's log
    assert shown[0] == "changed params: train.lr 0.01 -> 0.02"
    assert shown[1].split() == ["|", "metric", "|", "2-2-0", "|", "2-3-0", "|"]
    assert max(len(line) for line in shown) <= 160 and "| ours " in "\n".join(shown)
    # and `dvc metrics diff`, as documented: one row per changed number, nothing unchanged
    moved = json.loads(dvc(clone, "metrics", "diff", "--json").stdout)
    rows = [(path, key, c) for path, found in moved.items() for key, c in found.items()]
    assert rows and all(c["old"] != c["new"] for _, _, c in rows)
    assert {key for path, key, _ in rows if path.startswith("metrics/")} <= set(
        formulas.HEADLINE)
    git(clone, "checkout", "--", ".")  # the documented way back: docs/pipeline.md
    dvc(clone, "checkout")
    assert {p: p.read_bytes() for p in sorted(clone.glob("checkpoints/*/*.pt"))} == baseline
    assert "Running stage" not in dvc(clone, "repro").stdout
    assert git(clone, "status", "--porcelain") == ""
