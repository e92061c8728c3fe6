"""One study pipeline end to end (sparsity: the dense and the strided variant); the
others resolve and draw their figures in tests/pipeline/test_studies.py."""

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
