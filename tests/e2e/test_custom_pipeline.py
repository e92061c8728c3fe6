"""A user's own network through `dvc repro`: `model.family: custom` + `model.factory`."""

from __future__ import annotations

import csv
import json
import math

import pytest

from normbounds.measure import formulas
from normbounds.pipeline.config import Entry
from normbounds.pipeline.paths import Paths

from pipeline_helpers import dvc, make_pipeline, tiny_params

CUSTOM = {"family": "custom", "factory": "examples.small_cnn:build"}


@pytest.mark.e2e
def test_a_padded_biased_custom_cnn_goes_through_dvc_repro(tmp_path):
    params = tiny_params(model=CUSTOM, grid={"depths": [2], "widths": [3], "seeds": [0]})
    work = make_pipeline(tmp_path / "work", params, "examples")
    dvc(work, "repro")
    paths = Paths(work)
    stats = json.loads(paths.stats.read_text())
    rows = list(csv.DictReader(paths.results(Entry(2, 3, 0)).open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    last = rows[-1]
    # two 3x3 convs with "same" padding (stride 1, then 2) and biases: augmented weights,
    # and a constant channel in the data: P + m
    assert (last["deg_l1"], last["pred_l1"], last["deg_l2"], last["pred_l2"]) == (
        "9", "9", "9", "9")
    assert float(last["data_p"]) == pytest.approx(stats["P"] + stats["m"], rel=1e-9)
    assert all(math.isfinite(float(last[name])) for name in
               formulas.BOUND_NAMES)
    assert paths.figure1_png.stat().st_size > 0
