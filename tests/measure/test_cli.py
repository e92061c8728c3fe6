"""The `normbounds` command: a user's saved model and an ImageFolder give the API's numbers."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from normbounds.errors import InputError
from normbounds.measure import bounds, formulas
from normbounds.measure.certificates import grid_key, held_out_bound, margin_key
from normbounds.measure.options import BoundConfig
from normbounds.pipeline import cli

USER_MODULE = '''
from torch import nn


def build(in_shape, num_classes):
    """Two padded, biased conv layers and a biased head, in float64."""
    c, n, _ = in_shape
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 4, 2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * (n - 1) ** 2, num_classes)).double()
'''


@pytest.fixture
def user_files(tmp_path, monkeypatch):
    """usermodel.py and its weights, and 15 8x8 grayscale images (3 classes) as the CLI
    reads them: [0, 1] in float32 (the pipeline's tensors), then the model's dtype."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "usermodel.py").write_text(USER_MODULE)
    sys.path.insert(0, str(tmp_path))
    from usermodel import build  # noqa: PLC0415 (written just above)

    torch.manual_seed(0)
    model = build((1, 8, 8), 3)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    rng = np.random.default_rng(0)
    pixels = np.stack([rng.integers(0, 256, size=(8, 8), dtype=np.uint8) for _ in range(15)])
    x = (torch.from_numpy(pixels).unsqueeze(1).float() / 255).double()
    yield model.eval(), x, pixels
    sys.path.remove(str(tmp_path))
    sys.modules.pop("usermodel", None)


def _image_folder(root: Path, pixels: np.ndarray) -> None:
    """pixels as an ImageFolder of PNGs, five per class (PIL: the pipeline extra's)."""
    image = pytest.importorskip("PIL.Image", reason="an ImageFolder needs Pillow")
    for i, arr in enumerate(pixels):
        (root / "images" / f"class{i // 5}").mkdir(parents=True, exist_ok=True)
        image.fromarray(arr, mode="L").save(root / "images" / f"class{i // 5}" / f"{i % 5}.png")


def _numbers(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, (int, float))}


def test_cli_on_a_factory_and_an_image_folder_gives_the_api_numbers(user_files, tmp_path,
                                                                    capsys):
    model, x, pixels = user_files
    _image_folder(tmp_path, pixels)
    api = bounds.compute(model, x)
    row = cli.run(["bounds", "usermodel:build", "--weights", "weights.pt", "--data", "images",
                   "--out", "out.json"])
    for key, value in _numbers(api).items():
        assert row[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["ours"] == row["ours"] and saved["certificate"] == row["certificate"]
    gammas = BoundConfig().gammas  # the certificate: the best of the default grid
    assert row["certificate"] == min(row[margin_key(g)] + row[grid_key(g)] for g in gammas)
    out = capsys.readouterr().out
    header, table, footer = out.strip().split("\n\n")
    assert header == (
        "certificate = min over gamma in {0.0625, 0.125, 0.25, 0.5, 1, 2, 4, 8} of margin error"
        f" (gamma) + ours_corrected (gamma, delta / 8) = {row['certificate']:.4g} at gamma ="
        f" {row['certificate_gamma']:g} >= 1: vacuous (delta = 0.001, lipschitz = certified)")
    hidden = [k for k in row if k not in cli.cli_output.SHOWN and not k.startswith("status_")
              and row[k] != ""]  # an empty `notes` is no row
    assert footer.splitlines() == [f"{s}: {formulas.STATUS_MEANINGS[s]}" for s in (
        "printed", "theorem", "proxy", "fixed-class")] + [  # the table's statuses, in order
        f"--all shows the {len(hidden)} ingredients too (norms, P, S, per-layer values); --out"
        " saves them"]
    cells = {line.split("|")[1].strip(): line.split("|")[2].strip()
             for line in table.splitlines()[2:]}
    # the errors, the bounds and the certificate first, and nothing else without --all
    assert list(cells) == [k for k in row if k in cli.cli_output.SHOWN]
    assert cells["non_vacuous"] == "no" and "b_l1" not in cells and "data_p" not in cells
    cli.run(["bounds", "usermodel:build", "--weights", "weights.pt", "--data", "images",
             "--all"])
    _, everything, _ = capsys.readouterr().out.strip().split("\n\n")
    rows = [line.split("|")[1].strip() for line in everything.splitlines()[2:]]
    assert "b_l1" in rows and "notes" not in rows and len(rows) == len(cells) + len(hidden)
    # the saved file carries what it takes to read it later
    assert saved["normbounds_version"] == importlib.metadata.version("normbounds")
    assert (saved["gamma"], saved["delta"], saved["lipschitz"]) == (1.0, 0.001, "certified")
    assert saved["gammas"] == "0.0625 0.125 0.25 0.5 1 2 4 8"
    assert len(saved["data_sha256"]) == 64 and saved["status_graf"] == "theorem"
    # what was measured: the model, its weights' file and digest, the data; when, with what
    weights = hashlib.sha256((tmp_path / "weights.pt").read_bytes()).hexdigest()
    assert (saved["model"], saved["model_sha256"]) == ("usermodel:build", "")  # not a file
    assert (saved["weights"], saved["weights_sha256"]) == ("weights.pt", weights)
    assert (saved["data"], saved["data_file_sha256"]) == ("images", "")  # a folder
    assert saved["torch_version"] == torch.__version__
    written = datetime.datetime.fromisoformat(saved["written_utc"])
    assert abs(datetime.datetime.now(datetime.UTC) - written).total_seconds() < 600
    # the printed table names every bound's status beside its value
    lines = {line.split("|")[1].strip(): line.split("|")[3].strip()
             for line in table.splitlines()[2:]}
    assert {name: lines[name] for name in formulas.BOUND_NAMES} == {
        "ours": "printed", "ours_corrected": "theorem", "golowich": "printed",
        "golowich_corrected": "theorem", "long_sedghi": "proxy", "graf": "theorem",
        "ledent": "fixed-class"}
    assert lines["train_error"] == ""


def test_cli_statuses_follow_lipschitz_and_test_data_give_the_held_out_bound(user_files,
                                                                                 tmp_path,
                                                                                 capsys):
    _, x, _ = user_files
    torch.save({"x": x, "y": torch.arange(15) % 3}, tmp_path / "data.pt")
    row = cli.run(["bounds", "usermodel:build", "--weights", "weights.pt", "--data",
                   "data.pt", "--test", "data.pt", "--lipschitz", "estimate", "--gammas", "1"])
    out = capsys.readouterr().out
    lines = {line.split("|")[1].strip(): line.split("|")[3].strip()
             for line in out.splitlines()[4:] if line.startswith("| ")}
    assert out.splitlines()[0].endswith(
        f"(delta = 0.001, lipschitz = estimate); the test set alone bounds the error by"
        f" {row['held_out']:.4g}")
    assert "estimate: a theorem's formula with a Lipschitz constant estimated from below: NOT" \
        " a bound" in out.splitlines()
    assert {name: lines[name] for name in ("ours_corrected", "graf", "ledent", "held_out")} \
        == {"ours_corrected": "theorem", "graf": "estimate", "ledent": "estimate",
            "held_out": "theorem (held-out)"}
    assert not [k for k in lines if k.startswith("status_")]  # statuses are a column
    assert row["certificate"] == row["margin_error"] + row["ours_corrected"]  # one margin
    errors = round(row["test_error"] * 15)
    assert row["held_out"] == held_out_bound(errors, 15, BoundConfig().delta)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script and save
def test_cli_on_a_torchscript_file_gives_the_module_numbers(user_files, tmp_path):
    model, x, _ = user_files
    torch.jit.save(torch.jit.script(model), tmp_path / "model.ts")
    torch.save({"x": x, "y": torch.arange(15) % 3}, tmp_path / "data.pt")
    row = cli.run(["bounds", "model.ts", "--data", "data.pt", "--out", "out.csv"])
    api = bounds.compute(model, x)
    for key in (*formulas.BOUND_NAMES, "data_p", "b_l1"):
        assert row[key] == pytest.approx(api[key], rel=1e-12), key
    header, values = (tmp_path / "out.csv").read_text().splitlines()
    assert header.startswith("normbounds_version,gamma,gammas,delta,lipschitz,data_sha256,"
                             "model,model_sha256,weights,weights_sha256,data,data_file_sha256,"
                             "torch_version,written_utc,train_error,")
    saved = dict(zip(header.split(","), values.split(","), strict=True))
    assert saved["model_sha256"] == hashlib.sha256((tmp_path / "model.ts").read_bytes()
                                                   ).hexdigest()
    assert saved["data_file_sha256"] == hashlib.sha256((tmp_path / "data.pt").read_bytes()
                                                       ).hexdigest()


@pytest.mark.slow  # fresh Pythons
def test_console_script_errors_are_one_line(user_files, tmp_path):
    _, x, _ = user_files
    torch.save({"x": x, "y": torch.arange(15) % 3}, tmp_path / "data.pt")
    script = Path(sys.executable).with_name("normbounds")
    shown = subprocess.run([script, "bounds", "--help"], capture_output=True, text=True,
                           check=True).stdout
    assert "MODEL" in shown
    for default in ("(default: 1.0)", "(default: 0.001)", "(default: certified)",
                    "(default: auto)", "(default: [0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])"):
        assert default in " ".join(shown.split()), default
    run = subprocess.run([script, "bounds", "nosuch.models:build", "--data", "data.pt"],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "error: MODEL = 'nosuch.models:build': module 'nosuch.models' does not import"
        " (ModuleNotFoundError: No module named 'nosuch')"]
    run = subprocess.run([script, "bounds", "usermodel:build", "--data", "data.pt", "--out",
                          "o.txt"], capture_output=True, text=True)
    assert run.stderr.strip() == "error: --out o.txt: must end in .json or .csv"


def test_the_cli_names_its_own_flags_not_params_yaml(user_files, tmp_path):
    _, x, _ = user_files
    torch.save({"x": x, "y": torch.arange(15) % 3}, tmp_path / "data.pt")
    base = ["bounds", "usermodel:build", "--weights", "weights.pt", "--data", "data.pt"]
    for flags, message in ((["--gamma", "0"], "--gamma 0.0 is invalid: must be > 0"),
                           (["--threads", "0"], "--threads 0 is invalid: must be >= 1"),
                           (["--delta", "2"], "--delta 2.0 is invalid: must be in (0, 1)")):
        with pytest.raises(InputError) as info:
            cli.run([*base, *flags])
        assert str(info.value) == message


def test_a_factory_without_weights_is_refused_unless_untrained(user_files, tmp_path):
    model, x, _ = user_files
    torch.save({"x": x, "y": torch.arange(15) % 3}, tmp_path / "data.pt")
    with pytest.raises(InputError) as info:
        cli.run(["bounds", "usermodel:build", "--data", "data.pt"])
    assert str(info.value) == (
        "MODEL usermodel:build: a factory without --weights is an untrained network; pass"
        " --weights state_dict.pt, or --untrained to measure the initialisation itself")
    row = cli.run(["bounds", "usermodel:build", "--untrained", "--data", "data.pt"])
    assert row["ours_corrected"] > 0  # the initialisation, as asked


def test_a_pickled_model_is_refused_without_advice_to_delete_it(user_files, tmp_path):
    model, x, _ = user_files
    torch.save({"x": x, "y": torch.arange(15) % 3}, tmp_path / "data.pt")
    torch.save(model, tmp_path / "whole.pt")  # the whole module, pickled
    advice = (": holds pickled Python objects (a torch.save(model)?), which are not loaded,"
              " since unpickling can run any code; save model.state_dict() and pass it with"
              " --weights beside MODEL package.module:function, or save TorchScript"
              " (torch.jit.script(model).save(...))")
    with pytest.raises(InputError) as info:
        cli.run(["bounds", "whole.pt", "--data", "data.pt"])
    assert str(info.value) == "MODEL whole.pt" + advice
    with pytest.raises(InputError) as info:
        cli.run(["bounds", "usermodel:build", "--weights", "whole.pt", "--data", "data.pt"])
    assert str(info.value) == "--weights whole.pt" + advice
    assert "delete" not in str(info.value) and (tmp_path / "whole.pt").is_file()


@pytest.mark.parametrize(("x", "y", "message"), [
    (torch.rand(6, 1, 8, 6), torch.arange(6) % 3,
     "data.pt: x: the bounds read square images (n x n pixels); got 8 x 6 (shape (6, 1, 8, 6)):"
     " pad or crop them to a square, as the model should then see them"),
    (torch.rand(6, 8, 8), torch.arange(6) % 3,
     "data.pt: x: expected a batch of images of shape (N, c, n, n), N images of c channels and"
     " n x n pixels; got shape (6, 8, 8) (one channel? add its axis: x.unsqueeze(1))"),
    (torch.rand(6, 1, 8, 8), torch.arange(5) % 3,
     "data.pt: y: expected 6 integer class labels, shape (6,), got (5,) torch.int64"),
    (torch.rand(6, 1, 8, 8), torch.arange(6) - 1.0,
     "data.pt: y: expected 6 integer class labels, shape (6,), got (6,) torch.float32"),
    (torch.rand(6, 1, 8, 8), torch.arange(6) - 1,
     "data.pt: y: labels must be class indices >= 0, got -1..4"),
])
def test_the_cli_names_what_is_wrong_in_a_data_file(user_files, tmp_path, x, y, message):
    """Each mistake in a .pt file of x and y gets the API's own message (before: one
    sentence for all of them)."""
    torch.save({"x": x, "y": y}, tmp_path / "data.pt")
    with pytest.raises(InputError) as info:
        cli.run(["bounds", "usermodel:build", "--weights", "weights.pt", "--data", "data.pt"])
    assert str(info.value) == message
