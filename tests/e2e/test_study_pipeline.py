"""Two study pipelines end to end (sparsity: the dense and the strided variant; the
ranking on a 4-run grid); the others resolve and draw their figures in
tests/pipeline/test_studies.py."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline_helpers import REPO, dvc, make_pipeline, tiny_params

# the study's own params, shrunk: fewer samples and epochs, two variants
TINY = {"data": {"train_size": 100, "test_size": 50},
        "train": {"epochs": 1, "batch_size": 50, "milestones": [1], "save_every": 1},
        "variants": {"k2s2": {"model": {"kernel_size": 2, "stride": 2}},
                     "fc": {"model": {"family": "fc"}}}}


@pytest.mark.e2e
def test_the_sparsity_study_end_to_end(tmp_path):
    params = yaml.safe_load((REPO / "studies" / "sparsity" / "params.yaml").read_text())
    params["base"] = {"device": "cpu", "threads": 1}
    for section, values in TINY.items():
        params[section] = values if section == "variants" else {**params[section], **values}
    work = make_pipeline(tmp_path / "repo", tiny_params(), "studies")
    folder = work / "studies" / "sparsity"
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    dvc(folder, "repro")  # a study is a DVC project of its own, used from its folder
    metrics = json.loads((folder / "metrics" / "study.json").read_text())
    assert metrics["study"] == "sparsity"
    assert (folder / "plots" / "study.png").stat().st_size > 10_000
    for variant in params["variants"]:
        assert sorted(p.name for p in (folder / "results" / variant).iterdir())
    assert "up to date" in dvc(folder, "status").stdout
    fc = json.loads((folder / "metrics" / "fc" / "3-16-0.json").read_text())
    assert fc["ours"] == pytest.approx(fc["golowich"], rel=1e-9)
    assert fc["ours_corrected"] == pytest.approx(fc["golowich_corrected"], rel=1e-9)
    k2s2 = (folder / "results" / "k2s2" / "3-16-0.csv").read_text().splitlines()
    assert k2s2[-1].split(",")[k2s2[0].split(",").index("deg_l1")] == "4"  # the in-degree


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
    table = (folder / "reports" / "study.md").read_text().splitlines()
    assert table[0] == metrics["verdict"]
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| measure")]
    assert [r.split(" | ")[0][2:] for r in rows] == list(metrics["scores"])  # sorted by Psi
    for name in ("study.png", "scatter.png"):
        assert (folder / "plots" / name).stat().st_size > 10_000
    assert "up to date" in dvc(folder, "status").stdout
