"""params.yaml loading: types, unknown keys, ranges, YAML 1.2 floats."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from normbounds.constraints import Interval
from normbounds.pipeline.config import ConfigError, Entry, feature_sides, load_params, parse_params

from pipeline_helpers import REPO, tiny_params


def test_default_params_load_and_grid_entries():
    cfg = load_params(REPO / "params.yaml")
    assert cfg.model.kernel_size == 2 and cfg.model.stride == 1
    assert [e.name for e in cfg.entries()] == [f"3-{w}-0" for w in cfg.grid.widths]
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0  # frozen


def test_float_without_dot_is_a_float(tmp_path):
    # DVC writes `weight_decay: 1e-3` for `-S train.weight_decay=1e-3`; YAML 1.1 reads a string
    raw = tiny_params()
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw).replace("lr: 0.01", "lr: 1e-3"))
    assert "lr: 1e-3" in path.read_text()
    assert load_params(path).train.lr == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("section", "values", "fragment"),
    [
        ("train", {"lr": "fast"}, "train.lr = 'fast' is invalid: must be a finite number"),
        ("train", {"epochs": 2.5}, "train.epochs = 2.5 is invalid: must be an integer"),
        ("train", {"epochs": True}, "train.epochs = True is invalid: must be an integer"),
        ("model", {"weight_norm": "yes"}, "model.weight_norm = 'yes' is invalid: must be true"),
        ("grid", {"widths": 8}, "grid.widths = 8 is invalid: must be a list of int"),
        ("data", {"dataset": "imagenet"}, "data.dataset = 'imagenet' is invalid: must be one of"),
        ("train", {"loss": "hinge"}, "train.loss = 'hinge' is invalid: must be one of mse,"),
        ("base", {"device": "tpu"}, "base.device = 'tpu' is invalid: must be one of auto,"),
        ("bound", {"lipschitz": "fro"}, "bound.lipschitz = 'fro' is invalid"),
    ],
)
def test_wrong_types_name_key_value_and_allowed(section, values, fragment):
    with pytest.raises(ConfigError) as err:
        parse_params(tiny_params(**{section: values}))
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("section", "values", "fragment"),
    [
        ("train", {"lr": 0.0}, "train.lr = 0.0 is invalid: must be > 0"),
        ("train", {"momentum": 1.0}, "train.momentum = 1.0 is invalid: must be in [0, 1)"),
        ("train", {"weight_decay": -1e-4}, "train.weight_decay = -0.0001 is invalid"),
        ("train", {"epochs": 0}, "train.epochs = 0 is invalid: must be >= 1"),
        ("train", {"milestones": [5, 5]}, "train.milestones = [5, 5] is invalid: must be strictly"),
        ("train", {"save_every": 0}, "train.save_every = 0 is invalid"),
        ("grid", {"widths": []}, "grid.widths = [] is invalid: must list at least one value"),
        ("grid", {"depths": [0]}, "grid.depths = [0] is invalid: every value must be >= 1"),
        ("model", {"stride": 0}, "model.stride = 0 is invalid: must be >= 1"),
        ("bound", {"gamma": 0.0}, "bound.gamma = 0.0 is invalid: must be > 0"),
        ("bound", {"delta": 1.0}, "bound.delta = 1.0 is invalid: must be in (0, 1)"),
        ("data", {"standardize": True, "mean": [0.1, 0.2]}, "data.mean = [0.1, 0.2] is invalid"),
        ("data", {"svhn_extra": 10}, "data.svhn_extra = 10 is invalid: must be 0 unless"),
    ],
)
def test_out_of_range_values(section, values, fragment):
    with pytest.raises(ConfigError) as err:
        parse_params(tiny_params(**{section: values}))
    assert fragment in str(err.value)


def test_unknown_keys_are_errors_listing_allowed_keys():
    raw = tiny_params(train={"learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"unknown key 'train.learning_rate' in train; allowed"
                                          r" keys: epochs, batch_size, lr"):
        parse_params(raw)
    with pytest.raises(ConfigError, match="unknown key 'optim' in the top level"):
        parse_params({**tiny_params(), "optim": {}})


def test_depth_whose_feature_map_vanishes_is_rejected():
    # 28 -> 14 -> 7 -> 3 -> 1 with k = 2, s = 2: a fifth layer would see a 1x1 map
    assert feature_sides(28, 4, 2, 2) == [28, 14, 7, 3, 1]
    with pytest.raises(ConfigError, match="layer 5 would see a 1x1 feature map"):
        parse_params(tiny_params(grid={"depths": [5]}, model={"stride": 2}))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="parameter file not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_entry_names_round_trip():
    assert Entry.parse("3-200-4") == Entry(3, 200, 4)
    assert Entry(3, 200, 4).name == "3-200-4"
    with pytest.raises(ConfigError, match="expected <depth>-<width>-<seed>"):
        Entry.parse("3-200")


@pytest.mark.parametrize(("constraint", "value", "message"), [
    (Interval(int, 1), 0, "must be >= 1"),
    (Interval(float, 0, closed="neither"), 0.0, "must be > 0"),
    (Interval(float, 0, 1, closed="left"), 1.0, "must be in [0, 1)"),
    (Interval(float, 0, 1, closed="right"), 0.0, "must be in (0, 1]"),
    (Interval(int, 1, top=1_000), 1_001, "must be at most 1,000"),
    (Interval(int, 1, top=1_000), (5, 0), "every value must be >= 1"),
    (Interval(float, 0, 1, why="(a fraction)"), 2.0, "must be in [0, 1] (a fraction)"),
])
def test_one_declaration_holds_both_limits_and_the_message(constraint, value, message):
    assert constraint.explain(value) == message
    inside = 0.5 if constraint.kind is float else 1
    assert constraint.explain(inside) is None
    assert constraint.explain("auto") is None  # words are the field type's business


def test_every_limit_is_declared_with_its_field():
    """The ceilings against typos live in the field declarations (no second table)."""
    from normbounds.constraints import check_fields
    from normbounds.pipeline.config import TrainConfig

    top = {f.name: f.metadata["constraint"].top for f in dataclasses.fields(TrainConfig)
           if f.metadata.get("constraint") is not None}
    assert top["epochs"] == top["save_every"] == 1_000_000
    assert top["batch_size"] == 10_000_000 and top["lr"] is None
    with pytest.raises(ConfigError, match=r"^params.yaml: train.epochs = 2000000 is invalid:"
                                          r" must be at most 1,000,000$"):
        check_fields(TrainConfig(epochs=2_000_000), "train")
