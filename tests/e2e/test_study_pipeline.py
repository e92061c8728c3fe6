"""A study pipeline end to end: the ranking study on a 4-run grid (two variants, two
depths). Every study resolves and draws its figure from its committed results in
tests/pipeline/test_studies.py; the sparsity study's numbers (the dense network's
ours = golowich, the in-degree of strided convs) are tested there without training."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline_helpers import REPO, dvc, make_pipeline, tiny_params

# the ranking study on 4 runs: depth x training-set size, one seed, 2 epochs
RANKING = {"data": {"test_size": 50},
           "grid": {"depths": [1, 2], "widths": [3], "seeds": [0]},
           "train": {"epochs": 2, "batch_size": 50, "save_every": 1},
           "ranking": {"stop_train_error": 0.9},  # the tiny runs reach it after an epoch or two
           "variants": {"m60": {"data": {"train_size": 60}},
                        "m100": {"data": {"train_size": 100}}}}


@pytest.mark.e2e
def test_the_ranking_study_end_to_end(tmp_path):
    from normbounds.report.ranking_study import RANKED

    params = yaml.safe_load((REPO / "studies" / "ranking" / "params.yaml").read_text())
    params["base"] = {"device": "cpu", "threads": 1}
    for section, values in RANKING.items():
        params[section] = values if section == "variants" else {**params[section], **values}
    work = make_pipeline(tmp_path / "repo", tiny_params(), "studies")
    folder = work / "studies" / "ranking"
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    dvc(folder, "repro")
    metrics = json.loads((folder / "metrics" / "study.json").read_text())
    assert metrics["study"] == "ranking" and metrics["hyperparameters"] == ["depth", "train_size"]
    assert metrics["runs"] == 4 and metrics["kept"] + len(metrics["missed"]) == 4
    assert set(metrics["scores"]) == set(RANKED)
    report = (folder / "reports" / "study.md").read_text().splitlines()
    assert report[0] == metrics["verdict"]
    assert [line[:8] for line in report[2:5]] == ["- **Tigh", "- **Spar", "- **Expl"]
    table = report[report.index("## Scores"):report.index("## Sensitivity to the stopping"
                                                             " threshold")]
    rows = [line for line in table if line.startswith("| ") and line[2:5] not in ("mea", "---")]
    assert [r.split(" | ")[0][2:] for r in rows] == list(metrics["scores"])  # sorted by Psi
    assert [r["threshold"] for r in metrics["sensitivity"]] == [0.9, 0.05, 0.09]
    assert all(r["status"] == "control" for n, r in metrics["scores"].items()
               if n.startswith(("pacbayes", "sharpness")))
    for name in ("study.png", "scatter.png"):
        assert (folder / "plots" / name).stat().st_size > 10_000
    for variant in params["variants"]:
        assert sorted(p.name for p in (folder / "results" / variant).iterdir()) == [
            "1-3-0.csv", "2-3-0.csv"]
    assert "up to date" in dvc(folder, "status").stdout
