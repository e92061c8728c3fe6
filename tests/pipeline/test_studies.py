"""Studies: dense and strided variants, label noise, variants in params, each pipeline."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from normbounds.config import ConfigError, parse_params
from normbounds.data import noisy_labels, prepare
from normbounds.measure import bounds
from normbounds.measure.formulas import BOUND_NAMES
from normbounds.measure.network import describe
from normbounds.models import Arch, GridNet

from pipeline_helpers import REPO, dvc, make_pipeline, tiny_params

STATS = {"m": 500, "num_classes": 10, "P": 37.5, "S": 210.0}


def _net(**arch) -> GridNet:
    torch.manual_seed(0)
    return GridNet(Arch((1, 8, 8), 10, 3, 5, **arch))


def test_dense_network_is_one_node_per_layer_and_ours_equals_golowich():
    net = _net(family="fc")
    specs = describe(net)
    assert [s.kind for s in specs] == ["fc", "fc", "fc", "head"]
    assert [s.in_shape for s in specs] == [(64,), (5,), (5,), (5,)]
    out = bounds.compute(net, torch.rand(20, 1, 8, 8), stats=STATS,
                         params=parse_params(tiny_params()).bound)
    assert [out[f"deg_l{i}"] for i in (1, 2, 3)] == [1, 1, 1]
    assert [out[f"pred_l{i}"] for i in (1, 2, 3)] == [1, 1, 1]
    assert out["data_p"] == STATS["S"] ** 2  # the first layer sees the whole image
    assert out["rho_golowich"] == pytest.approx(out["rho"], rel=1e-12)
    assert out["ours"] == pytest.approx(out["golowich"], rel=1e-12)
    assert out["ours"] > 0 and math.isfinite(out["ours"])


@pytest.mark.parametrize(("kernel", "stride", "deg", "pred"), [
    (2, 1, 4, 4),  # overlapping patches: the paper's
    (2, 2, 4, 4),  # non-overlapping: deg is the in-degree |pred|, not ceil(k / s)^2
    (3, 1, 9, 9),
    (3, 2, 9, 9),
])
def test_conv_variants_deg_and_pred(kernel, stride, deg, pred):
    specs = describe(GridNet(Arch((1, 16, 16), 10, 2, 3, kernel, stride)))
    assert [(s.deg, s.pred) for s in specs[:-1]] == [(deg, pred)] * (len(specs) - 1)


def test_dense_forward_matches_the_layers():
    net = _net(family="fc")
    x = torch.rand(4, 1, 8, 8)
    h = x.flatten(1)
    for layer in net.convs:
        h = torch.relu(h @ layer.weight.T)
    assert torch.allclose(net(x), h @ net.head.weight.T)
    assert len(net.gains()) == 3  # weight normalisation on every hidden layer


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 1.0])
def test_label_noise_changes_exactly_the_fraction(fraction):
    y = torch.arange(1000) % 10
    noisy = noisy_labels(y, fraction, 10, seed=3)
    changed = noisy != y
    assert int(changed.sum()) == round(fraction * 1000)
    assert ((noisy >= 0) & (noisy < 10)).all()
    assert torch.equal(noisy, noisy_labels(y, fraction, 10, seed=3))  # seeded
    if 0 < fraction < 1:
        assert not torch.equal(noisy, noisy_labels(y, fraction, 10, seed=4))


@pytest.mark.slow
def test_prepare_keeps_test_labels_and_counts_noise():
    clean_cfg = parse_params(tiny_params()).data
    noisy_cfg = parse_params(tiny_params(data={"label_noise": 0.5})).data
    clean_train, clean_test, _ = prepare(clean_cfg)
    train, test, stats = prepare(noisy_cfg)
    assert torch.equal(test.y, clean_test.y) and torch.equal(test.x, clean_test.x)
    assert torch.equal(train.x, clean_train.x)
    assert int((train.y != clean_train.y).sum()) == 100 == stats["noisy_labels"]
    assert stats["label_noise"] == 0.5


def test_variants_are_validated_and_selected():
    raw = {**tiny_params(), "variants": {"k2s2": {"model": {"stride": 2}}, "fc": {
        "model": {"family": "fc"}}}}
    assert parse_params(raw).variants == ("k2s2", "fc")
    assert parse_params(raw, "k2s2").model.stride == 2
    assert parse_params(raw, "fc").model.family == "fc"
    assert parse_params(raw).model.stride == 1
    with pytest.raises(ConfigError, match="variant 'k3' is not defined; variants: k2s2, fc"):
        parse_params(raw, "k3")
    bad = {**raw, "variants": {"x": {"data": {"label_noise": 1.5}}}}
    with pytest.raises(ConfigError, match=r"data.label_noise = 1.5 is invalid: must be in"
                                          r" \[0, 1\].*\(in variants.x\)"):
        parse_params(bad)
    with pytest.raises(ConfigError, match="variant names use letters"):
        parse_params({**raw, "variants": {"a-b": {}}})
    with pytest.raises(ConfigError, match="model.family = 'rnn' is invalid: must be one of"):
        parse_params(tiny_params(model={"family": "rnn"}))


# Each study's own params, shrunk: fewer samples, epochs and (for depth) layers.
TINY = {"data": {"train_size": 100, "test_size": 50},
        "train": {"epochs": 1, "batch_size": 50, "milestones": [1], "save_every": 1}}
STUDY_OVERRIDES = {
    "sparsity": {"variants": {"k2s2": {"model": {"kernel_size": 2, "stride": 2}},
                              "fc": {"model": {"family": "fc"}}}},
    "depth": {"grid": {"depths": [1, 2]}},
    "sample_size": {"variants": {"m50": {"data": {"train_size": 50}},
                                 "m100": {"data": {"train_size": 100}}}},
    "label_noise": {"variants": {"noise0": {"data": {"label_noise": 0.0}},
                                 "noise50": {"data": {"label_noise": 0.5}}}},
}


@pytest.mark.e2e
@pytest.mark.parametrize("study", list(STUDY_OVERRIDES))
def test_study_pipeline_end_to_end(tmp_path, study):
    params = yaml.safe_load((REPO / "studies" / study / "params.yaml").read_text())
    params["base"] = {"device": "cpu"}
    for section, values in {**TINY, **STUDY_OVERRIDES[study]}.items():
        params[section] = values if section == "variants" else {**params[section], **values}
    if study == "sample_size":
        params["data"].pop("train_size")
    work = make_pipeline(tmp_path / "repo", tiny_params(), "studies")
    (work / "studies" / study / "params.yaml").write_text(yaml.safe_dump(params))
    folder = work / "studies" / study
    dvc(folder, "repro")  # a study is a DVC project of its own, used from its folder
    metrics = json.loads((folder / "metrics" / "study.json").read_text())
    assert metrics["study"] == study
    assert (folder / "plots" / "study.png").stat().st_size > 10_000
    for variant in params["variants"]:
        assert sorted(p.name for p in (folder / "results" / variant).iterdir())
    assert "up to date" in dvc(folder, "status").stdout
    if study == "sparsity":
        fc = json.loads((folder / "metrics" / "fc" / "3-16-0.json").read_text())
        assert fc["ours"] == pytest.approx(fc["golowich"], rel=1e-9)
        assert fc["ours_corrected"] == pytest.approx(fc["golowich_corrected"], rel=1e-9)
        k2s2 = (folder / "results" / "k2s2" / "3-16-0.csv").read_text().splitlines()
        assert k2s2[-1].split(",")[k2s2[0].split(",").index("deg_l1")] == "4"  # the in-degree
    if study == "sample_size":
        assert set(metrics["slope"]) == {*BOUND_NAMES, "gap"}
    if study == "label_noise":
        stats = json.loads((folder / "data/prepared/noise50/stats.json").read_text())
        assert stats["noisy_labels"] == 50


@pytest.mark.parametrize("study", list(STUDY_OVERRIDES))
def test_study_dvc_yaml_declares_the_paths_of_paths_py(study):
    from normbounds.config import Entry
    from normbounds.paths import Paths

    stages = yaml.safe_load((REPO / "studies" / study / "dvc.yaml").read_text())["stages"]
    entry, paths = Entry(3, 16, 0), Paths(variant="v")

    def expand(items: list) -> list[str]:
        names = [next(iter(i)) if isinstance(i, dict) else i for i in items]
        out = []
        for name in names:
            for key, value in (("variant", "v"), ("depth", 3), ("width", 16), ("seed", 0)):
                name = name.replace("${item." + key + "}", str(value))
            out.append(name)
        return out

    assert expand(stages["prepare"]["outs"]) == [str(paths.prepared)]
    assert expand(stages["train"]["outs"]) == [str(paths.checkpoints(entry))]
    assert expand(stages["train"]["plots"]) == [str(paths.train_log(entry))]
    assert expand(stages["train"]["metrics"]) == [str(paths.train_metrics(entry))]
    assert {str(paths.train_data), str(paths.stats)} <= set(expand(stages["train"]["deps"]))
    assert expand(stages["evaluate"]["outs"]) == [str(paths.results(entry))]
    assert expand(stages["evaluate"]["metrics"]) == [str(paths.metrics(entry))]
    assert stages["figure"]["cmd"] == "python ../../stages/study.py"  # the folder names it
    assert expand(stages["figure"]["outs"]) == [str(paths.study_figure)]
    assert expand(stages["figure"]["metrics"]) == [str(paths.study_metrics)]
    # its code deps are checked with every stage's (tests/pipeline/test_architecture.py)
    assert {"results", "../../stages/study.py"} <= set(stages["figure"]["deps"])


@pytest.mark.parametrize("study", list(STUDY_OVERRIDES))
def test_every_study_is_a_subdir_project_of_the_one_template(study):
    folder = REPO / "studies" / study
    assert (folder / "dvc.yaml").is_symlink()
    assert (folder / "dvc.yaml").resolve() == (REPO / "studies" / "study.dvc.yaml").resolve()
    assert (folder / ".dvc" / "config").is_file()  # `dvc init --subdir`
