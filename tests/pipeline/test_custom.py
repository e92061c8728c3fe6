"""A user's own network through the pipeline: `model.family: custom` + `model.factory`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from normbounds.errors import UnsupportedLayerError
from normbounds.pipeline.config import ConfigError, Entry, parse_params
from normbounds.pipeline.data import Split
from normbounds.pipeline.models import arch_for
from normbounds.pipeline.support import refuse_unreadable
from normbounds.pipeline.train import train_entry

from pipeline_helpers import tiny_params

CUSTOM = {"family": "custom", "factory": "examples.small_cnn:build"}


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
    assert "max pooling (1 place: 1 (MaxPool2d)) - use AvgPool2d instead" in str(err.value)
    assert "a nonlinearity other than ReLU (1 place: 2 (Tanh)) - use ReLU" in str(err.value)


def _train(cfg, root: Path) -> None:
    stats = {"input_shape": [1, 28, 28], "num_classes": 10}
    arch = arch_for(2, 3, cfg.model, stats)
    data = Split(torch.rand(20, 1, 28, 28), torch.arange(20) % 10)
    train_entry(cfg, Entry(2, 3, 0), data, arch, root / "ckpt", "digest", log=lambda _: None)
