"""Studies: dense and strided variants, label noise, variants in params, each pipeline."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from normbounds.measure import bounds
from normbounds.measure.formulas import BOUND_NAMES
from normbounds.measure.network import describe
from normbounds.pipeline.config import ConfigError, load_params, parse_params
from normbounds.pipeline.data import noisy_labels, prepare
from normbounds.pipeline.models import Arch, GridNet
from normbounds.pipeline.paths import Paths
from normbounds.pipeline.results import load_study
from normbounds.report.studies import FIGURES, REPORTS, numbers_markdown

from pipeline_helpers import REPO, dvc, tiny_params

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
    for name in ("a-b", "m0.5"):  # DVC reads variants.m0.5 as a nested key
        with pytest.raises(ConfigError, match=f"variants = '{name}' is invalid: variant names"
                                              " use letters, digits and '_' only"):
            parse_params({**raw, "variants": {name: {}}})
    with pytest.raises(ConfigError, match="model.family = 'rnn' is invalid: must be one of"):
        parse_params(tiny_params(model={"family": "rnn"}))


STUDIES = ["depth", "label_noise", "ranking", "sample_size", "sparsity"]


@pytest.mark.parametrize("study", STUDIES)
def test_a_study_resolves_and_its_figure_comes_from_its_committed_results(study, tmp_path):
    """Every study's pipeline resolves (DVC expands its variants and grid into the stages
    its params ask for), and its figure code, run in process on the committed results,
    gives the committed metrics/study.json exactly (tests/e2e/test_study_pipeline.py runs
    one study end to end)."""
    folder = REPO / "studies" / study
    cfg = load_params(Paths(folder).params)
    names = set(dvc(folder, "stage", "list", "--name-only").stdout.split())
    for variant, vcfg in ((v, load_params(Paths(folder).params, v)) for v in cfg.variants):
        assert f"prepare@{variant}" in names
        assert {f"train@{variant}-{e.name}" for e in vcfg.entries()} <= names
        assert {f"evaluate@{variant}-{e.name}" for e in vcfg.entries()} <= names
    numbers = FIGURES[study](load_study(folder, cfg), tmp_path)
    committed = json.loads((folder / "metrics" / "study.json").read_text())
    assert json.loads(json.dumps({"study": study, **numbers})) == committed
    assert (tmp_path / "study.png").stat().st_size > 10_000
    report = REPORTS.get(study, numbers_markdown)(numbers)
    assert (folder / "reports" / "study.md").read_text() == report
    if study == "sample_size":
        assert set(committed["slope"]) == {*BOUND_NAMES, "gap"}


@pytest.mark.parametrize("study", STUDIES)
def test_study_dvc_yaml_declares_the_paths_of_paths_py(study):
    from normbounds.pipeline.config import Entry
    from normbounds.pipeline.paths import Paths

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
    assert expand(stages["figure"]["outs"]) == [str(paths.study_plots), str(paths.study_report)]
    assert expand(stages["figure"]["metrics"]) == [str(paths.study_metrics)]
    # its code deps are checked with every stage's (tests/pipeline/test_architecture.py)
    assert {"results", "../../stages/study.py"} <= set(stages["figure"]["deps"])


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_is_a_subdir_project_of_the_one_template(study):
    folder = REPO / "studies" / study
    assert (folder / "dvc.yaml").is_symlink()
    assert (folder / "dvc.yaml").resolve() == (REPO / "studies" / "study.dvc.yaml").resolve()
    assert (folder / ".dvc" / "config").is_file()  # `dvc init --subdir`


def test_the_readme_says_the_ranking_studys_generated_verdict():
    """The README's ranking block is the study's report's first lines: the verdict, then
    one line per claim of the paper."""
    report = (REPO / "studies" / "ranking" / "reports" / "study.md").read_text().splitlines()
    committed = json.loads((REPO / "studies" / "ranking" / "metrics" / "study.json").read_text())
    assert report[0] == committed["verdict"]
    summary = "\n".join(report[:report.index("## Scores") - 1])
    assert summary.count("\n- **") == 3
    assert f"<!-- ranking -->\n{summary}\n<!-- /ranking -->" in (REPO / "README.md").read_text()


def test_the_ranking_grid_can_resolve_a_psi_of_0_15():
    """The committed study has the power docs/studies.md promises: the permutation null
    resolves every |Psi| >= psi_resolved at p < 0.05, and psi_resolved is under 0.15; the
    report states the same number."""
    committed = json.loads((REPO / "studies" / "ranking" / "metrics" / "study.json").read_text())
    assert 0 < committed["psi_resolved"] < 0.15
    report = (REPO / "studies" / "ranking" / "reports" / "study.md").read_text()
    assert f"resolves |Psi| >= {committed['psi_resolved']:.3f} at p < 0.05" in report
