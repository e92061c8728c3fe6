"""A user's own network through the pipeline: `model.family: custom` + `model.factory`."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from normbounds.config import ConfigError, Entry, parse_params
from normbounds.data import Split
from normbounds.errors import UnsupportedLayerError
from normbounds.measure import formulas
from normbounds.models import arch_for
from normbounds.paths import Paths
from normbounds.support import refuse_unreadable
from normbounds.train import train_entry

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


def _write_module(root: Path, body: str) -> None:
    (root / "mymodels.py").write_text("from torch import nn\n\n\n" + body)


def test_a_factory_that_does_not_import_is_refused_by_the_check(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"model.factory = 'examples.small_cnn' is invalid: must"
                       r" look like \"package.module:function\""):
        parse_params(tiny_params(model={**CUSTOM, "factory": "examples.small_cnn"}))
    with pytest.raises(ConfigError, match="must be set .* exactly when model.family is custom"):
        parse_params(tiny_params(model={"family": "custom"}))
    monkeypatch.chdir(tmp_path)
    cfg = parse_params(tiny_params(model={**CUSTOM, "factory": "nosuch.models:build"}))
    with pytest.raises(ConfigError, match=r"module 'nosuch.models' does not import"):
        _train(cfg, tmp_path)
    assert not (tmp_path / "ckpt").exists()


def test_an_unsupported_custom_network_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_module(tmp_path, "def build(in_shape, num_classes, depth, width):\n"
                  "    return nn.Sequential(nn.Conv2d(in_shape[0], width, 2), nn.MaxPool2d(2),"
                  " nn.Tanh(), nn.Flatten(), nn.Linear(width * 169, num_classes))\n")
    cfg = parse_params(tiny_params(model={**CUSTOM, "factory": "mymodels:build"}))
    # the prepare stage refuses it (support.py), so no train stage starts
    with pytest.raises(UnsupportedLayerError) as err:
        refuse_unreadable(cfg, {"input_shape": [1, 28, 28], "num_classes": 10})
    assert "1 (MaxPool2d): max pooling" in str(err.value)
    assert "2 (Tanh): a nonlinearity other than ReLU" in str(err.value)


def _train(cfg, root: Path) -> None:
    stats = {"input_shape": [1, 28, 28], "num_classes": 10}
    arch = arch_for(2, 3, cfg.model, stats)
    data = Split(torch.rand(20, 1, 28, 28), torch.arange(20) % 10)
    train_entry(cfg, Entry(2, 3, 0), data, arch, root / "ckpt", "digest", log=lambda _: None)
