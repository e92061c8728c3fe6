"""The paper profile's code path (`make paper`) on a tiny MNIST written as IDX files."""

from __future__ import annotations

import csv
import json
import re
import subprocess

import pytest
import torch
import yaml

from normbounds.pipeline.config import Entry
from normbounds.pipeline.paths import Paths

from pipeline_helpers import REPO, dvc, make_pipeline, write_mnist

# the Makefile's settings that a CPU test cannot afford, made tiny
TINY = {"data.download": "false", "grid.widths": "[8]", "grid.seeds": "[0]",
        "train.epochs": "2", "train.save_every": "1", "train.milestones": "[1]"}


def paper_settings() -> dict[str, str]:
    """The `-S key=value` pairs of the Makefile's PAPER profile, in order."""
    text = (REPO / "Makefile").read_text()
    block = text[text.index("PAPER :="):].split("\n\n")[0].replace("\\\n", " ")
    return dict(re.findall(r"-S '?([\w.]+)=([^' ]+)'?", block))


@pytest.mark.e2e
def test_the_paper_profile_runs_through_dvc_exp_run_on_tiny_mnist(tmp_path):
    settings = paper_settings()
    assert settings["data.dataset"] == "mnist" and settings["grid.depths"] == "[3]"
    assert settings["train.epochs"] == "500" and settings["grid.widths"] == "[200,600,1000]"
    # the repository's own params.yaml, as `make paper` runs on it
    work = make_pipeline(tmp_path / "work", yaml.safe_load((REPO / "params.yaml").read_text()))
    write_mnist(work / "data" / "raw", "MNIST", 300, 100)  # what the profile downloads
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], cwd=work, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "baseline"], cwd=work, check=True)
    args = [arg for key, value in {**settings, **TINY}.items()
            for arg in ("-S", f"{key}={value}")]
    dvc(work, "exp", "run", "-n", "paper-tiny", *args)
    paths = Paths(work)
    stats = json.loads(paths.stats.read_text())
    assert (stats["dataset"], stats["m"], stats["n_test"]) == ("mnist", 300, 100)
    entry = Entry(3, 8, 0)
    folder = paths.checkpoints(entry)
    assert sorted(p.name for p in folder.iterdir()) == [
        "epoch_0000.pt", "epoch_0001.pt", "epoch_0002.pt"]  # finished: no resume.pt
    state = torch.load(folder / "epoch_0002.pt", weights_only=True)
    assert state["config"]["train"]["batch_size"] == 32  # the paper's, not the tiny base's
    rows = list(csv.DictReader(paths.results(entry).open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and rows[-1]["m"] == "300"
