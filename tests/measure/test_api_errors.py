"""Misuse of the API and the CLI: one line naming the argument and the fix, never a traceback."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from torch import nn

from normbounds.errors import (
    InputError,
    MissingDependencyError,
    NormboundsError,
    needs,
)
from normbounds.measure import bounds
from normbounds.measure.assessment import assess
from normbounds.measure.options import BoundConfig
from normbounds.pipeline import cli


def _model(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 2, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 7 * 7, 4, bias=False)).to(dtype).eval()


def test_a_float64_model_reads_float32_inputs_as_float64():
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = bounds.compute(_model(torch.float64), x)  # float32 inputs: cast, not a crash
    assert ours == bounds.compute(_model(torch.float64), x.double())
    # and a float32 model casts float64 inputs down, as its own forward pass would
    assert bounds.compute(_model(), x.double())["b_l1"] == pytest.approx(
        bounds.compute(_model(), x)["b_l1"], rel=1e-7)


@pytest.mark.parametrize(("x", "message"), [
    (torch.rand(5, 8, 8), "train_x: expected a batch of images of shape (N, c, n, n), N images"
                          " of c channels and n x n pixels; got shape (5, 8, 8) (one channel?"
                          " add its axis: x.unsqueeze(1))"),
    ([[0.0]], "train_x: expected a batch of images of shape (N, c, n, n), N images of c"
              " channels and n x n pixels; got list"),
    (torch.rand(0, 1, 8, 8), "train_x: expected float images of shape (N, 1, 8, 8) with N >= 1,"
                             " got (0, 1, 8, 8) torch.float32"),
    (torch.ones(4, 1, 8, 8, dtype=torch.int64), "train_x: expected float images of shape"
                                                " (N, 1, 8, 8) with N >= 1, got (4, 1, 8, 8)"
                                                " torch.int64"),
    (torch.full((4, 1, 8, 8), float("nan")), "train_x: holds nan or inf; pass finite images"),
])
def test_bad_training_inputs_are_named(x, message):
    with pytest.raises(InputError) as err:
        bounds.compute(_model(), x)
    assert str(err.value) == message


def test_assess_names_a_missing_channel_axis_before_tracing_the_model():
    x = torch.rand(6, 8, 8)
    with pytest.raises(InputError) as err:
        assess(_model(), x, torch.arange(6) % 4)
    assert str(err.value).endswith("got shape (6, 8, 8) (one channel? add its axis:"
                                   " x.unsqueeze(1))")


@pytest.mark.parametrize(("params", "message"), [
    (BoundConfig(gamma=0.0), "params: gamma = 0.0 is invalid: must be > 0"),
    ({"gamma": 0.0}, "params: gamma = 0.0 is invalid: must be > 0"),
    ({"delta": 1.5}, "params: delta = 1.5 is invalid: must be in (0, 1)"),
    ({"gama": 2.0}, "params: unknown key 'bound.gama' in bound; allowed keys: gamma, gammas,"
                    " delta, lipschitz, reference, lanczos_tol, lanczos_max_steps,"
                    " eval_batch_size"),
    ({"lipschitz": "upper"}, "params: lipschitz = 'upper' is invalid: must be one of"
                             " certified, estimate, reshaped"),
    ("gamma=2", "params: expected a BoundConfig or a mapping of its keys, got str"),
])
def test_bad_options_are_named_as_params_yaml_names_them(params, message):
    x = torch.rand(6, 1, 8, 8)
    for call in (lambda: bounds.compute(_model(), x, params=params),
                 lambda: assess(_model(), x, torch.arange(6) % 4, params=params)):
        with pytest.raises(InputError) as err:
            call()
        assert str(err.value) == message


def test_a_mapping_of_options_is_the_same_as_a_bound_config():
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    mapped = bounds.compute(_model(), x, params={"gamma": 2.0, "gammas": [1.0, 2.0]})
    assert mapped == bounds.compute(_model(), x, params=BoundConfig(gamma=2.0, gammas=(1.0, 2.0)))


def test_raw_pixels_are_warned_about_not_refused():
    x = torch.randint(0, 256, (6, 1, 8, 8), generator=torch.Generator().manual_seed(4)).float()
    with pytest.warns(UserWarning) as caught:
        bounds.compute(_model(), x)
    assert [str(w.message) for w in caught] == [
        f"train_x: whole numbers from 0 to {x.max().item():g}, like raw 0-255 pixels; every"
        " bound grows with the input norm, so pass the inputs exactly as the model saw them in"
        " training (x / 255 for pixels in [0, 1])"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scaled inputs: no warning
        bounds.compute(_model(), x / 255)


def test_missing_statistics_and_patch_norms_are_named():
    stats = {"m": 10, "P": 1.0, "S": 2.0, "X": 1.0}
    with pytest.raises(InputError, match=r"^stats: missing \[.input_shape.\]; pass m, P, S and"):
        bounds.compute(_model(), stats=stats, patch_norms=[1.0, 1.0])
    with pytest.raises(InputError, match=r"^patch_norms: 3 values for a network of 2 layers"):
        bounds.compute(_model(), stats={**stats, "input_shape": [1, 8, 8]},
                       patch_norms=[1.0, 1.0, 1.0])


@pytest.fixture
def factory(tmp_path, monkeypatch):
    """A factory module whose state_dict loading fails with an empty message."""
    (tmp_path / "emptyerr.py").write_text(
        "from torch import nn\n\n\nclass Net(nn.Sequential):\n"
        "    def load_state_dict(self, state, strict=True):\n        raise RuntimeError()\n\n\n"
        "def build():\n    return Net(nn.Conv2d(1, 2, 2, bias=False), nn.ReLU(), nn.Flatten(),"
        " nn.Linear(2 * 7 * 7, 3, bias=False))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("emptyerr", None)


def test_cli_data_files_name_each_mistake(factory):
    x, y = torch.rand(6, 1, 8, 8), torch.arange(6) % 3
    bad = {"empty.pt": ({"x": x[:0], "y": y[:0]}, "x: holds no images (shape (0, 1, 8, 8))"),
           "short.pt": ({"x": x, "y": y[:4]},
                        "y: expected 6 integer class labels, shape (6,), got (4,) torch.int64"),
           "nan.pt": ({"x": torch.full_like(x, float("inf")), "y": y},
                      "x: holds nan or inf; pass finite images"),
           "float_labels.pt": ({"x": x, "y": y.float()}, "y: expected 6 integer class labels,"
                               " shape (6,), got (6,) torch.float32")}
    for name, (blob, message) in bad.items():
        torch.save(blob, factory / name)
        with pytest.raises(InputError) as err:
            cli.run(["bounds", "emptyerr:build", "--data", name])
        assert str(err.value) == f"{name}: {message}"


def test_an_exception_without_a_message_still_gives_one_line(factory):
    torch.save({"x": torch.rand(6, 1, 8, 8), "y": torch.arange(6) % 3}, factory / "d.pt")
    torch.save({}, factory / "w.pt")
    with pytest.raises(NormboundsError) as err:
        cli.run(["bounds", "emptyerr:build", "--weights", "w.pt", "--data", "d.pt"])
    assert str(err.value) == "--weights w.pt: does not fit emptyerr:build (RuntimeError)"


@pytest.mark.parametrize(("y", "message"), [
    (torch.arange(5), "train_y: expected 6 integer class labels, shape (6,), got (5,)"
                      " torch.int64"),
    (torch.zeros(6), "train_y: expected 6 integer class labels, shape (6,), got (6,)"
                     " torch.float32"),
    (torch.zeros(6, 1, dtype=torch.long), "train_y: expected 6 integer class labels, shape"
                                          " (6,), got (6, 1) torch.int64"),
    ([0, 1, 2, 3, 4, 5], "train_y: expected 6 integer class labels, shape (6,), got list"),
    (torch.tensor([0, 1, 2, 3, 4, 10]), "train_y: labels must lie in 0..3 (the model has 4"
                                        " logits), got 0..10"),
    (torch.tensor([0, 1, 2, 3, -1, 0]), "train_y: labels must lie in 0..3 (the model has 4"
                                        " logits), got -1..3"),
])
def test_bad_labels_are_named(y, message):
    with pytest.raises(InputError) as err:
        assess(_model(), torch.rand(6, 1, 8, 8), y)
    assert str(err.value) == message


def test_assess_gives_the_errors_and_the_certificate_with_test_labels_checked():
    x, y = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2)), torch.arange(6) % 4
    row = assess(_model(), x, y, test=(x, y), params=BoundConfig(gammas=(1.0,)))
    assert row["gap"] == row["test_error"] - row["train_error"] == 0.0
    assert row["certificate"] == row["margin_error"] + row["ours_corrected"]  # one margin
    assert "train_loss" not in row  # no loss given: no loss column
    with pytest.raises(InputError, match=r"^test_y: expected 6 integer class labels"):
        assess(_model(), x, y, test=(x, y.float()))


@pytest.mark.parametrize(("module", "message"), [
    ("PIL.nosuchmodule", "reading an image folder needs the package 'PIL', which is not"
                         " installed: run pip install '.[images]' in the repository's checkout"
                         " (or `make setup` there)"),
    ("nosuchpackage.sub", "reading an image folder needs the package 'nosuchpackage', which is"
                          " not installed: run pip install '.[pipeline]' in the repository's"
                          " checkout (or `make setup` there)"),
])
def test_a_missing_package_names_the_extra_that_brings_it(module, message):
    with pytest.raises(MissingDependencyError) as err:
        needs(module, "reading an image folder")
    assert str(err.value) == message


def _three_channel_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


@pytest.mark.parametrize("form", ["module", "script"])
def test_a_model_that_fails_on_the_inputs_is_one_line_with_torchs_message(form, capfd):
    """A model built for 3 channels, given 1-channel images: the inputs are wrong (not a
    layer), said with torch's own message, and nothing printed on stderr."""
    from normbounds.errors import ModelInputError

    model = _three_channel_model()
    if form == "script":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.script(model)
    with pytest.raises(ModelInputError) as info:
        bounds.compute(model, torch.rand(8, 1, 8, 8))
    assert str(info.value) == (
        "Sequential fails on inputs of shape (1, 8, 8): Given groups=1, weight of size"
        " [4, 3, 3, 3], expected input[1, 1, 8, 8] to have 3 channels, but got 1 channels"
        " instead")
    assert isinstance(info.value, InputError) and "\n" not in str(info.value)
    assert capfd.readouterr().err == ""


class _Skip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.flat = nn.Conv2d(1, 1, 3, padding=1), nn.Flatten()
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flat(x + self.conv(x)))


def _refused_models() -> dict[str, tuple[nn.Module, list[str]]]:
    torch.manual_seed(0)
    return {
        "maxpool-tanh": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Tanh(),
                                       nn.Flatten(), nn.Linear(4 * 3 * 3, 10)),
                         ["max pooling (1 place: aten::max_pool2d (", "- use AvgPool2d instead",
                          "not covered (1 place: aten::tanh ("]),
        "layernorm": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LayerNorm(144),
                                    nn.Linear(144, 10)),
                      ["not covered (1 place: aten::layer_norm (",
                       "- rewrite it with the covered pieces"]),
        "skip": (_Skip(), ["a residual or skip connection (1 place: aten::add (",
                           "a branch point (a value used twice, where a skip connection starts)"]),
    }


@pytest.mark.parametrize("export", ["script", "trace"])
@pytest.mark.parametrize("case", ["maxpool-tanh", "layernorm", "skip"])
def test_a_torchscript_model_with_refused_ops_gets_the_one_line_refusal(case, export):
    """Scripted or traced: every refused op named in the one refusal, with its advice; the
    ops after a refused one have no shape and are not read (before: a KeyError on the
    refused op's output)."""
    from normbounds.errors import UnsupportedLayerError

    model, expected = _refused_models()[case]
    x = torch.rand(8, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = (torch.jit.script(model.eval()) if export == "script"
                    else torch.jit.trace(model.eval(), x[:1]))
    with pytest.raises(UnsupportedLayerError) as info:
        bounds.compute(scripted, x)
    message = str(info.value)
    assert message.startswith("the TorchScript model is not covered by the bounds (docs/bounds"
                              ".md, \"Networks beyond CONV-L-H\"): ") and "\n" not in message
    for part in expected:
        assert part in message, (part, message)


def test_a_reference_or_initial_network_of_other_layers_is_named_with_both_shapes():
    """Graf's and Ledent's reference and dist_init's initialisation are read by one helper
    (network.weights_of); a network of other layers is refused by both, naming its role."""
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % 4
    torch.manual_seed(1)
    other = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 7 * 7, 4, bias=False))
    shapes = "[(2, 1, 2, 2), (4, 98)] do not match the network's [(3, 1, 2, 2), (4, 147)]"
    with pytest.raises(InputError) as info:
        bounds.compute(_model(), x, reference=other)
    assert str(info.value) == (f"the reference network's layers {shapes}: pass a network of"
                               " the same architecture")
    with pytest.raises(InputError) as info:
        assess(_model(), x, y, init=other)
    assert str(info.value) == (f"the initial network's layers {shapes}: pass a network of the"
                               " same architecture")


def test_the_reference_and_the_initialisation_are_read_alike():
    """The same network as reference and as initialisation: Graf's l21 distances and
    dist_init come from the same weights (both zero for the network itself)."""
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % 4
    row = assess(_model(), x, y, reference=_model(), init=_model())
    assert row["dist_init_l1"] == row["dist_init_l2"] == 0.0
    assert row["a_l1"] == row["a_l2"] == 0.0  # Ledent's sums of ||W - M|| per filter


@pytest.mark.parametrize("form", ["module", "script"])
def test_non_square_images_are_refused_before_any_pass(form):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 18, 10))
    if form == "script":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.script(model)
    with pytest.raises(InputError) as info:  # before: a reshape error deep in the passes
        bounds.compute(model, torch.rand(10, 1, 28, 20))
    assert str(info.value) == (
        "train_x: the bounds read square images (n x n pixels); got 28 x 20 (shape (10, 1, 28,"
        " 20)): pad or crop them to a square, as the model should then see them")


def test_review_in_a_base_install_names_the_pipeline_extra(monkeypatch):
    """`normbounds review` without DVC (a base install): one line, not `No module named
    dvc` from the subprocess."""
    import importlib

    real = importlib.import_module

    def no_dvc(name, *args, **kwargs):
        if name == "dvc" or name.startswith("dvc."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_dvc)
    with pytest.raises(MissingDependencyError) as err:
        cli.run(["review"])
    assert str(err.value) == ("normbounds review needs the package 'dvc', which is not"
                              " installed: run pip install '.[pipeline]' in the repository's"
                              " checkout (or `make setup` there)")
